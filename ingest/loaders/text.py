"""Plain text and Markdown, with encoding detection (UTF-8, GBK/GB18030, UTF-16, ...)."""

from __future__ import annotations

from pathlib import Path

from charset_normalizer import from_bytes

from core.errors import FileRejected
from core.text import CJK_CHAR
from ingest.loaders.base import DEFAULT_OPTIONS, LoadedDocument, Page, ParseOptions, too_much_text


def decode_bytes(data: bytes, path: Path) -> str:
    if data.startswith(b"\xef\xbb\xbf"):
        return _not_binary(data[3:].decode("utf-8"), path)
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return _not_binary(data.decode("utf-16"), path)
    if b"\x00" in data[:65536]:
        # NUL bytes never occur in UTF-8 or GB text; BOM-less UTF-16 has them at every other byte
        text = _bomless_utf16(data)
        if text is None:
            raise FileRejected(path, "binary content (NUL bytes), not text; check the file type")
        return _not_binary(text, path)
    try:
        return _not_binary(data.decode("utf-8"), path)
    except UnicodeDecodeError:
        pass
    # GB18030 is a superset of GBK/GB2312; try it before the statistical guess, which confuses
    # short Chinese texts with other legacy code pages.
    try:
        text = data.decode("gb18030")
        if _mostly_cjk_or_ascii(text):
            return _not_binary(text, path)
    except UnicodeDecodeError:
        pass
    best = from_bytes(data).best()
    if best is None:
        raise FileRejected(path, "unknown text encoding; save it as UTF-8 and add it again")
    return _not_binary(str(best), path)


def _bomless_utf16(data: bytes) -> str | None:
    sample = data[:4096]
    even, odd = sample[0::2].count(0), sample[1::2].count(0)
    half = len(sample) / 2
    codec = "utf-16-le" if odd > 0.3 * half and even < 0.05 * half else (
        "utf-16-be" if even > 0.3 * half and odd < 0.05 * half else None)
    if codec is None:
        return None
    try:
        return data.decode(codec)
    except UnicodeDecodeError:
        return None


_TEXT_CONTROLS = set("\t\n\r\f\v\x1b")


def _not_binary(text: str, path: Path) -> str:
    """Refuse text that is mostly control characters (a binary file that happens to decode)."""
    sample = text[:65536]
    controls = sum(1 for ch in sample if ch < " " and ch not in _TEXT_CONTROLS)
    if controls > 0.05 * max(len(sample), 1) or "\x00" in text:
        raise FileRejected(path, "binary content (control bytes), not text; check the file type")
    return text


def _mostly_cjk_or_ascii(text: str) -> bool:
    ok = sum(
        1
        for ch in text
        if ch.isascii() or CJK_CHAR.match(ch)
    )
    return ok >= 0.95 * max(len(text), 1)


def load_text(path: Path, fmt: str = "text", options: ParseOptions = DEFAULT_OPTIONS) -> LoadedDocument:
    if path.stat().st_size > 4 * options.max_text_chars:  # no encoding takes more than 4 bytes a character
        raise too_much_text(path, options)
    text = decode_bytes(path.read_bytes(), path)
    if len(text) > options.max_text_chars:
        raise too_much_text(path, options)
    if text.count("\n") > options.max_paragraphs:
        raise FileRejected(
            path, f"more than {options.max_paragraphs:,} lines (limit ASSISTANT_MAX_PARAGRAPHS); split the file"
        )
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return LoadedDocument(format=fmt, pages=[Page(text=text)], title=path.stem)
