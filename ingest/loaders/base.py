"""What every loader produces, and the limits every loader keeps."""

from __future__ import annotations

import time
import unicodedata
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from core.errors import FileRejected


@dataclass
class Page:
    text: str
    page: int | None = None  # 0-based page index for paginated formats, None otherwise
    # how citations name this page when "p.N" would mislead: "sheet 费率表", "slide 3"
    label: str | None = None
    ocr_confidence: float | None = None  # mean OCR confidence (0-1) when the text was read by OCR


@dataclass
class LoadedDocument:
    format: str
    pages: list[Page]
    title: str | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def page_count(self) -> int:
        return len(self.pages)

    def page_meta(self, page: int | None) -> dict[str, object]:
        """Chunk metadata of the page a chunk starts on: its citation label and OCR confidence."""
        for p in self.pages:
            if page is not None and p.page == page:
                meta: dict[str, object] = {}
                if p.label:
                    meta["page_label"] = p.label
                if p.ocr_confidence is not None:
                    meta["ocr_confidence"] = round(p.ocr_confidence, 4)
                return meta
        return {}


@dataclass(frozen=True)
class ParseOptions:
    """Per-file limits (a small hostile file must not become gigabytes of text) and the OCR engine.

    Built from the settings (`ingest.parse_worker.options_from`); plain data so it crosses to the worker."""

    max_unzipped_bytes: int = 256 * 2**20
    max_paragraphs: int = 200_000
    max_text_chars: int = 20_000_000
    max_pages: int = 5_000
    max_cells: int = 5_000_000
    ocr: str = "tesseract"  # "tesseract" | "rapidocr" | "off"
    ocr_max_pixels: int = 8_000_000  # a page rendered for OCR holds at most this many pixels (A3 at 200 dpi)
    deadline_s: float | None = None  # the whole file's parse time; paginated loaders stop there, keeping what they read


class Deadline:
    """One parse deadline per file (not per page), counted from when the loader starts."""

    def __init__(self, seconds: float | None) -> None:
        self.seconds = seconds
        self._end = None if not seconds else time.monotonic() + seconds

    def passed(self) -> bool:
        return self._end is not None and time.monotonic() >= self._end


DEFAULT_OPTIONS = ParseOptions()


class Budget:
    """Counts paragraphs (or rows, lines), cells and characters while a loader reads; refuses past the limits."""

    def __init__(self, path: Path, options: ParseOptions) -> None:
        self.path = path
        self.options = options
        self.paragraphs = 0
        self.cells = 0
        self.chars = 0

    def paragraph(self, text: str = "") -> None:
        self.paragraphs += 1
        self.chars += len(text)
        if self.paragraphs > self.options.max_paragraphs:
            raise self.too_many_paragraphs()
        if self.chars > self.options.max_text_chars:
            raise too_much_text(self.path, self.options)

    def cell(self, text: str = "") -> None:
        self.cells += 1
        self.chars += len(text)
        if self.cells > self.options.max_cells:
            raise self.too_many_cells()
        if self.chars > self.options.max_text_chars:
            raise too_much_text(self.path, self.options)

    def too_many_paragraphs(self) -> FileRejected:
        return FileRejected(
            self.path,
            f"more than {self.options.max_paragraphs:,} paragraphs/rows (limit ASSISTANT_MAX_PARAGRAPHS); "
            "split the file, or raise the limit if it is genuine",
        )

    def too_many_cells(self) -> FileRejected:
        return FileRejected(
            self.path,
            f"more than {self.options.max_cells:,} cells (limit ASSISTANT_MAX_CELLS); split the workbook, or "
            "raise the limit if it is genuine",
        )


def deadline_warning(first_skipped: int, total: int | None, options: ParseOptions) -> str:
    """What a paginated loader that stopped at the file's parse deadline says about the pages it left."""
    if total is None:
        span = f"page {first_skipped + 1} and those after it"
    elif first_skipped + 1 == total:
        span = f"page {total} of {total}"
    else:
        span = f"pages {first_skipped + 1}-{total} of {total}"
    return (f"{span} were skipped: the file took over {options.deadline_s:g} s to parse (limit "
            "ASSISTANT_PARSE_TIMEOUT_S); split the file and add the rest separately")


def too_much_text(path: Path, options: ParseOptions) -> FileRejected:
    return FileRejected(
        path,
        f"more than {options.max_text_chars:,} characters of text (limit ASSISTANT_MAX_TEXT_CHARS); "
        "split the file, or raise the limit if it is genuine",
    )


def check_zip(path: Path, options: ParseOptions, kind: str) -> None:
    """Refuse an Office file (a zip) whose parts would decompress past the limit: a zip bomb.

    The sizes in the zip directory are binding: Python's zipfile stops reading a member at its declared
    size, so a member that lies about it fails its CRC instead of inflating further."""
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
    except (zipfile.BadZipFile, OSError) as exc:
        raise FileRejected(
            path, f"not a valid {kind} file ({type(exc).__name__}); re-save it from Office and add it again"
        ) from exc
    total = sum(i.file_size for i in infos)
    if total > options.max_unzipped_bytes or len(infos) > 50_000:
        raise FileRejected(
            path,
            f"its {len(infos):,} parts unpack to {total / 2**20:,.0f} MB, over the "
            f"{options.max_unzipped_bytes / 2**20:,.0f} MB limit (ASSISTANT_MAX_UNZIPPED_MB): a zip bomb or a "
            "file with huge embedded media; remove the media or split the file",
        )


# bidi embeddings/overrides/isolates and marks: they reorder how a name is displayed
_BIDI = set("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def name_problem(name: str) -> str | None:
    """Why a file name cannot be a citation label (it could spoof another one), or None."""
    for ch in name:
        if ch in _BIDI:
            return f"its name holds a right-to-left/bidi control mark (U+{ord(ch):04X})"
        if unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") and ch not in "\u200c\u200d":  # joiners: Persian, emoji
            return f"its name holds a control character (U+{ord(ch):04X}), e.g. a line break"
    return None


def table_to_lines(rows: list[list[str | None]], compact: bool = False) -> list[str]:
    """Render a table as pipe-separated rows so the header and cells stay together in the text.

    `compact` drops empty cells and glues currency signs to their amounts: PDF table finders split
    merged and spacer columns into empty cells that only cost tokens ("| $ | 1,419 |  |").
    """
    lines = []
    for row in rows:
        cells = [" ".join((c or "").split()) for c in row]
        if compact:
            merged: list[str] = []
            for c in cells:
                if not c:
                    continue
                if merged and merged[-1] in ("$", "€", "£", "¥", "￥", "RMB", "CNY"):
                    merged[-1] = f"{merged[-1]} {c}"
                else:
                    merged.append(c)
            cells = merged
        if any(cells):
            lines.append("| " + " | ".join(cells) + " |")
    return lines
