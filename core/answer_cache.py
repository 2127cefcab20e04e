"""The answer cache: a finished answer served again when the same question is asked in the same circumstances.

- The key is the normalised question within a `CacheScope`: the knowledge base and its version, what the asker may
  see and do (departments visible, tools allowed), the adapter version with its registry state, the model and the
  answer-relevant settings. Two askers share an entry only when every part of the scope is equal, so an answer is
  never served across access scopes.
- An entry keeps the evidence it rests on (chunk ids with the sha256 of their text). A hit is served only if every
  one of those chunks still holds the same text now (`current_texts`, the caller's live store) and the entry is
  within its TTL; otherwise the entry is dropped. Writing an entry drops those of other versions of the same
  knowledge base or adapter state (a re-ingest, a promotion or a roll-back leaves none of them behind).
- What may be cached at all (a complete answer, no tool result) is the caller's decision.
- Optional paraphrase matching: the question's embedding is stored, and a miss may be served by the entry of the
  same scope whose question's cosine reaches a threshold (calibrated by bench/cache_paraphrase.py).

The store is one SQLite file (WAL): several server processes on one machine share it; deleting it loses nothing.
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
import time
import unicodedata
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core import db

SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    key TEXT PRIMARY KEY,           -- sha256 of the scope and the normalised question
    scope TEXT NOT NULL,            -- sha256 of the scope alone (paraphrase matching looks within it)
    kb TEXT NOT NULL, kb_version TEXT NOT NULL,
    adapter TEXT NOT NULL,          -- adapter name ('' for the base model)
    adapter_state TEXT NOT NULL,    -- the adapter's version and registry state when the answer was made
    question TEXT NOT NULL,         -- normalised
    payload TEXT NOT NULL,          -- JSON: the answer as the caller stores it
    evidence TEXT NOT NULL,         -- JSON [[chunk_id, sha256 of its text]]
    vector BLOB,                    -- float32 embedding of the question (paraphrase matching), or NULL
    audit_id INTEGER,               -- the turn that made the answer
    created REAL NOT NULL, used REAL NOT NULL, hits INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS entries_scope ON entries(scope);
CREATE INDEX IF NOT EXISTS entries_used ON entries(used);
"""

_TRAILING = re.compile(r"[\s?？!！。.,，;；:：~～…]+$")


def normalise(question: str) -> str:
    """The form questions are matched in: Unicode NFKC (full-width is half-width), case folded, runs of white
    space as one space, trailing punctuation dropped. Words and figures are never changed."""
    text = re.sub(r"\s+", " ", unicodedata.normalize("NFKC", question).casefold()).strip()
    return _TRAILING.sub("", text)


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class CacheScope:
    """Everything besides the question that decides an answer."""

    kb: str
    kb_version: str
    departments: tuple[str, ...]  # visible department tags ('*': all, '' : untagged documents)
    tools: tuple[str, ...]  # tools the asker may be offered
    adapter: str  # adapter name, '' for the base model
    adapter_state: str  # the version and the registry state it was chosen under
    model: str
    options: str  # answer-relevant settings and switches (thinking, verification ...)

    @property
    def digest(self) -> str:
        return text_hash(json.dumps(asdict(self), sort_keys=True, ensure_ascii=False))

    def key(self, question: str) -> str:
        return text_hash(self.digest + "\n" + normalise(question))


@dataclass
class Hit:
    payload: dict[str, Any]
    audit_id: int | None
    created: float
    question: str  # the cached question (normalised): differs from the asked one on a paraphrase hit
    similarity: float | None = None  # cosine of a paraphrase hit


