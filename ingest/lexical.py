"""The lexical (BM25) index of a knowledge-base version: tokens (jieba for Chinese, plain words for English),
built once per commit and saved with the version, so readers load it instead of re-tokenising every chunk.

Files in `<version>/bm25/`: bm25s's own arrays (numpy, loaded with allow_pickle=False) and JSON, plus
`ids.json` (chunk ids in index order, to check the index matches the FAISS positions) and `terms.json`
(each chunk's tokens keyed by a hash of what was tokenised, so the next commit re-tokenises only new chunks).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from core.text import HAN

logging.getLogger("jieba").setLevel(logging.WARNING)  # once, not per tokenised text
_WORD = re.compile(rf"[\w{HAN}]")
STOP_WORDS = {"的", "了", "是", "在", "和", "与", "及", "或", "吗", "呢", "what", "the", "a", "an", "of", "to", "is",
         "are", "and", "or", "in", "on", "for", "how", "do", "does", "i", "we", "can", "be", "by", "with", "之"}

# bump when bm25_tokens changes: saved indexes and cached tokens of another version are not reused
TOKENIZER_VERSION = 2
_ALNUM = re.compile(r"[a-z]+|[0-9]+(?:[.,][0-9]+)*|[^a-z0-9]+")
BM25_DIR = "bm25"
IDS_FILE = "ids.json"
TERMS_FILE = "terms.json"


def bm25_tokens(text: str) -> list[str]:
    """jieba's search-mode words, lower-cased; letters and digits glued together also count apart
    ("fy2022" -> "fy2022", "fy", "2022") so a fiscal year or quarter matches the plain year."""
    import jieba

    out = []
    for w in jieba.lcut_for_search(text.lower()):
        w = w.strip()
        if not w or not _WORD.match(w):
            continue
        if w not in STOP_WORDS:
            out.append(w)
        if w.isascii() and not w.isalpha() and not w.isdigit():
            out.extend(p for p in _ALNUM.findall(w) if p != w and p not in STOP_WORDS and _WORD.match(p))
    return out


def query_terms(text: str) -> list[str]:
    """A question's words whose presence in a passage can be checked: jieba's dictionary words (no HMM guesses,
    which glue characters across word boundaries: 期是 out of 犹豫期是), lower-cased, without stop words and
    without single Han characters (too common to tell anything)."""
    import jieba

    words = (x.strip() for x in jieba.lcut(text.lower(), HMM=False))
    return [w for w in words if w and _WORD.match(w) and w not in STOP_WORDS and not (len(w) == 1 and not w.isascii())]


def lexical_text(title: str, metadata: dict[str, Any], text: str) -> str:
    """What BM25 indexes for a chunk: its document title and heading path with the text."""
    return f"{title} {metadata.get('clause') or ''} {text}"


def _key(text: str) -> str:
    return hashlib.blake2b(f"{TOKENIZER_VERSION}\0{text}".encode(), digest_size=12).hexdigest()


def load_terms(version_dir: Path | None) -> dict[str, list[str]]:
    """Token lists of a previous version, keyed by the hash of their lexical text ({} when none)."""
    if version_dir is None:
        return {}
    try:
        return json.loads((version_dir / BM25_DIR / TERMS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def chunk_terms(texts: Sequence[str], cache: dict[str, list[str]]) -> tuple[list[list[str]], dict[str, list[str]]]:
    """Tokens of each lexical text, reusing `cache`; returns them with the cache entries they used."""
    used: dict[str, list[str]] = {}
    out = []
    for text in texts:
        key = _key(text)
        terms = used.get(key)
        if terms is None:
            terms = cache[key] if key in cache else bm25_tokens(text)
            used[key] = terms
        out.append(terms)
    return out, used


def build_bm25(terms: list[list[str]]) -> Any:
    import bm25s

    model = bm25s.BM25()
    # a chunk with no indexable token still needs its row, so positions stay aligned with FAISS
    model.index([t or ["\u2205"] for t in terms], show_progress=False)
    return model


def save_bm25(folder: Path, model: Any, ids: list[str], used_terms: dict[str, list[str]]) -> list[Path]:
    target = folder / BM25_DIR
    target.mkdir()
    model.save(str(target), show_progress=False)
    (target / IDS_FILE).write_text(json.dumps({"tokenizer": TOKENIZER_VERSION, "ids": ids}), encoding="utf-8")
    (target / TERMS_FILE).write_text(json.dumps(used_terms, ensure_ascii=False, separators=(",", ":")),
                                     encoding="utf-8")
    return [p for p in target.iterdir() if p.is_file()]


def load_bm25(version_dir: Path, ids: list[str]) -> Any | None:
    """The version's saved BM25 index, or None when it has none, it does not match `ids` or it was
    tokenised by another tokenizer version."""
    import bm25s

    target = version_dir / BM25_DIR
    try:
        saved = json.loads((target / IDS_FILE).read_text(encoding="utf-8"))
        if not isinstance(saved, dict) or saved.get("tokenizer") != TOKENIZER_VERSION or saved.get("ids") != ids:
            return None
        return bm25s.BM25.load(str(target), mmap=False, allow_pickle=False, show_progress=False)
    except (OSError, ValueError):
        return None
