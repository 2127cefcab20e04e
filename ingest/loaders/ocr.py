"""OCR for scans and photos, air-gapped: the engine's models come inside a package, nothing is downloaded.

Engines (ASSISTANT_OCR): 'tesseract' (Debian's `tesseract-ocr` with `tesseract-ocr-chi-sim`; the default:
best mean character accuracy over Chinese and English scans and twice as fast in `bench/ocr_engines.py`),
'rapidocr' (RapidOCR's PP-OCRv4 ONNX models shipped in the `rapidocr-onnxruntime` wheel: no system
package, best on hard Chinese scans, but it loses spaces between English words), 'off'. Text comes back
in reading order (lines top to bottom, boxes left to right) with the mean confidence of its boxes (0-1).
"""

from __future__ import annotations

import csv
import io
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from core.errors import FileRejected
from core.text import CJK_CHAR as _CJK
from ingest.loaders.base import (
    DEFAULT_OPTIONS,
    Deadline,
    LoadedDocument,
    Page,
    ParseOptions,
    deadline_warning,
    too_much_text,
)

MAX_PIXELS = 60_000_000  # a decompression bomb is refused; a 600 dpi A3 scan is ~70 M pixels halved below
MAX_SIDE = 3500  # larger images are scaled down before OCR: detection gains nothing and time grows


class OcrUnavailable(RuntimeError):
    """The configured engine is not installed; the message says how to install it."""


@dataclass
class OcrText:
    text: str
    confidence: float | None  # mean box confidence 0-1; None when nothing was read


@dataclass
class _Box:
    x0: float
    y0: float
    x1: float
    y1: float
    text: str
    score: float




def _join(a: str, b: str) -> str:
    if not a:
        return b
    return a + b if _CJK.match(a[-1]) and _CJK.match(b[:1] or " ") else f"{a} {b}"


def _reading_order(boxes: list[_Box]) -> OcrText:
    """Boxes -> lines: a box joins a line when their vertical spans overlap by half its height."""
    lines: list[list[_Box]] = []
    for box in sorted(boxes, key=lambda b: (b.y0 + b.y1) / 2):
        h = max(box.y1 - box.y0, 1)
        for line in lines:
            top, bottom = min(b.y0 for b in line), max(b.y1 for b in line)
            if min(bottom, box.y1) - max(top, box.y0) >= 0.5 * h:
                line.append(box)
                break
        else:
            lines.append([box])
    out = []
    for line in lines:
        text = ""
        for b in sorted(line, key=lambda b: b.x0):
            text = _join(text, b.text.strip())
        out.append(text)
    scores = [b.score for b in boxes]
    return OcrText("\n".join(out), sum(scores) / len(scores) if scores else None)


class RapidOcr:
    name = "rapidocr"

    def __init__(self) -> None:
        try:
            from rapidocr_onnxruntime import RapidOCR
        except ImportError as exc:  # pragma: no cover - the dependency is in pyproject
            raise OcrUnavailable("OCR needs rapidocr-onnxruntime: `pip install rapidocr-onnxruntime`") from exc
        self._engine = RapidOCR()

    def read(self, image) -> OcrText:
        import numpy as np

        # no angle classifier: it turned upright lines of made scans upside down and they read as nothing
        result, _ = self._engine(np.asarray(image.convert("RGB"))[:, :, ::-1], use_cls=False)  # BGR
        boxes = []
        for quad, text, score in result or []:
            xs, ys = [p[0] for p in quad], [p[1] for p in quad]
            boxes.append(_Box(min(xs), min(ys), max(xs), max(ys), str(text), float(score)))
        return _reading_order(boxes)


