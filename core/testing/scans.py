"""Scanned pages made on the fly: text drawn into an image with PIL (no text layer), slightly blurred,
tilted and speckled like a desk scanner's output; as PNG/JPEG/TIFF files or an image-only PDF."""

from __future__ import annotations

import io
import random
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
