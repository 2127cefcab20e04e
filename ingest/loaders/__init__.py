"""File -> pages of text. One module per format; `load_file` dispatches on the extension.

Every loader returns a `LoadedDocument` or raises `FileRejected` with a reason a user can act on.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from core.errors import FileRejected
from ingest.loaders.base import LoadedDocument, Page
from ingest.loaders.docx import load_docx
from ingest.loaders.html import load_html
from ingest.loaders.pdf import load_pdf
from ingest.loaders.text import load_text

PageCallback = Callable[[], None] | None

LOADERS: dict[str, tuple[str, Callable[..., LoadedDocument]]] = {
    ".pdf": ("pdf", load_pdf),
    ".docx": ("docx", load_docx),
    ".md": ("markdown", lambda p: load_text(p, fmt="markdown")),
    ".markdown": ("markdown", lambda p: load_text(p, fmt="markdown")),
    ".txt": ("text", lambda p: load_text(p, fmt="text")),
    ".text": ("text", lambda p: load_text(p, fmt="text")),
    ".html": ("html", load_html),
    ".htm": ("html", load_html),
}

SUPPORTED_SUFFIXES = tuple(sorted(LOADERS))

__all__ = ["LoadedDocument", "Page", "load_file", "is_supported", "SUPPORTED_SUFFIXES"]


def is_supported(path: Path) -> bool:
    return path.suffix.lower() in LOADERS


def load_file(path: Path, on_page: PageCallback = None) -> LoadedDocument:
    """Parse one file into pages of text, or raise FileRejected naming the reason.

    `on_page` is called after each parsed PDF page, so long filings show progress."""
    suffix = path.suffix.lower()
    if suffix not in LOADERS:
        raise FileRejected(
            path,
            f"unsupported file type '{suffix or '(none)'}'; supported: {', '.join(SUPPORTED_SUFFIXES)}. "
            "Convert it (e.g. to PDF or DOCX) and add it again.",
        )
    if not path.is_file():
        raise FileRejected(path, "not a readable file")
    if path.stat().st_size == 0:
        raise FileRejected(path, "the file is empty (0 bytes)")
    fmt, loader = LOADERS[suffix]
    try:
        doc = loader(path, on_page=on_page) if fmt == "pdf" else loader(path)
    except FileRejected:
        raise
    except Exception as exc:  # a parser bug or an exotic file must not stop the other files
        raise FileRejected(path, f"could not be parsed as {fmt} ({type(exc).__name__}: {exc})") from exc
    if not any(p.text.strip() for p in doc.pages):
        raise FileRejected(path, "no text could be extracted: the file holds no readable text")
    return doc
