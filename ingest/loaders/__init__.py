"""File -> pages of text. One module per format; `load_file` dispatches on the extension.

Every loader returns a `LoadedDocument` or raises `FileRejected` with a reason a user can act on.
Loaders keep the per-file limits of `ParseOptions`; `ingest.parse_worker` runs them in a worker
process under a time limit.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from core.errors import FileRejected
from ingest.loaders.base import DEFAULT_OPTIONS, LoadedDocument, Page, ParseOptions, name_problem, too_much_text
from ingest.loaders.docx import load_docx
from ingest.loaders.html import load_html
from ingest.loaders.ocr import load_image
from ingest.loaders.pdf import load_pdf
from ingest.loaders.sheet import load_csv, load_xls, load_xlsx
from ingest.loaders.slides import load_pptx
from ingest.loaders.text import load_text

PageCallback = Callable[[], None] | None
Loader = Callable[[Path, ParseOptions, PageCallback], LoadedDocument]

LOADERS: dict[str, tuple[str, Loader]] = {
    ".pdf": ("pdf", lambda p, o, cb: load_pdf(p, on_page=cb, options=o)),
    ".docx": ("docx", lambda p, o, cb: load_docx(p, o)),
    ".md": ("markdown", lambda p, o, cb: load_text(p, "markdown", o)),
    ".markdown": ("markdown", lambda p, o, cb: load_text(p, "markdown", o)),
    ".txt": ("text", lambda p, o, cb: load_text(p, "text", o)),
    ".text": ("text", lambda p, o, cb: load_text(p, "text", o)),
    ".html": ("html", lambda p, o, cb: load_html(p, o)),
    ".htm": ("html", lambda p, o, cb: load_html(p, o)),
    ".xlsx": ("xlsx", lambda p, o, cb: load_xlsx(p, o, cb)),
    ".xlsm": ("xlsx", lambda p, o, cb: load_xlsx(p, o, cb)),
    ".xls": ("xls", lambda p, o, cb: load_xls(p, o, cb)),
    ".csv": ("csv", lambda p, o, cb: load_csv(p, o, cb)),
    ".pptx": ("pptx", lambda p, o, cb: load_pptx(p, o, cb)),
    **{s: ("image", lambda p, o, cb: load_image(p, o, cb)) for s in (".png", ".jpg", ".jpeg", ".tif", ".tiff")},
}

SUPPORTED_SUFFIXES = tuple(sorted(LOADERS))

__all__ = [
    "LoadedDocument", "Page", "ParseOptions", "load_file", "check_file", "is_supported", "SUPPORTED_SUFFIXES",
]


def is_supported(path: Path) -> bool:
    return path.suffix.lower() in LOADERS


def check_file(path: Path) -> None:
    """The checks that need no reading: a name fit to be cited and a supported type."""
    problem = name_problem(path.name)
    if problem is not None:
        raise FileRejected(path, f"{problem}, which could disguise its citations; rename the file and add it again")
    suffix = path.suffix.lower()
    if suffix not in LOADERS:
        raise FileRejected(
            path,
            f"unsupported file type '{suffix or '(none)'}'; supported: {', '.join(SUPPORTED_SUFFIXES)}. "
            "Convert it (e.g. to PDF or DOCX) and add it again.",
        )


def load_file(path: Path, on_page: PageCallback = None, options: ParseOptions = DEFAULT_OPTIONS) -> LoadedDocument:
    """Parse one file into pages of text, or raise FileRejected naming the reason.

    `on_page` is called after each parsed page of paginated formats, so long files show progress."""
    check_file(path)
    if not path.is_file():
        raise FileRejected(path, "not a readable file")
    if path.stat().st_size == 0:
        raise FileRejected(path, "the file is empty (0 bytes)")
    fmt, loader = LOADERS[path.suffix.lower()]
    try:
        doc = loader(path, options, on_page)
    except FileRejected:
        raise
    except RecursionError as exc:
        raise FileRejected(path, f"nested too deeply to be parsed as {fmt}; re-save it flat") from exc
    except MemoryError as exc:
        raise FileRejected(path, f"too large to parse as {fmt} in memory; split the file") from exc
    except Exception as exc:  # a parser bug or an exotic file must not stop the other files
        raise FileRejected(path, f"could not be parsed as {fmt} ({type(exc).__name__}: {exc})") from exc
    if sum(len(p.text) for p in doc.pages) > options.max_text_chars:
        raise too_much_text(path, options)
    if not any(p.text.strip() for p in doc.pages):
        raise FileRejected(path, "no text could be extracted: the file holds no readable text")
    return doc