class Tesseract:
    name = "tesseract"

    def __init__(self, languages: str = "chi_sim+eng") -> None:
        if shutil.which("tesseract") is None:
            raise OcrUnavailable(
                "OCR needs tesseract: `apt-get install tesseract-ocr tesseract-ocr-chi-sim` "
                "(scripts/setup.sh does it), or set ASSISTANT_OCR=rapidocr"
            )
        self.languages = languages

    def read(self, image) -> OcrText:
        buf = io.BytesIO()
        image.convert("RGB").save(buf, format="PNG")
        proc = subprocess.run(
            ["tesseract", "stdin", "stdout", "-l", self.languages, "--psm", "3", "tsv"],
            input=buf.getvalue(), capture_output=True, timeout=300,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"tesseract failed: {proc.stderr.decode(errors='replace')[-300:]}")
        boxes = []
        rows = csv.DictReader(io.StringIO(proc.stdout.decode("utf-8", errors="replace")), delimiter="\t",
                              quoting=csv.QUOTE_NONE)
        for row in rows:
            text = (row.get("text") or "").strip()
            conf = float(row.get("conf") or -1)
            if not text or conf < 0:
                continue
            x, y, w, h = (float(row[k]) for k in ("left", "top", "width", "height"))
            boxes.append(_Box(x, y, x + w, y + h, text, conf / 100))
        return _reading_order(boxes)


ENGINES: dict[str, Callable[[], object]] = {"rapidocr": RapidOcr, "tesseract": Tesseract}


@lru_cache(maxsize=2)
def engine(name: str):
    """The OCR engine, loaded once per (worker) process."""
    if name not in ENGINES:
        raise ValueError(f"unknown OCR engine '{name}'; choose one of {', '.join(ENGINES)} or 'off'")
    return ENGINES[name]()


def prepare(image, denoise: bool = True):
    """Grey, at most MAX_SIDE pixels a side, scanner speckle removed (a 3x3 median: on made scans it
    brought back a whole line that speckle had hidden from the text detector; bench/ocr_engines.py)."""
    from PIL import ImageFilter

    image = image.convert("L")
    scale = MAX_SIDE / max(image.size)
    if scale < 1:
        image = image.resize((max(1, int(image.width * scale)), max(1, int(image.height * scale))))
    return image.filter(ImageFilter.MedianFilter(3)) if denoise else image


def ocr_image(image, options: ParseOptions, path: Path) -> OcrText:
    try:
        return engine(options.ocr).read(prepare(image))
    except OcrUnavailable as exc:
        raise FileRejected(path, f"a scan, and {exc}") from exc


def _frames(path: Path) -> Iterator:
    from PIL import Image, ImageSequence

    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    try:
        with Image.open(path) as im:
            for frame in ImageSequence.Iterator(im):
                if frame.width * frame.height > MAX_PIXELS:  # PIL itself only warns below twice the limit
                    raise Image.DecompressionBombError(f"{frame.width}x{frame.height}")
                yield frame.copy()
    except Image.DecompressionBombError as exc:
        raise FileRejected(path, f"image of over {MAX_PIXELS:,} pixels (a decompression bomb?); scale it down") from exc
    except (OSError, SyntaxError) as exc:
        raise FileRejected(path, f"not a readable image ({exc}); re-save it as PNG or JPEG") from exc


def load_image(
    path: Path, options: ParseOptions = DEFAULT_OPTIONS, on_page: Callable[[], None] | None = None
) -> LoadedDocument:
    """A scan or photo (PNG, JPEG, TIFF; each TIFF frame a page) read by OCR."""
    if options.ocr == "off":
        raise FileRejected(path, "an image needs OCR, which is off (ASSISTANT_OCR=off); turn it on or add a text file")
    deadline = Deadline(options.deadline_s)
    pages: list[Page] = []
    chars = 0
    warnings = []
    for index, frame in enumerate(_frames(path)):
        if index >= options.max_pages:
            raise FileRejected(path, f"over {options.max_pages:,} frames (ASSISTANT_MAX_PAGES); split the file")
        if deadline.passed():
            warnings.append(deadline_warning(index, None, options))
            break
        read = ocr_image(frame, options, path)
        chars += len(read.text)
        if chars > options.max_text_chars:
            raise too_much_text(path, options)
        pages.append(Page(text=read.text, page=index, ocr_confidence=read.confidence))
        if on_page is not None:
            on_page()
    return LoadedDocument(format="image", pages=pages, title=path.stem, warnings=warnings)