class AnswerCache:
    def __init__(self, path: Path, ttl_s: float = 86_400.0, max_entries: int = 50_000) -> None:
        self.path, self.ttl_s, self.max_entries = path, ttl_s, max_entries

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        # disposable: a commit lost to a power cut costs one answer's recomputation, never consistency (WAL);
        # per node also with app state on PostgreSQL (entries are keyed by knowledge-base and adapter versions, so a
        # node's cache never serves an answer of a version another node replaced)
        with db.connect(self.path, SCHEMA, synchronous="NORMAL", local=True) as conn:
            yield conn

    def get(self, scope: CacheScope, question: str, current_texts: Callable[[list[str]], dict[str, str]],
            vector: np.ndarray | None = None, threshold: float | None = None) -> Hit | None:
        """The entry for this question in this scope (or, with `vector` and `threshold`, the closest paraphrase
        reaching it), if its evidence still stands and it is within its TTL; a stale entry is dropped."""
        now = time.time()
        with self._connect() as conn:
            row = conn.execute("SELECT * FROM entries WHERE key = ?", (scope.key(question),)).fetchone()
            similarity = None
            if row is None and vector is not None and threshold is not None:
                row, similarity = _closest(conn, scope.digest, vector, threshold)
            if row is None:
                return None
            evidence = json.loads(row["evidence"])
            texts = current_texts([cid for cid, _ in evidence]) if evidence else {}
            stale = any(cid not in texts or text_hash(texts[cid]) != sha for cid, sha in evidence)
            if stale or (self.ttl_s and now - row["created"] > self.ttl_s):
                conn.execute("DELETE FROM entries WHERE key = ?", (row["key"],))
                return None
            if now - row["used"] > 60:  # recency for eviction, kept to the minute: a hit is a read, not a write
                conn.execute("UPDATE entries SET used = ?, hits = hits + 1 WHERE key = ?", (now, row["key"]))
        return Hit(json.loads(row["payload"]), row["audit_id"], row["created"], row["question"], similarity)

    def put(self, scope: CacheScope, question: str, payload: dict[str, Any], evidence: dict[str, str],
            audit_id: int | None, vector: np.ndarray | None = None) -> None:
        """Store an answer with the chunks it rests on (`evidence`: chunk id -> its text)."""
        now = time.time()
        blob = None if vector is None else np.asarray(vector, dtype=np.float32).tobytes()
        with self._connect() as conn:
            # other versions of this knowledge base or adapter state: never served again
            conn.execute("DELETE FROM entries WHERE kb = ? AND kb_version != ?", (scope.kb, scope.kb_version))
            conn.execute("DELETE FROM entries WHERE adapter = ? AND adapter_state != ?",
                         (scope.adapter, scope.adapter_state))
            conn.execute(
                "INSERT OR REPLACE INTO entries (key, scope, kb, kb_version, adapter, adapter_state, question, payload,"
                " evidence, vector, audit_id, created, used) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (scope.key(question), scope.digest, scope.kb, scope.kb_version, scope.adapter, scope.adapter_state,
                 normalise(question), json.dumps(payload, ensure_ascii=False, default=str),
                 json.dumps(sorted((cid, text_hash(t)) for cid, t in evidence.items())), blob, audit_id, now, now))
            over = conn.execute("SELECT COUNT(*) FROM entries").fetchone()[0] - self.max_entries
            if over > 0:
                conn.execute("DELETE FROM entries WHERE key IN (SELECT key FROM entries ORDER BY used LIMIT ?)",
                             (over,))

    def clear(self, kb: str | None = None) -> int:
        with self._connect() as conn:
            cur = conn.execute("DELETE FROM entries" + (" WHERE kb = ?" if kb else ""), (kb,) if kb else ())
            return cur.rowcount

    def stats(self) -> dict[str, Any]:
        with self._connect() as conn:
            n, hits = conn.execute("SELECT COUNT(*), COALESCE(SUM(hits), 0) FROM entries").fetchone()
        return {"entries": n, "hits": hits}


def _closest(conn: sqlite3.Connection, scope: str, vector: np.ndarray,
             threshold: float) -> tuple[sqlite3.Row | None, float | None]:
    rows = conn.execute("SELECT * FROM entries WHERE scope = ? AND vector IS NOT NULL", (scope,)).fetchall()
    if not rows:
        return None, None
    q = np.asarray(vector, dtype=np.float32)
    q = q / (np.linalg.norm(q) or 1.0)
    mat = np.stack([np.frombuffer(r["vector"], dtype=np.float32) for r in rows])
    sims = mat @ q / np.maximum(np.linalg.norm(mat, axis=1), 1e-12)
    best = int(np.argmax(sims))
    return (rows[best], float(sims[best])) if sims[best] >= threshold else (None, None)
