"""Real PDFs made on the fly with fpdf2 (tests and the demo-corpus generator share these helpers)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from fpdf import FPDF

_CANDIDATES = [
    "/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf",
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/System/Library/Fonts/STHeiti Light.ttc",
]


_LATIN = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
]


def find_latin_font() -> Path | None:
    return next((Path(c) for c in _LATIN if Path(c).exists()), None)


def add_fonts(pdf: FPDF) -> str:
    """Register a Latin TrueType font with a CJK fallback; return the family to use."""
    cjk, latin = find_cjk_font(), find_latin_font()
    if cjk is None or latin is None:
        raise RuntimeError("fonts missing: the test setup installs Debian's fonts-droid-fallback and fonts-dejavu-core")
    for style in ("", "B"):
        pdf.add_font("latin", style=style, fname=str(latin))
        pdf.add_font("cjk", style=style, fname=str(cjk))
    pdf.set_fallback_fonts(["cjk"])
    return "latin"


def find_cjk_font() -> Path | None:
    """A TrueType font with Chinese glyphs (the test setup installs Debian's fonts-droid-fallback)."""
    for c in _CANDIDATES:
        if Path(c).exists() and c.endswith(".ttf"):
            return Path(c)
    if shutil.which("fc-list"):
        out = subprocess.run(["fc-list", ":lang=zh", "file"], capture_output=True, text=True).stdout
        for line in out.splitlines():
            path = line.split(":")[0].strip()
            if path.endswith(".ttf"):
                return Path(path)
    return None


def _pdf() -> tuple[FPDF, str]:
    pdf = FPDF(format="A4")
    pdf.set_auto_page_break(True, margin=15)
    return pdf, add_fonts(pdf)


def make_pdf(path: Path, pages: list[str], encrypt_password: str | None = None) -> Path:
    """One PDF page per string; lines are written as they are."""
    pdf, family = _pdf()
    for text in pages:
        pdf.add_page()
        pdf.set_font(family, size=11)
        for line in text.split("\n"):
            pdf.multi_cell(0, 7, line, new_x="LMARGIN", new_y="NEXT")
    if encrypt_password:
        pdf.set_encryption(owner_password="owner-" + encrypt_password, user_password=encrypt_password)
    pdf.output(str(path))
    return path


def make_table_pdf(path: Path, heading: str, rows: list[list[str]]) -> Path:
    pdf, family = _pdf()
    pdf.add_page()
    pdf.set_font(family, size=11)
    pdf.multi_cell(0, 8, heading, new_x="LMARGIN", new_y="NEXT")
    with pdf.table(first_row_as_headings=True) as table:
        for row in rows:
            r = table.row()
            for cell in row:
                r.cell(cell)
    pdf.output(str(path))
    return path


def make_two_column_pdf(path: Path, left: list[str], right: list[str]) -> Path:
    pdf, family = _pdf()
    pdf.add_page()
    pdf.set_font(family, size=10)
    with pdf.text_columns(ncols=2, gutter=12) as cols:
        for para in left + right:
            cols.write(para + "\n")
            cols.ln()
        # force the right list into the second column
    pdf.output(str(path))
    return path


def make_image_only_pdf(path: Path) -> Path:
    """A 'scan': one page holding only a raster image, no text layer."""
    import io
    import struct
    import zlib

    def png(width: int, height: int) -> bytes:
        raw = b"".join(b"\x00" + bytes([200, 200, 200]) * width for _ in range(height))

        def chunk(tag: bytes, data: bytes) -> bytes:
            return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

        ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
        return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")

    pdf = FPDF(format="A4")
    pdf.add_page()
    pdf.image(io.BytesIO(png(60, 80)), x=10, y=10, w=180)
    pdf.output(str(path))
    return path
