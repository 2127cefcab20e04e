"""Plain text and Markdown, with encoding detection (UTF-8, GBK/GB18030, UTF-16, ...)."""

from __future__ import annotations

from pathlib import Path

from charset_normalizer import from_bytes

from core.errors import FileRejected
from ingest.loaders.base import LoadedDocument, Page


def decode_bytes(data: bytes, path: Path) -> str:
    if data.startswith(b"\xef\xbb\xbf"):
        return data[3:].decode("utf-8")
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    if b"\x00" in data[:4096]:
        raise FileRejected(path, "binary content, not text; check the file type")
    # GB18030 is a superset of GBK/GB2312; try it before the statistical guess, which confuses
    # short Chinese texts with other legacy code pages.
    try:
        text = data.decode("gb18030")
        if _mostly_cjk_or_ascii(text):
            return text
    except UnicodeDecodeError:
        pass
    best = from_bytes(data).best()
    if best is None:
        raise FileRejected(path, "unknown text encoding; save it as UTF-8 and add it again")
    return str(best)


def _mostly_cjk_or_ascii(text: str) -> bool:
    ok = sum(
        1
        for ch in text
        if ch.isascii() or "\u4e00" <= ch <= "\u9fff" or "\u3000" <= ch <= "\u303f" or "\uff00" <= ch <= "\uffef"
    )
    return ok >= 0.95 * max(len(text), 1)


def load_text(path: Path, fmt: str = "text") -> LoadedDocument:
    text = decode_bytes(path.read_bytes(), path)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return LoadedDocument(format=fmt, pages=[Page(text=text)], title=path.stem)
