"""Scanned pages made on the fly: text drawn into an image with PIL (no text layer), slightly blurred,
tilted and speckled like a desk scanner's output; as PNG/JPEG/TIFF files or an image-only PDF."""

from __future__ import annotations

import io
import random
import zlib
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter, ImageFont

from core.testing.pdfs import find_cjk_font, find_latin_font

DPI = 200
A4 = (int(8.27 * DPI), int(11.69 * DPI))


def scan_image(
    lines: list[str], seed: int = 0, font_px: int = 36, tilt_deg: float = 0.4, blur: float = 0.7, jpeg: int = 0,
    crop: bool = False,
) -> Image.Image:
    """An A4 page at 200 dpi holding `lines` (Chinese and Latin), as a scanner would return it; `jpeg`
    > 0 passes it through JPEG at that quality (a phone photo's artefacts)."""
    cjk, latin = find_cjk_font(), find_latin_font()
    if cjk is None or latin is None:
        raise RuntimeError("fonts missing: the test setup installs Debian's fonts-droid-fallback and fonts-dejavu-core")
    fonts = {True: ImageFont.truetype(str(latin), int(font_px * 0.8)), False: ImageFont.truetype(str(cjk), font_px)}
    # a photo or a receipt is cut to its text; a scanned page is a whole A4 sheet
    size = (A4[0], min(A4[1], int(1.3 * DPI + len(lines) * font_px * 1.7))) if crop else A4
    page = Image.new("L", size, 255)
    draw = ImageDraw.Draw(page)
    y = int(0.8 * DPI)
    for line in lines:
        x = float(int(0.6 * DPI))
        for run in _runs(line):  # Latin runs in DejaVu Sans, the rest in the CJK font
            font = fonts[run[0].isascii()]
            draw.text((x, y + (4 if run[0].isascii() else 0)), run, fill=20, font=font)
            x += draw.textlength(run, font=font)
        y += int(font_px * 1.7)
    rng = random.Random(seed)
    page = page.rotate(tilt_deg, resample=Image.BICUBIC, fillcolor=255)
    page = page.filter(ImageFilter.GaussianBlur(blur))
    px = page.load()
    for _ in range(size[0] * size[1] // 400):  # speckle
        px[rng.randrange(size[0]), rng.randrange(size[1])] = rng.choice((0, 90, 180))
    if jpeg:
        buf = io.BytesIO()
        page.save(buf, format="JPEG", quality=jpeg)
        page = Image.open(io.BytesIO(buf.getvalue())).convert("L")
    return page


def _runs(line: str) -> list[str]:
    runs: list[str] = []
    for ch in line:
        if runs and runs[-1][-1].isascii() == ch.isascii():
            runs[-1] += ch
        else:
            runs.append(ch)
    return runs


def save_scan(path: Path, pages: list[list[str]], seed: int = 0) -> Path:
    """PNG/JPEG: the first page; TIFF: one frame per page; PDF: image-only pages, no text layer."""
    suffix = path.suffix.lower()
    images = [scan_image(lines, seed + i, crop=suffix != ".pdf") for i, lines in enumerate(pages)]
    if suffix == ".pdf":
        from fpdf import FPDF

        pdf = FPDF(format="A4")
        for image in images:
            pdf.add_page()
            buf = io.BytesIO()
            image.save(buf, format="PNG")
            pdf.image(buf, x=0, y=0, w=210, h=297)
        pdf.output(str(path))
    elif suffix in (".tif", ".tiff"):
        images[0].save(path, save_all=True, append_images=images[1:], compression="tiff_deflate")
    elif suffix in (".jpg", ".jpeg"):
        images[0].save(path, quality=85)
    else:
        images[0].save(path)
    return path


def huge_page_pdf(path: Path, pages: int = 1, side_pt: int = 14_400, scan: Image.Image | None = None) -> Path:
    """An image-only PDF whose pages are `side_pt` points square (14,400, 200 inches, is the largest a PDF
    page may be), each one grey pixel (or `scan`) stretched over the page: a few hundred bytes that a renderer
    asked for 200 dpi turns into 40,000 x 40,000 pixels per page."""
    grey = (scan or Image.new("L", (1, 1), 128)).convert("L")
    pixels = zlib.compress(grey.tobytes())
    image = (b"<< /Type /XObject /Subtype /Image /Width %d /Height %d /ColorSpace /DeviceGray /BitsPerComponent 8 "
             b"/Filter /FlateDecode /Length %d >>\nstream\n%s\nendstream") % (grey.width, grey.height, len(pixels),
                                                                             pixels)
    height = side_pt if scan is None else round(side_pt * grey.height / grey.width)  # a scan keeps its aspect
    draw = f"q {side_pt} 0 0 {height} 0 {side_pt - height} cm /Im0 Do Q".encode()
    content = b"<< /Length %d >>\nstream\n%s\nendstream" % (len(draw), draw)
    page_ids = [5 + i for i in range(pages)]
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [%s] /Count %d >>" % (b" ".join(b"%d 0 R" % i for i in page_ids), pages),
        image,
        content,
        *(b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 %d %d] /Resources << /XObject << /Im0 3 0 R >> >> "
          b"/Contents 4 0 R >>" % (side_pt, side_pt) for _ in page_ids),
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    path.write_bytes(bytes(out))
    return path
