"""PDF -> one Page per PDF page (0-based index kept), layout-aware.

pypdf validates the file (corrupt, encrypted); pdfplumber reads word positions so that
- ruled tables are emitted as pipe rows (header row kept with its cells),
- two-column pages are read column by column instead of across the gutter,
- rows of unruled tables (financial statements) stay on one line with their numbers.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pdfplumber
import pypdf
from pypdf.errors import FileNotDecryptedError, PdfReadError

from core.errors import FileRejected
from core.text import CJK_CHAR as _CJK
from ingest.loaders.base import (
    DEFAULT_OPTIONS,
    Deadline,
    LoadedDocument,
    Page,
    ParseOptions,
    deadline_warning,
    table_to_lines,
    too_much_text,
)
from ingest.loaders.ocr import ocr_image

# pdfminer logs every malformed object at WARNING; the file-level result is what users need.
logging.getLogger("pdfminer").setLevel(logging.ERROR)
logging.getLogger("pypdf").setLevel(logging.ERROR)



@dataclass
class _Line:
    top: float
    words: list[dict]

    @property
    def x0(self) -> float:
        return min(w["x0"] for w in self.words)

    @property
    def x1(self) -> float:
        return max(w["x1"] for w in self.words)


def load_pdf(
    path: Path, on_page: Callable[[], None] | None = None, options: ParseOptions = DEFAULT_OPTIONS
) -> LoadedDocument:
    password, n_pages = _check_openable(path)
    if n_pages > options.max_pages:
        raise FileRejected(
            path, f"{n_pages:,} pages, over the {options.max_pages:,}-page limit (ASSISTANT_MAX_PAGES); split the PDF"
        )
    deadline = Deadline(options.deadline_s)
    pages: list[Page] = []
    chars = 0
    image_only_pages = 0
    ocr_pages = 0
    scaled: list[tuple[int, float]] = []  # (page index, dpi) of pages rendered below OCR_DPI
    stopped_at: int | None = None  # the first page not read: the file's parse deadline passed
    renderer = None
    try:
        with pdfplumber.open(str(path), password=password) as pdf:
            title = (pdf.metadata or {}).get("Title") or path.stem
            for index, page in enumerate(pdf.pages):
                if deadline.passed():
                    stopped_at = index
                    break
                text = _page_text(page)
                confidence = None
                if not text.strip() and page.images:
                    if options.ocr == "off":
                        image_only_pages += 1
                    else:  # a scanned page: OCR only the pages without a text layer
                        renderer = renderer or _Renderer(path, password, options.ocr_max_pixels)
                        image, dpi = renderer.render(index)
                        if dpi < OCR_DPI:
                            scaled.append((index, dpi))
                        read = ocr_image(image, options, path)
                        del image
                        text, confidence = read.text, read.confidence
                        ocr_pages += 1
                pages.append(Page(text=text, page=index, ocr_confidence=confidence))
                chars += len(text)
                if chars > options.max_text_chars:
                    raise too_much_text(path, options)
                page.close()  # drop the page's parsed layout: memory stays flat on long filings
                if on_page is not None:
                    on_page()
    except FileRejected:
        raise
    except Exception as exc:
        raise FileRejected(path, f"corrupt or unreadable PDF ({type(exc).__name__}: {exc})") from exc
    finally:
        if renderer is not None:
            renderer.close()
    _strip_running_lines(pages)
    doc = LoadedDocument(format="pdf", pages=pages, title=str(title))
    if stopped_at is not None:
        doc.warnings.append(deadline_warning(stopped_at, n_pages, options))
    if ocr_pages:
        doc.warnings.append(f"{ocr_pages} scanned page(s) read by OCR ({options.ocr})")
    if scaled:
        doc.warnings.append(
            f"{len(scaled)} scanned page(s) too large to render at {OCR_DPI} dpi within the "
            f"{options.ocr_max_pixels:,}-pixel budget (ASSISTANT_OCR_MAX_PIXELS) were read at a lower resolution: "
            + ", ".join(f"page {i + 1} at {dpi:.0f} dpi" for i, dpi in scaled[:10])
            + (f" and {len(scaled) - 10} more" if len(scaled) > 10 else ""))
    if not any(p.text.strip() for p in pages):
        if stopped_at is not None:
            raise FileRejected(path, f"no text in the {stopped_at} of its {n_pages} pages read before the file's "
                               f"{options.deadline_s:g} s parse limit (ASSISTANT_PARSE_TIMEOUT_S); split the file")
        if image_only_pages:
            raise FileRejected(
                path,
                f"image-only PDF: none of its {len(pages)} pages has a text layer (a scan?) and OCR is off "
                "(ASSISTANT_OCR=off). Turn OCR on, or run OCR first (e.g. `ocrmypdf in.pdf out.pdf`).",
            )
        raise FileRejected(path, f"the PDF's {len(pages)} page(s) contain no text"
                           + (f" ({'; '.join(doc.warnings)})" if doc.warnings else ""))
    if image_only_pages:
        doc.warnings.append(
            f"{image_only_pages} page(s) have no text layer (images only) and were skipped: OCR is off"
        )
    return doc


OCR_DPI = 200


class _Renderer:
    """Renders scanned pages for OCR (pdfium, which pdfplumber already ships) at OCR_DPI, or lower where the
    page would exceed `max_pixels` there: the bitmap never holds more than the budget, whatever the page size."""

    def __init__(self, path: Path, password: str, max_pixels: int) -> None:
        import pypdfium2 as pdfium

        self._doc = pdfium.PdfDocument(str(path), password=password or None)
        self.max_pixels = max_pixels

    def render(self, index: int) -> tuple[Any, float]:
        """The page as a grey PIL image, and the dpi it was rendered at."""
        page = self._doc[index]
        try:
            scale = bounded_scale(*page.get_size(), OCR_DPI, self.max_pixels)
            return page.render(scale=scale, grayscale=True).to_pil(), scale * 72
        finally:
            page.close()

    def close(self) -> None:
        self._doc.close()


def bounded_scale(width_pt: float, height_pt: float, dpi: float, max_pixels: int) -> float:
    """The pdfium render scale for a page of `width_pt` x `height_pt` points: `dpi`, or less where the bitmap would
    hold more than `max_pixels` (a PDF page may be 200 inches square: 40,000^2 pixels at 200 dpi)."""
    scale = dpi / 72
    if width_pt * height_pt * scale * scale > max_pixels:
        scale = math.sqrt(max_pixels / (width_pt * height_pt))
    return scale


_DIGITS = re.compile(r"\d+")


def _strip_running_lines(pages: list[Page], edge: int = 2) -> None:
    """Remove running headers and footers (company name, "Page 7", "第 7 页") that repeat at the top or
    bottom of most pages: they carry no content and would end up in every chunk."""
    if len(pages) < 4:
        return
    counts: dict[str, int] = {}
    for p in pages:
        lines = [ln.strip() for ln in p.text.split("\n") if ln.strip()]
        for key in {_DIGITS.sub("#", ln) for ln in lines[:edge] + lines[-edge:]}:
            counts[key] = counts.get(key, 0) + 1
    running = {k for k, n in counts.items() if n >= max(3, 0.5 * len(pages)) and len(k) <= 120}
    if not running:
        return
    for p in pages:
        lines = p.text.split("\n")
        content = [i for i, ln in enumerate(lines) if ln.strip()]
        edges = set(content[:edge] + content[-edge:])
        p.text = "\n".join(
            ln for i, ln in enumerate(lines) if not (i in edges and _DIGITS.sub("#", ln.strip()) in running)
        ).strip()


def _check_openable(path: Path) -> tuple[str, int]:
    """Raise FileRejected for corrupt or password-protected PDFs; return the password to use and the
    page count."""
    try:
        reader = pypdf.PdfReader(str(path))
        if reader.is_encrypted:
            try:
                ok = reader.decrypt("")
            except (NotImplementedError, PdfReadError) as exc:
                raise FileRejected(path, f"encrypted PDF that cannot be opened ({exc})") from exc
            if not ok:
                raise FileRejected(
                    path,
                    "encrypted (password-protected) PDF; remove the password "
                    "(e.g. `qpdf --decrypt --password=... in.pdf out.pdf`) and add the decrypted file.",
                )
        n_pages = len(reader.pages)
        if n_pages == 0:
            raise FileRejected(path, "the PDF has no pages")
    except FileRejected:
        raise
    except FileNotDecryptedError as exc:
        raise FileRejected(path, "encrypted (password-protected) PDF; remove the password first") from exc
    except Exception as exc:
        raise FileRejected(
            path, f"corrupt PDF, cannot be read ({type(exc).__name__}: {exc}); re-export or repair it"
        ) from exc
    return "", n_pages


def _page_text(page) -> str:
    tables = [t for t in page.find_tables() if len(t.rows) >= 2 and len(t.columns) >= 2]
    boxes = [t.bbox for t in tables]

    def outside_tables(obj: dict) -> bool:
        cx = (obj["x0"] + obj["x1"]) / 2
        cy = (obj["top"] + obj["bottom"]) / 2
        return not any(x0 <= cx <= x1 and top <= cy <= bottom for x0, top, x1, bottom in boxes)

    words = [w for w in page.extract_words(x_tolerance=1.5, y_tolerance=2.5) if outside_tables(w)]
    lines = _group_lines(words)
    blocks: list[tuple[float, list[str]]] = []
    gutter = _find_gutter(lines, float(page.width))
    if gutter is None:
        blocks.extend((ln.top, [_line_text(ln.words)]) for ln in lines)
    else:
        blocks.extend(_two_column_blocks(lines, gutter))
    for table in tables:
        rows = table.extract()
        blocks.append((table.bbox[1], ["", *table_to_lines(rows, compact=True), ""]))
    blocks.sort(key=lambda b: b[0])
    out: list[str] = []
    for _, block_lines in blocks:
        out.extend(block_lines)
    return "\n".join(out).strip()


def _group_lines(words: list[dict]) -> list[_Line]:
    lines: list[_Line] = []
    for w in sorted(words, key=lambda w: (round(w["top"]), w["x0"])):
        if lines and abs(w["top"] - lines[-1].top) <= 2.5:
            lines[-1].words.append(w)
        else:
            lines.append(_Line(top=w["top"], words=[w]))
    for ln in lines:
        ln.words.sort(key=lambda w: w["x0"])
    return lines


def _line_text(words: list[dict]) -> str:
    parts: list[str] = []
    prev = None
    for w in words:
        if prev is not None:
            gap = w["x0"] - prev["x1"]
            # CJK runs broken by tolerance get no artificial space between them
            if not (gap < 2 and _CJK.search(prev["text"][-1]) and _CJK.search(w["text"][0])):
                parts.append(" ")
        parts.append(w["text"])
        prev = w
    return "".join(parts)


def _find_gutter(lines: list[_Line], width: float) -> float | None:
    """Return the x of a column gutter if the page is laid out in two prose columns."""
    if len(lines) < 8:
        return None
    best: tuple[int, float] | None = None
    for step in range(30, 71):
        g = width * step / 100
        split = 0
        crossing = 0
        for ln in lines:
            if any(w["x0"] < g < w["x1"] for w in ln.words):
                crossing += 1
                continue
            left = [w for w in ln.words if w["x1"] <= g]
            right = [w for w in ln.words if w["x0"] >= g]
            if left and right and right[0]["x0"] - left[-1]["x1"] >= 8:
                split += 1
        if split >= max(6, 0.5 * len(lines)) and crossing <= 0.25 * len(lines):
            if best is None or split > best[0]:
                best = (split, g)
    if best is None:
        return None
    g = best[1]
    # Prose columns fill their half; an unruled table's number columns are narrow.
    left_w = [g - min(w["x0"] for w in ln.words if w["x1"] <= g) for ln in lines if any(w["x1"] <= g for w in ln.words)]
    right_w = [
        max(w["x1"] for w in ln.words if w["x0"] >= g) - g for ln in lines if any(w["x0"] >= g for w in ln.words)
    ]
    if not left_w or not right_w:
        return None
    left_fill = sorted(left_w)[len(left_w) // 2]
    right_fill = sorted(right_w)[len(right_w) // 2]
    # words per side: prose lines carry several words on each side
    right_words = sorted(
        len([w for w in ln.words if w["x0"] >= g]) for ln in lines if any(w["x0"] >= g for w in ln.words)
    )
    if right_fill < 0.5 * (width - g) * 0.8 or left_fill < 0.5 * g * 0.8:
        return None
    if right_words[len(right_words) // 2] < 3:
        return None
    return g


def _two_column_blocks(lines: list[_Line], g: float) -> list[tuple[float, list[str]]]:
    blocks: list[tuple[float, list[str]]] = []
    run: list[_Line] = []

    def flush() -> None:
        if not run:
            return
        left = [_line_text([w for w in ln.words if w["x1"] <= g]) for ln in run]
        right = [_line_text([w for w in ln.words if w["x0"] >= g]) for ln in run]
        blocks.append((run[0].top, [t for t in left if t] + [t for t in right if t]))
        run.clear()

    for ln in lines:
        if any(w["x0"] < g < w["x1"] for w in ln.words):
            flush()
            blocks.append((ln.top, [_line_text(ln.words)]))
        else:
            run.append(ln)
    flush()
    return blocks
