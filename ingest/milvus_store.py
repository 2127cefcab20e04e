"""Knowledge bases in Milvus (ASSISTANT_VECTOR_STORE=milvus): the same versions, manifest and searches as
`ingest.store`'s files, held by a Milvus server or cluster (`http://host:19530`) or Milvus Lite (a file path),
so that app servers on several machines share one knowledge base with no shared files.

Layout (names from `names()`; a KB name is escaped to Milvus's [A-Za-z0-9_]):
    kb_<name>__v_<version>   one collection per version: a chunk a row, `pos` (its index order) the primary key,
                             dense vector (FLAT, inner product = cosine of unit vectors), BM25 sparse vector made
                             by Milvus's BM25 function, department/doc_id/source as scalar fields for filters
    kb_<name>__live          the alias naming the live version's collection: the commit point
    assistant_kb_meta        the manifest (what CURRENT + manifest.json hold on disk) and the version's term
                             statistics, as JSON split into rows keyed by (kb, version, kind, part)

Invariants:
- a version's collection and meta rows are complete before the alias moves to it; the alias move is the one
  atomic switch, so a reader sees the old or the new version whole, and a crash before it changes nothing;
- the previous version stays (collection + meta rows) so a reader that resolved the alias before a commit can
  finish; older ones, and leftovers of a crashed writer, are dropped by the next writer;
- a reader pins the version it resolved: it searches that collection by name, never the alias.
Writers take the file lock of `ingest.store` (one machine) and, with app state in PostgreSQL
(ASSISTANT_DATABASE_URL), an advisory lock there keyed by Milvus URI and knowledge base: writers on every machine
exclude each other, and a holder that dies frees it with its connection. Without PostgreSQL, a knowledge base in a
shared Milvus has one ingest node.

BM25: each chunk's own project tokens (`ingest.lexical.bm25_tokens`: jieba search mode + English words) are
hashed into ASCII words that Milvus's standard analyzer keeps whole, so Milvus scores the project's tokens
(bench/retrieval_eval.py --store both compares it with the `jieba` analyzer variant, BM25_ANALYZER).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
import threading
import time
import uuid
from collections import Counter, OrderedDict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from filelock import FileLock
from langchain_core.documents import Document

from core.clock import now_iso
from core.errors import AssistantError, KnowledgeBaseBusy, KnowledgeBaseUnavailable
from core.files import atomic_write_text
from core.settings import Settings
from ingest import lexical
from ingest.store import KnowledgeBase, Snapshot
from ingest.vectorstore import LocalVectorStore

META = "assistant_kb_meta"
_PART = 60_000  # characters of ASCII JSON per meta row (the VARCHAR holds 65,535 bytes)
_VARCHAR = 65_535
_BATCH = 2_000  # rows per insert / query page
_MAX_TOKENS = 3_600  # hashed tokens per chunk that fit the VARCHAR (17 bytes each); longer chunks are cut
BM25_ANALYZER = "tokens"  # "tokens": the project's own tokens; "jieba": Milvus's jieba analyzer on the text
_LIMIT = 16_384  # Milvus's largest top-k / query page

_MAX_CLIENTS = 4
# (uri, token) -> (client, pid and port of the process serving a Milvus Lite file or None, the file)
_clients: dict[tuple[str, str | None], tuple[Any, int | None, int | None, str]] = {}
_clients_lock = threading.Lock()


def _safe(name: str) -> str:
    return "".join(c if c.isascii() and c.isalnum() else f"_{ord(c):06x}" for c in name)


def names(kb: str) -> tuple[str, str]:
    """(collection name prefix of a knowledge base's versions, its alias)."""
    prefix = f"kb_{_safe(kb)}"
    return f"{prefix}__v_", f"{prefix}__live"


def term_key(token: str) -> str:
    """A project token as one ASCII word (Milvus's standard analyzer would split Chinese words apart)."""
    return "t" + hashlib.blake2b(token.encode("utf-8"), digest_size=8).hexdigest()


def _q(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)  # a string literal of Milvus's filter language


def filter_expr(departments: Iterable[str | None] | None = None, sources: Iterable[str] | None = None,
                doc_ids: Iterable[str] | None = None) -> str:
    """A Milvus scalar filter: department in the allowed set (None/"" = untagged; compared lowercased, as stored),
    the document named by source or id, within `doc_ids`; "" = everything."""
    parts = []
    if departments is not None:
        parts.append(f"department in [{', '.join(_q((d or '').lower()) for d in set(departments))}]")
    if sources is not None:
        wanted = ", ".join(_q(s) for s in set(sources))
        parts.append(f"(source in [{wanted}] or doc_id in [{wanted}])")
    if doc_ids is not None:
        parts.append(f"doc_id in [{', '.join(_q(d) for d in set(doc_ids))}]")
    return " and ".join(parts)


def _and(*exprs: str) -> str:
    return " and ".join(f"({e})" for e in exprs if e)


def unavailable(settings: Settings, kb: str, exc: BaseException) -> KnowledgeBaseUnavailable:
    reason = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return KnowledgeBaseUnavailable(
        f"knowledge base '{kb}' is unavailable: Milvus at {settings.milvus_target} cannot be reached or refused "
        f"the request ({reason}). Start Milvus there, or set ASSISTANT_MILVUS_URI to a running Milvus (a file "
        f"path runs Milvus Lite embedded), or unset ASSISTANT_VECTOR_STORE for the local FAISS store. Nothing "
        f"was changed.")


def _serving(path: str) -> Path:
    return Path(path + ".serving")


def _answers(pid: int, port: int) -> bool:
    """That process lives and something listens on its port."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def _lite(path: str) -> tuple[int, int]:
    """(pid, port) of the process of this machine that serves the Milvus Lite file `path`.

    Milvus Lite opens its file in one process only: the first process to need it serves it on 127.0.0.1 and
    writes `<file>.serving`; the others connect there, and the next one to need it takes over when that process
    is gone (its port no longer answers). The choice is made under `<file>.serving.lock`, so two servers never
    race for the file."""
    from milvus_lite.server_manager import server_manager_instance

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with FileLock(path + ".serving.lock", timeout=60):
        try:
            seen = json.loads(_serving(path).read_text(encoding="utf-8"))
            pid, port = int(seen["pid"]), int(seen["port"])
            if pid != os.getpid() and _answers(pid, port):
                return pid, port
        except (OSError, ValueError, KeyError, TypeError):
            pass
        uri = server_manager_instance.start_and_get_uri(path)  # this process's own server (reused if running)
        if uri is None:
            raise OSError(f"Milvus Lite could not open {path}: another program holds it, or it is not Milvus Lite's")
        port = int(uri.rsplit(":", 1)[1])
        _load_all(uri)
        atomic_write_text(_serving(path), json.dumps({"pid": os.getpid(), "port": port}))
        return os.getpid(), port


def _load_all(uri: str) -> None:
    """Every collection of a Milvus Lite server just started loaded: a server starts with them released, and
    readers that opened a version before a takeover search it by name."""
    from pymilvus import MilvusClient

    c = MilvusClient(uri=uri, timeout=10)
    try:
        for name in c.list_collections():
            c.load_collection(name)
    finally:
        c.close()


def _release(path: str) -> None:
    """Stop serving a Milvus Lite file this process serves (others take over on their next request)."""
    from milvus_lite.server_manager import server_manager_instance

    with FileLock(path + ".serving.lock", timeout=60):
        _serving(path).unlink(missing_ok=True)
        server_manager_instance.release_server(path)


def _create_indexed(c: Any, name: str, schema: Any, index_params: Any) -> None:
    """An empty collection with its indexes, loaded. The indexes are not waited for (empty: nothing to build),
    since the wait asks for a timestamp that Milvus Lite's server does not implement."""
    c.create_collection(name, schema=schema)
    c.create_index(name, index_params, sync=False)
    c.load_collection(name)


def client(settings: Settings, kb: str) -> Any:
    """One client per URI per process; a Milvus Lite file (a path) is shared by this machine's processes through
    the one that serves it (`_lite`)."""
    from pymilvus import MilvusClient

    uri, token = settings.milvus_target, settings.milvus_token
    with _clients_lock:
        found = _clients.get((uri, token))
        if found is not None and found[1] not in (None, os.getpid()) and not _answers(found[1], found[2]):
            _clients.pop((uri, token))[0].close()  # the serving process is gone: resolve afresh
            found = None
        if found is None:
            try:
                pid = port = None
                target = uri
                if "://" not in uri:
                    uri = str(Path(uri).absolute())
                    pid, port = _lite(uri)
                    target = f"http://127.0.0.1:{port}"
                found = (MilvusClient(uri=target, token=token or "", timeout=10), pid, port, uri)
            except Exception as exc:  # pymilvus raises several types for a refused or bad URI
                raise unavailable(settings, kb, exc) from None
            _clients[(settings.milvus_target, token)] = found
            while len(_clients) > _MAX_CLIENTS:  # a Milvus Lite file served here holds its server: keep a few
                c, pid, _, path = _clients.pop(next(iter(_clients)))
                c.close()
                if pid == os.getpid():
                    _release(path)
    return found[0]


def forget_client(settings: Settings) -> None:
    with _clients_lock:
        _clients.pop((settings.milvus_target, settings.milvus_token), None)


class MilvusKnowledgeBase(KnowledgeBase):
    """`ingest.store.KnowledgeBase` with its versions in Milvus (KnowledgeBase(settings) returns one when
    settings.vector_store is 'milvus')."""

    def __init__(self, settings: Settings, name: str | None = None) -> None:
        super().__init__(settings, name)
        self.prefix, self.alias = names(self.name)

    # ---- plumbing ----------------------------------------------------------------------------
    @contextmanager
    def _milvus(self) -> Iterator[Any]:
        """The client; any failure of the service becomes KnowledgeBaseUnavailable (no traceback for users)."""
        from pymilvus.exceptions import MilvusException

        c = client(self.settings, self.name)
        try:
            yield c
        except MilvusException as exc:
            forget_client(self.settings)
            raise unavailable(self.settings, self.name, exc) from None

    def _ensure_meta(self, c: Any) -> None:
        from pymilvus import DataType

        if not c.has_collection(META):
            s = c.create_schema(auto_id=False)
            s.add_field("key", DataType.VARCHAR, max_length=512, is_primary=True)
            s.add_field("kb", DataType.VARCHAR, max_length=1024)
            s.add_field("version", DataType.VARCHAR, max_length=64)
            s.add_field("kind", DataType.VARCHAR, max_length=16)
            s.add_field("part", DataType.INT64)
            s.add_field("body", DataType.VARCHAR, max_length=_VARCHAR)
            s.add_field("vec", DataType.FLOAT_VECTOR, dim=2)  # Milvus wants a vector field; unused
            ip = c.prepare_index_params()
            ip.add_index("vec", index_type="FLAT", metric_type="L2")
            _create_indexed(c, META, s, ip)
        c.load_collection(META)

    def _read_blob(self, c: Any, version: str, kind: str) -> Any:
        rows = c.query(META, filter=f"kb == {_q(self.name)} and version == {_q(version)} and kind == {_q(kind)}",
                       output_fields=["part", "body"], limit=_LIMIT)
        if not rows:
            return None
        return json.loads("".join(r["body"] for r in sorted(rows, key=lambda r: r["part"])))

    def _write_blob(self, c: Any, version: str, kind: str, value: Any) -> None:
        text = json.dumps(value, ensure_ascii=True, separators=(",", ":"))
        rows = [{"key": f"{self.name}\0{version}\0{kind}\0{i}", "kb": self.name, "version": version, "kind": kind,
                 "part": i, "body": text[o:o + _PART], "vec": [0.0, 0.0]}
                for i, o in enumerate(range(0, max(1, len(text)), _PART))]
        for i in range(0, len(rows), 100):
            c.insert(META, rows[i:i + 100])

    def collection(self, version: str) -> str:
        return f"{self.prefix}{version}"

    # ---- reading ------------------------------------------------------------------------------
    def exists(self) -> bool:
        return self.current_version() is not None

    def current_version(self) -> str | None:
        with self._milvus() as c:
            if self.alias not in c.list_aliases().get("aliases", []):
                return None
            target = c.describe_alias(self.alias)["collection_name"]
        return target[len(self.prefix):] if target.startswith(self.prefix) else None

    def read_manifest(self, version: str | None = None) -> dict[str, Any]:
        version = version or self.current_version()
        if version is None:
            return self.empty_manifest()
        with self._milvus() as c:
            self._ensure_meta(c)
            manifest = self._read_blob(c, version, "manifest")
        if manifest is None:
            raise AssistantError(f"knowledge base '{self.name}' is damaged: version {version} has no manifest in "
                                 f"Milvus ({self.settings.milvus_target}). Run `ingest rebuild --kb {self.name}`.")
        return manifest

    def version_dir(self, version: str | None = None) -> Path | None:
        return None  # no files: the version lives in Milvus

    def load(self, embeddings: Any = None, migrate: bool = True) -> Snapshot:
        """The live version in memory for a writer: vectors read back from Milvus (reused, never re-embedded)."""
        version = self.current_version()
        manifest = self.read_manifest(version)
        store = None
        if version is not None and manifest.get("embedding"):
            dim = int(manifest["embedding"]["dim"])
            rows = self.rows(version, ["chunk_id", "text", "meta", "vector"])
            vectors = np.asarray([r["vector"] for r in rows], dtype=np.float32).reshape(len(rows), dim)
            store = LocalVectorStore(embeddings, dim)
            store.add_embeddings(zip([r["text"] for r in rows], vectors, strict=True),
                                 [r["meta"] for r in rows], [r["chunk_id"] for r in rows])
        return Snapshot(manifest=manifest, store=store, version=version)

    def rows(self, version: str, fields: list[str]) -> list[dict[str, Any]]:
        """Every row of a version, in index order (`pos`)."""
        name = self.collection(version)
        out: list[dict[str, Any]] = []
        with self._milvus() as c:
            c.load_collection(name)
            # pages by position: `pos` is 0..n-1 without gaps, so the first empty page is the end
            while batch := c.query(name, filter=f"pos >= {len(out)} and pos < {len(out) + _BATCH}",
                                   output_fields=["pos", *fields], limit=_BATCH):
                out.extend(sorted(batch, key=lambda r: r["pos"]))
        return out

    def open_index(self, version: str) -> MilvusIndex:
        return MilvusIndex(self, version)

    # ---- writing ------------------------------------------------------------------------------
    def acquire(self) -> _Held:
        """The writer's locks: this machine's file lock, then, with app state in PostgreSQL, an advisory lock there
        that writers on every machine sharing this Milvus take (a crashed holder's goes with its connection)."""
        lock = super().acquire()
        held = _Held(lock)
        try:
            if self.settings.database_url:
                held.session = self._cluster_lock()
            self._drop_unfinished()  # safe while the locks held exclude every other writer of this Milvus
        except BaseException:
            held.release()
            raise
        return held

    def _cluster_lock(self) -> Any:
        from core.pg import LockBusy, SessionLock

        try:
            return SessionLock(self.settings.database_url, "kb-writer", self.settings.milvus_target, self.name,
                               timeout_s=self.settings.lock_timeout_s,
                               holder=f"assistant ingest {socket.gethostname()} pid {os.getpid()}")
        except LockBusy as exc:
            raise KnowledgeBaseBusy(
                f"knowledge base '{self.name}' in Milvus ({self.settings.milvus_target}) is being written by "
                f"{exc.holder}, whose lock is in PostgreSQL; wait for it to finish, or raise "
                f"ASSISTANT_LOCK_TIMEOUT_S.") from None

    def _drop_unfinished(self) -> None:
        """Collections of a writer that crashed before writing the version's manifest."""
        with self._milvus() as c:
            self._ensure_meta(c)
            live = self.current_version()
            for name in c.list_collections():
                if name.startswith(self.prefix) and name[len(self.prefix):] != live:
                    if self._read_blob(c, name[len(self.prefix):], "manifest") is None:
                        c.drop_collection(name)

    def commit(self, snapshot: Snapshot, analyzer: str | None = None,
               tokens: dict[str, list[str]] | None = None) -> str:
        """Write `snapshot` as a new collection + meta rows, then move the alias. Caller holds the lock.
        `tokens`: BM25 tokens already made (a FAISS version's terms.json, by lexical-text key), not redone."""
        version = f"{time.strftime('%Y%m%dT%H%M%S')}_{uuid.uuid4().hex[:8]}"
        name = self.collection(version)
        analyzer = analyzer or BM25_ANALYZER
        snapshot.manifest["updated_at"] = now_iso()
        store = snapshot.store
        dim = store.dim if store is not None else int((snapshot.manifest.get("embedding") or {}).get("dim") or 2)
        previous = self.current_version()
        cache = self._token_cache(previous, snapshot) if previous else {}
        cache.update({k: " ".join(term_key(t) for t in v[:_MAX_TOKENS]) for k, v in (tokens or {}).items()})
        with self._milvus() as c:
            self._ensure_meta(c)
            self._create(c, name, dim, analyzer)
            stats, columns = self._insert(c, name, snapshot, cache, analyzer)
            c.flush(name)
            self._write_blob(c, version, "columns", columns)
            self._write_blob(c, version, "terms", stats)
            self._write_blob(c, version, "manifest", snapshot.manifest)
            c.flush(META)
            # the commit point: readers resolving the alias from here on see the new version whole
            if self.alias in c.list_aliases().get("aliases", []):
                c.alter_alias(name, self.alias)
            else:
                c.create_alias(name, self.alias)
            self._prune(c, keep={version, previous})
        return version

    def _create(self, c: Any, name: str, dim: int, analyzer: str) -> None:
        from pymilvus import DataType, Function, FunctionType

        s = c.create_schema(auto_id=False)
        s.add_field("pos", DataType.INT64, is_primary=True)
        s.add_field("chunk_id", DataType.VARCHAR, max_length=512)
        s.add_field("doc_id", DataType.VARCHAR, max_length=256)
        s.add_field("source", DataType.VARCHAR, max_length=4096)
        s.add_field("department", DataType.VARCHAR, max_length=1024)
        s.add_field("text", DataType.VARCHAR, max_length=_VARCHAR)
        s.add_field("tokens", DataType.VARCHAR, max_length=_VARCHAR,
                    **({"enable_analyzer": True, "analyzer_params": {"tokenizer": "standard"}}
                       if analyzer == "tokens" else {}))
        if analyzer == "jieba":
            s.add_field("lex", DataType.VARCHAR, max_length=_VARCHAR, enable_analyzer=True,
                        analyzer_params={"tokenizer": "jieba"})
        s.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
        s.add_field("vector", DataType.FLOAT_VECTOR, dim=dim)
        s.add_field("meta", DataType.JSON)
        s.add_function(Function(name="bm25", function_type=FunctionType.BM25,
                                input_field_names=["tokens" if analyzer == "tokens" else "lex"],
                                output_field_names=["sparse"]))
        ip = c.prepare_index_params()
        ip.add_index("vector", index_type="FLAT", metric_type="IP")
        ip.add_index("sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="BM25")
        _create_indexed(c, name, s, ip)

    def _token_cache(self, version: str, snapshot: Snapshot) -> dict[str, str]:
        """Hashed tokens of the previous version's chunks by the key of their lexical text: unchanged chunks are
        not re-tokenised."""
        try:
            titles = {d: doc.get("title") or "" for d, doc in self.read_manifest(version)["documents"].items()}
            rows = self.rows(version, ["text", "meta", "tokens"])
        except KnowledgeBaseUnavailable:
            raise
        except AssistantError:
            return {}
        return {_lex_key(titles.get(r["meta"].get("doc_id"), ""), r["meta"], r["text"]): r["tokens"] for r in rows}

    def _insert(self, c: Any, name: str, snapshot: Snapshot, cache: dict[str, str],
                analyzer: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """Insert every chunk in index order; returns the term statistics readers use (idf, coverage, names) and
        the per-chunk columns they hold (`Columns`)."""
        columns = Columns()
        df: Counter[str] = Counter()
        users: dict[str, set[str]] = {}
        store = snapshot.store
        n = len(store) if store is not None else 0
        titles = {d: doc.get("title") or "" for d, doc in snapshot.documents.items()}
        docs = store.documents() if store is not None else []
        for start in range(0, n, _BATCH):
            vectors = store.index.reconstruct_n(start, min(_BATCH, n - start))
            rows = []
            for j, (d, v) in enumerate(zip(docs[start:start + _BATCH], vectors, strict=True)):
                md = d.metadata
                title = titles.get(md.get("doc_id"), "")
                key = _lex_key(title, md, d.page_content)
                tokens = cache.get(key)
                if tokens is None:
                    words = lexical.bm25_tokens(lexical.lexical_text(title, md, d.page_content))
                    tokens = " ".join(term_key(w) for w in words[:_MAX_TOKENS])
                for t in set(tokens.split()):
                    df[t] += 1
                    users.setdefault(t, set()).add(md.get("doc_id", ""))
                columns.add(md.get("doc_id", ""), md.get("source", ""), md.get("department"), md.get("page"))
                row = {"pos": start + j, "chunk_id": d.id or md.get("chunk_id", ""), "doc_id": md.get("doc_id", ""),
                       "source": md.get("source", ""), "department": (md.get("department") or "").lower(),
                       "text": _fit(d.page_content), "tokens": tokens or "t", "vector": v.tolist(), "meta": md}
                if analyzer == "jieba":
                    row["lex"] = _fit(lexical.lexical_text(title, md, d.page_content).lower())
                rows.append(row)
            c.insert(name, rows)
        return ({"analyzer": analyzer, "chunks": n, "terms": {t: [k, len(users[t])] for t, k in df.items()}},
                columns.to_json())

    def _prune(self, c: Any, keep: set[str | None]) -> None:
        for name in c.list_collections():
            if name.startswith(self.prefix) and name[len(self.prefix):] not in keep:
                c.drop_collection(name)
        kept = ", ".join(_q(v) for v in keep if v)
        c.delete(META, filter=f"kb == {_q(self.name)} and version not in [{kept}]")


class _Held:
    """The writer's lock, released whole when its `with` block ends (not left to garbage collection)."""

    def __init__(self, lock: Any) -> None:
        self.lock = lock
        self.session: Any = None  # the PostgreSQL advisory lock, when app state is there

    def __enter__(self) -> Any:
        return self.lock

    def __exit__(self, *exc: object) -> None:
        self.release()

    def release(self) -> None:
        try:
            if self.session is not None:
                self.session.release()
                self.session = None
        finally:
            self.lock.release(force=True)


def _lex_key(title: str, md: dict[str, Any], text: str) -> str:
    return hashlib.blake2b(f"{lexical.TOKENIZER_VERSION}\0{lexical.lexical_text(title, md, text)}".encode(),
                           digest_size=12).hexdigest()


def _fit(text: str) -> str:
    """A text cut to what a VARCHAR holds (bytes, not characters)."""
    raw = text.encode("utf-8")
    return text if len(raw) <= _VARCHAR else raw[:_VARCHAR].decode("utf-8", errors="ignore")


def list_milvus_knowledge_bases(settings: Settings) -> list[str]:
    kb = MilvusKnowledgeBase(settings, settings.default_kb)
    with kb._milvus() as c:
        kb._ensure_meta(c)
        rows = c.query(META, filter='kind == "manifest" and part == 0', output_fields=["kb"], limit=_LIMIT)
    return sorted(n for n in {r["kb"] for r in rows} if MilvusKnowledgeBase(settings, n).exists())


class Columns:
    """Per chunk, in index order: document code (into `doc_ids`), department code (into `departments`, lowercased,
    "" untagged) and page (-1: none); each document's source. Written with a version (a meta blob) so a reader
    loads them in one read, not row by row."""

    def __init__(self) -> None:
        self.doc_ids: list[str] = []
        self.sources: list[str] = []
        self.departments: list[str] = []
        self._docs: dict[str, int] = {}
        self._depts: dict[str, int] = {}
        self._rows: list[tuple[int, int, int]] = []

    def add(self, doc_id: str, source: str, department: str | None, page: int | None) -> None:
        if doc_id not in self._docs:
            self._docs[doc_id] = len(self.doc_ids)
            self.doc_ids.append(doc_id)
            self.sources.append(source)
        dept = (department or "").lower()
        if dept not in self._depts:
            self._depts[dept] = len(self.departments)
            self.departments.append(dept)
        self._rows.append((self._docs[doc_id], self._depts[dept], -1 if page is None else int(page)))

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        table = np.asarray(self._rows, dtype=np.int32).reshape(len(self._rows), 3)
        return table[:, 0].copy(), table[:, 1].copy(), table[:, 2].copy()

    def to_json(self) -> dict[str, Any]:
        return {"doc_ids": self.doc_ids, "sources": self.sources, "departments": self.departments,
                **{k: base64.b64encode(a.astype("<i4").tobytes()).decode("ascii")
                   for k, a in zip(("doc_code", "dept_code", "page"), self.arrays(), strict=True)}}


class MilvusIndex:
    """One committed version for readers, at a cost in memory that stays small per chunk: each chunk's document,
    department and page as integer columns (what access masks and page grouping need) and the version's term
    statistics as sorted arrays. Texts and metadata are fetched by position for the chunks a query returns (a
    bounded cache keeps recent ones); dense and BM25 searches run in Milvus with the access filter inside the
    search (k allowed hits whenever k exist)."""

    def __init__(self, kb: MilvusKnowledgeBase, version: str, cache_rows: int = 10_000) -> None:
        self.kb = kb
        self.name = kb.collection(version)
        self._cache: OrderedDict[int, tuple[str, str, dict[str, Any], np.ndarray]] = OrderedDict()
        self._cache_rows = cache_rows
        self._lock = threading.Lock()
        self._columns(version)
        with kb._milvus() as c:
            stats = kb._read_blob(c, version, "terms") or {}
        self.analyzer = stats.get("analyzer", "tokens")
        self.chunks = int(stats.get("chunks", self.n))
        terms: dict[str, list[int]] = stats.get("terms", {})
        keys = np.fromiter((int(t[1:], 16) for t in terms), dtype=np.uint64, count=len(terms))
        order = np.argsort(keys)
        self._term_keys = keys[order]
        self._term_stats = np.asarray(list(terms.values()), dtype=np.int64).reshape(len(terms), 2)[order]

    def _columns(self, version: str) -> None:
        """The version's `Columns`: its blob, or (a version written without one) read from its rows."""
        with self.kb._milvus() as c:
            c.load_collection(self.name)
            blob = self.kb._read_blob(c, version, "columns")
            if blob is None:
                columns = Columns()
                done = 0
                # pages by position: `pos` is 0..n-1 without gaps, so the first empty page is the end
                while batch := c.query(self.name, filter=f"pos >= {done} and pos < {done + _BATCH}",
                                       output_fields=["pos", "doc_id", "source", "department", "meta"], limit=_BATCH):
                    for r in sorted(batch, key=lambda r: r["pos"]):
                        columns.add(r["doc_id"], r["source"], r["department"], r["meta"].get("page"))
                    done += len(batch)
                blob = columns.to_json()
        self.doc_ids, self.sources, self.departments = blob["doc_ids"], blob["sources"], blob["departments"]
        self.doc_code, self.dept_code, self.page = (np.frombuffer(base64.b64decode(blob[k]), dtype="<i4")
                                                    .astype(np.int32) for k in ("doc_code", "dept_code", "page"))
        self.n = len(self.doc_code)

    def __len__(self) -> int:
        return self.n

    def mask(self, departments: Iterable[str | None] | None, sources: Iterable[str] | None) -> np.ndarray:
        """Chunks within the departments (None/"" = untagged) and of the documents named by source or id."""
        keep = np.ones(self.n, dtype=bool)
        if departments is not None:
            allowed = {(d or "").lower() for d in departments}
            keep &= np.isin(self.dept_code, [i for i, d in enumerate(self.departments) if d in allowed])
        if sources is not None:
            wanted = set(sources)
            keep &= np.isin(self.doc_code, [i for i, (d, s) in enumerate(zip(self.doc_ids, self.sources,
                                                                             strict=True))
                                            if d in wanted or s in wanted])
        return keep

    def rows(self, positions: Iterable[int]) -> dict[int, tuple[str, str, dict[str, Any]]]:
        """(chunk id, text, metadata) of these chunks."""
        return {i: r[:3] for i, r in self._fetch(positions).items()}

    def _fetch(self, positions: Iterable[int]) -> dict[int, tuple[str, str, dict[str, Any], np.ndarray]]:
        """(chunk id, text, metadata, vector) of these chunks, from Milvus (a lookup by primary key, no search)
        unless recently fetched."""
        wanted = list(dict.fromkeys(int(i) for i in positions))
        out: dict[int, tuple[str, str, dict[str, Any], np.ndarray]] = {}
        with self._lock:
            for i in wanted:
                if i in self._cache:
                    out[i] = self._cache[i]
                    self._cache.move_to_end(i)
        missing = [i for i in wanted if i not in out]
        if missing:
            with self.kb._milvus() as c:
                for s in range(0, len(missing), _LIMIT):
                    part = missing[s:s + _LIMIT]
                    for r in c.query(self.name, filter=f"pos in {part}", limit=len(part),
                                     output_fields=["pos", "chunk_id", "text", "meta", "vector"]):
                        out[int(r["pos"])] = (r["chunk_id"], r["text"], r["meta"],
                                              np.asarray(r["vector"], dtype=np.float32))
            with self._lock:
                for i in missing:
                    if i in out:
                        self._cache[i] = out[i]
                while len(self._cache) > self._cache_rows:
                    self._cache.popitem(last=False)
        return out

    def texts_of(self, chunk_ids: list[str]) -> dict[str, str]:
        """The text each of these chunks holds in this version (absent: not in it)."""
        out: dict[str, str] = {}
        with self.kb._milvus() as c:
            for s in range(0, len(chunk_ids), _LIMIT):
                part = chunk_ids[s:s + _LIMIT]
                for r in c.query(self.name, filter=f"chunk_id in [{', '.join(_q(i) for i in part)}]",
                                 output_fields=["chunk_id", "text"], limit=len(part)):
                    out[r["chunk_id"]] = r["text"]
        return out

    def term(self, token: str) -> tuple[int, int] | None:
        """(chunks using the token, documents using it), None when no chunk does."""
        key = np.uint64(int(term_key(token)[1:], 16))
        i = int(np.searchsorted(self._term_keys, key))
        if i < len(self._term_keys) and self._term_keys[i] == key:
            return int(self._term_stats[i, 0]), int(self._term_stats[i, 1])
        return None

    def dense(self, vec: np.ndarray, n: int, expr: str = "") -> list[tuple[int, float]]:
        with self.kb._milvus() as c:
            res = c.search(self.name, data=[np.asarray(vec, dtype=np.float32).ravel().tolist()], anns_field="vector",
                           limit=min(n, _LIMIT), filter=expr, output_fields=["pos"],
                           search_params={"metric_type": "IP"})
        return [(int(h["pos"]), float(h["distance"])) for h in res[0]]

    def dense_of(self, vec: np.ndarray, positions: list[int]) -> dict[int, float]:
        """Exact cosine of each of these chunks: their stored unit vectors (fetched with their rows) · the query's."""
        q = np.asarray(vec, dtype=np.float32).ravel()
        return {i: float(r[3] @ q) for i, r in self._fetch(positions).items()}

    def query_text(self, query: str) -> str:
        if self.analyzer == "jieba":
            return query.lower()
        return " ".join(term_key(t) for t in lexical.bm25_tokens(query))

    def bm25(self, text: str, n: int, expr: str = "") -> list[tuple[int, float]]:
        if not text.strip() or n <= 0:
            return []
        with self.kb._milvus() as c:
            res = c.search(self.name, data=[text], anns_field="sparse", limit=min(n, _LIMIT), filter=expr,
                           output_fields=["pos"], search_params={"metric_type": "BM25"})
        # Milvus Lite reports BM25 as a negative distance; the score is its magnitude
        return [(int(h["pos"]), abs(float(h["distance"]))) for h in res[0]]

    def bm25_of(self, text: str, positions: list[int]) -> dict[int, float]:
        out: dict[int, float] = {}
        for i in range(0, len(positions), _LIMIT):
            part = positions[i:i + _LIMIT]
            out.update(self.bm25(text, len(part), f"pos in {part}"))
        return out

    def hits(self, vec: np.ndarray, k: int, expr: str = "") -> list[tuple[Document, float]]:
        with self.kb._milvus() as c:
            res = c.search(self.name, data=[np.asarray(vec, dtype=np.float32).ravel().tolist()], anns_field="vector",
                           limit=min(k, _LIMIT), filter=expr, output_fields=["chunk_id", "text", "meta"],
                           search_params={"metric_type": "IP"})
        return [(Document(page_content=h["entity"]["text"], metadata=h["entity"]["meta"], id=h["entity"]["chunk_id"]),
                 float(h["distance"])) for h in res[0]]


def migrate(settings: Settings, kb_name: str | None = None) -> dict[str, Any]:
    """Copy a FAISS knowledge base into Milvus as a new version (vectors reused, nothing re-embedded)."""
    source = KnowledgeBase(settings.model_copy(update={"vector_store": "faiss"}), kb_name)
    if not source.exists():
        raise AssistantError(f"no FAISS knowledge base '{source.name}' under {settings.kb_root} to migrate")
    target = MilvusKnowledgeBase(settings.model_copy(update={"vector_store": "milvus"}), source.name)
    snapshot = source.load()
    with target.acquire():
        version = target.commit(Snapshot(manifest=snapshot.manifest, store=snapshot.store),
                                tokens=lexical.load_terms(source.version_dir()))
    return {"kb": source.name, "version": version, "chunks": len(snapshot.store or []),
            "documents": len(snapshot.documents), "uri": settings.milvus_target}
