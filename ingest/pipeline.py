"""Ingestion as library functions: add, remove, rebuild, search, list, stats. The CLI is a thin shell."""

from __future__ import annotations

import hashlib
import os
import queue
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from core import access
from core.errors import AssistantError, FileRejected, NotFound
from core.files import sha256_file
from core.settings import Settings
from ingest.chunking import CHUNKER_VERSION, Chunk, chunk_document
from ingest.embeddings import TokenCountingEmbeddings, canonical_name, load_embeddings
from ingest.loaders import LoadedDocument, check_file
from ingest.parse_worker import parse_file
from ingest.store import KnowledgeBase, SearchHit, Snapshot, hits_from, new_store, now_iso, require_kb


@dataclass
class FileResult:
    path: Path
    status: str  # added | updated | unchanged | duplicate | failed
    doc_id: str | None = None
    pages: int = 0
    chunks: int = 0
    tokens: int = 0
    seconds: float = 0.0
    reason: str | None = None
    warnings: list[str] = field(default_factory=list)


@dataclass
class IngestReport:
    kb: str
    results: list[FileResult] = field(default_factory=list)
    version: str | None = None
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)
    # where the time went: parse, chunk, embed, write (seconds; parse overlaps embed in add_paths)
    timings: dict[str, float] = field(default_factory=dict)
    reused_vectors: int = 0  # chunks whose embedding text was unchanged: vector kept, not re-embedded

    @property
    def failed(self) -> list[FileResult]:
        return [r for r in self.results if r.status == "failed"]

    def count(self, status: str) -> int:
        return sum(1 for r in self.results if r.status == status)

    @property
    def pages(self) -> int:
        return sum(r.pages for r in self.results)

    @property
    def chunks(self) -> int:
        return sum(r.chunks for r in self.results)


ProgressFn = Callable[[FileResult], None]
# fine-grained progress inside a file: ("page", 1) per parsed PDF page, ("chunks", n) per embedded batch
StepFn = Callable[[str, int], None]


def doc_id_for(path: Path) -> str:
    return hashlib.sha1(str(path.resolve()).encode("utf-8")).hexdigest()[:12]


def expand_paths(paths: Iterable[Path]) -> Iterator[tuple[Path, str | None]]:
    """Files to ingest, recursing into folders; yields (path, reason-it-cannot-be-read or None)."""
    for raw in paths:
        p = Path(raw).expanduser()
        if not p.exists():
            yield p, "no such file or folder"
        elif p.is_dir():
            for root, dirs, files in os.walk(p):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for name in sorted(files):
                    if not name.startswith((".", "~$")):  # hidden files, Office lock files
                        yield Path(root) / name, None
        else:
            yield p, None


def embedding_text(title: str, chunk: Chunk) -> str:
    """What is embedded: the chunk with its document and heading path, so that a clause body
    that never repeats its heading still matches questions about it. Table rows lose their cell
    pipes: each is a token the embedder pays for (8% of a filing's tokens) and carries no meaning
    (the stored text, BM25 and the model's prompt keep them)."""
    head = " | ".join(part for part in (title, chunk.clause) if part)
    body = _ROW.sub(_cells, chunk.text) if "|" in chunk.text else chunk.text
    return f"{head}\n{body}" if head else body


_ROW = re.compile(r"^[ \t]*\|(.*)\|[ \t]*$", re.MULTILINE)


def _cells(row: re.Match) -> str:
    return " ".join(cell.strip() for cell in row.group(1).split("|") if cell.strip())


def _title_of(path: Path) -> str:
    return path.stem.replace("_", " ").strip()


class Ingestor:
    """Holds the embedding model and chunker settings for one knowledge base write session."""

    def __init__(
        self, settings: Settings, embeddings: TokenCountingEmbeddings | None = None, on_step: StepFn | None = None
    ) -> None:
        self.settings = settings
        self.on_step = on_step
        self.embeddings = embeddings or load_embeddings(settings.embedding_model)
        self.timings: Counter[str] = Counter()
        # a model whose tokenizer may not be shared across threads (HF fast tokenizers raise "Already
        # borrowed") is used by one thread at a time; E5's C tokenizer is read-only and needs no lock
        shared = getattr(self.embeddings, "thread_safe", False)
        self._model_lock: AbstractContextManager = nullcontext() if shared else threading.Lock()
        self.reused = 0
        self.reuse_from: Snapshot | None = None  # an older version of the same model: vectors reusable (rebuild)
        self.precomputed: dict[str, list[float]] = {}  # vectors ingest workers embedded, by embedding-text hash
        if settings.chunk_size > self.embeddings.max_tokens - 32:
            raise AssistantError(
                f"chunk_size {settings.chunk_size} exceeds what '{self.embeddings.name}' can embed "
                f"({self.embeddings.max_tokens} tokens incl. the heading); lower ASSISTANT_CHUNK_SIZE."
            )

    @property
    def chunker_settings(self) -> dict[str, Any]:
        s = self.settings
        return {
            "version": CHUNKER_VERSION,
            "chunk_size": s.chunk_size,
            "chunk_overlap": s.chunk_overlap,
            "min_chunk_tokens": s.min_chunk_tokens,
            "unit": f"tokens of {self.embeddings.name}",
        }

    def chunk(self, doc: LoadedDocument) -> list[Chunk]:
        s = self.settings
        with self._model_lock:  # chunking counts tokens with the model's tokenizer, maybe on the parse thread
            return chunk_document(doc, self.embeddings.count_tokens, s.chunk_size, s.chunk_overlap,
                                  s.min_chunk_tokens)

    def embed(self, texts: list[str], tokens: list[int] | None = None) -> list[list[float]]:
        """Embed in batches filled up to the engine's token budget (or `embed_batch_size` texts)."""
        t0 = time.perf_counter()
        vecs: list[list[float]] = []
        cap, budget = self.settings.embed_batch_size, self.settings.embed_batch_tokens
        sizes = tokens if tokens is not None else [0] * len(texts)
        start = 0
        while start < len(texts):
            end, used = start, 0
            while end < len(texts) and end - start < cap and (end == start or used + sizes[end] <= budget):
                used += sizes[end]
                end += 1
            with self._model_lock:
                vecs.extend(self.embeddings.embed_documents(texts[start:end]))
            if self.on_step:
                self.on_step("chunks", end - start)
            start = end
        self.timings["embed"] += time.perf_counter() - t0
        return vecs

    def prepare(self, snapshot: Snapshot, kb: KnowledgeBase) -> list[str]:
        """Check the snapshot fits these settings; return warnings for the user."""
        emb = self.embeddings
        kb.check_embedding(snapshot.manifest, emb.name, emb.dim)
        if snapshot.manifest.get("embedding") is None:
            snapshot.manifest["embedding"] = {"name": emb.name, "dim": emb.dim}
        warnings = []
        previous = snapshot.manifest.get("chunker")
        if previous and snapshot.documents and previous != self.chunker_settings:
            changed = ", ".join(
                f"{k} {previous.get(k)} -> {v}" for k, v in self.chunker_settings.items() if previous.get(k) != v
            )
            warnings.append(
                f"chunk settings changed ({changed}): new and changed files use the new settings, the others "
                f"keep theirs; run `ingest rebuild --kb {kb.name}` to re-chunk everything alike"
            )
        snapshot.manifest["chunker"] = self.chunker_settings
        if snapshot.store is None:
            snapshot.store = new_store(emb, emb.dim)
        return warnings

    def ingest_file(self, snapshot: Snapshot, path: Path, department: str | None, kb_name: str) -> FileResult:
        """check -> parse -> embed and store, in one go (add_paths runs the parse of the next file meanwhile)."""
        work = self.check(snapshot, path, department, {})
        if isinstance(work, FileResult):
            return work
        return self.finish(snapshot, work, self.parse(work, self.on_step), department, kb_name)

    def check(self, snapshot: Snapshot, path: Path, department: str | None,
              pending: dict[str, Path]) -> FileResult | _Work:
        """The cheap part, in order, on the caller's thread: hash, unchanged, retag or duplicate; else the
        work to do. `pending` maps digests of files accepted but not yet stored in this run to their path."""
        t0 = time.perf_counter()
        path = path.resolve()
        doc_id = doc_id_for(path)
        result = FileResult(path=path, status="added", doc_id=doc_id)
        docs = snapshot.documents
        try:
            check_file(path)  # a name fit to cite and a supported type, before hashing
            digest = sha256_file(path)
        except FileRejected as exc:
            return _failed(result, exc.reason, t0)
        except OSError as exc:
            return _failed(result, f"cannot read the file ({exc.strerror or exc})", t0)
        old = docs.get(doc_id)
        if old is not None and old["sha256"] == digest:
            result.pages, result.chunks = old["pages"], old["chunks"]
            if department is None or department == old.get("department"):
                result.status = "unchanged"
            else:  # only the access tag changed: retag in place, no re-embedding
                self._retag(snapshot, old, department)
                result.status = "updated"
            result.seconds = time.perf_counter() - t0
            return result
        if old is None:
            twin = next((d["path"] for d in docs.values() if d["sha256"] == digest), None) or pending.get(digest)
            if twin is not None:
                result.status = "duplicate"
                result.reason = f"same content as {twin} (already in the knowledge base)"
                result.seconds = time.perf_counter() - t0
                return result
        pending[digest] = path
        return _Work(result, path, doc_id, digest, t0)

    def parse(self, work: _Work, on_step: StepFn | None) -> Parsed:
        """Parse and chunk one file: pure work on the file alone, safe on a worker thread."""
        try:
            t0 = time.perf_counter()
            on_page = (lambda: on_step("page", 1)) if on_step else None
            loaded = parse_file(self.settings, work.path, on_page=on_page)  # a worker process, under a time limit
            t1 = time.perf_counter()
            chunks = self.chunk(loaded)
            self.timings["parse"] += t1 - t0
            self.timings["chunk"] += time.perf_counter() - t1
            return loaded, chunks
        except FileRejected as exc:
            return exc

    def is_new(self, snapshot: Snapshot, work: _Work) -> bool:
        """No earlier version of this document whose vectors could be reused."""
        reuse = self.reuse_from
        return work.doc_id not in snapshot.documents and (reuse is None or work.doc_id not in reuse.documents)

    def finish_many(self, snapshot: Snapshot, items: list[tuple[_Work, Parsed]], department: str | None,
                    kb_name: str) -> list[FileResult]:
        """Finish several new files with one embedding pass over all their chunks: small files (a folder
        of short notes) then fill the engine's batches instead of each paying a call of its own."""
        embedded: dict[str, list[float]] = {}
        if len(items) > 1:
            texts: dict[str, tuple[str, int]] = {}
            for work, parsed in items:
                if isinstance(parsed, tuple):
                    title = _title_of(work.path)
                    for c in parsed[1]:
                        text = embedding_text(title, c)
                        if _embed_hash(text) not in self.precomputed:
                            texts.setdefault(_embed_hash(text), (text, c.tokens))
            vecs = self.embed([t for t, _ in texts.values()], [n for _, n in texts.values()])
            embedded = dict(zip(texts, vecs, strict=True))
        return [self.finish(snapshot, work, parsed, department, kb_name, embedded) for work, parsed in items]

    def finish(self, snapshot: Snapshot, work: _Work, parsed: Parsed, department: str | None, kb_name: str,
               embedded: dict[str, list[float]] | None = None) -> FileResult:
        """Embed (reusing the vectors of chunks whose embedding text did not change) and store one file.
        `embedded`: vectors already computed for this file's texts, by text hash."""
        result, path, doc_id, digest, t0 = work.result, work.path, work.doc_id, work.digest, work.t0
        docs = snapshot.documents
        old = docs.get(doc_id)
        if old is not None and old["sha256"] == digest:  # the same file named twice in one run
            result.status, result.pages, result.chunks = "unchanged", old["pages"], old["chunks"]
            return result
        if isinstance(parsed, FileRejected):
            kept = "; the previously ingested version stays in the knowledge base" if old is not None else ""
            return _failed(result, parsed.reason + kept, t0)
        loaded, chunks = parsed
        if not chunks:
            return _failed(result, "no text left after chunking", t0)
        title = _title_of(path)
        texts = [embedding_text(title, c) for c in chunks]
        hashes = [_embed_hash(t) for t in texts]
        store = snapshot.store
        assert store is not None
        prior = [(store, old["chunk_ids"])] if old else []
        reuse = self.reuse_from
        if reuse is not None and reuse.store is not None and doc_id in reuse.documents:
            prior.append((reuse.store, reuse.documents[doc_id]["chunk_ids"]))
        known = self._known_vectors(prior)
        self.reused += sum(h in known for h in hashes)
        known.update(embedded or {})
        known.update(self.precomputed)
        todo = [i for i, h in enumerate(hashes) if h not in known]
        fresh = self.embed([texts[i] for i in todo], [chunks[i].tokens for i in todo]) if todo else []
        by_index = dict(zip(todo, fresh, strict=True))
        vectors = [by_index[i] if i in by_index else known[hashes[i]] for i in range(len(chunks))]
        dept = department if department is not None else (old or {}).get("department")
        ids = [f"{doc_id}:{digest[:8]}:{i:04d}" for i in range(len(chunks))]
        metadatas = [
            {
                "chunk_id": cid,
                "doc_id": doc_id,
                "kb": kb_name,
                "source": path.name,
                "path": str(path),
                "format": loaded.format,
                "page": c.page,
                "page_end": c.page_end,
                "clause": c.clause,
                "clauses": c.clauses,
                "department": dept,
                "chunk_index": i,
                "tokens": c.tokens,
                "sha256": digest,
                **loaded.page_meta(c.page),  # sheet/slide citation label, OCR confidence
                "embed_hash": h,
            }
            for i, (cid, c, h) in enumerate(zip(ids, chunks, hashes, strict=True))
        ]
        t_write = time.perf_counter()
        if old is not None:
            store.delete(old["chunk_ids"])
            result.status = "updated"
        store.add_embeddings(list(zip([c.text for c in chunks], vectors, strict=True)), metadatas=metadatas, ids=ids)
        self.timings["write"] += time.perf_counter() - t_write
        docs[doc_id] = {
            "doc_id": doc_id,
            "source": path.name,
            "path": str(path),
            "sha256": digest,
            "size": path.stat().st_size,
            "format": loaded.format,
            "title": loaded.title,
            "pages": sum(1 for p in loaded.pages if p.page is not None),  # PDF pages, sheets, slides
            "chunks": len(chunks),
            "tokens": sum(c.tokens for c in chunks),
            "chunk_ids": ids,
            "department": dept,
            "ingested_at": now_iso(),
            "chunker": self.chunker_settings,
            "warnings": loaded.warnings,
        }
        result.pages = docs[doc_id]["pages"]
        result.chunks = len(chunks)
        result.tokens = docs[doc_id]["tokens"]
        result.warnings = loaded.warnings
        result.seconds = time.perf_counter() - t0
        return result

    @staticmethod
    def _known_vectors(prior: list[tuple[Any, list[str]]]) -> dict[str, Any]:
        """Vectors of a document's previous chunks, keyed by the hash of their embedding text."""
        known: dict[str, Any] = {}
        for source, chunk_ids in prior:
            wanted = set(chunk_ids)
            positions = [(i, d) for i, d in enumerate(source.documents()) if d.id in wanted
                         and d.metadata.get("embed_hash")]
            if positions:
                vecs = source.index.reconstruct_batch(np.asarray([i for i, _ in positions], dtype=np.int64))
                for (_, d), v in zip(positions, vecs, strict=True):
                    known.setdefault(d.metadata["embed_hash"], v.tolist())
        return known

    @staticmethod
    def _retag(snapshot: Snapshot, doc: dict[str, Any], department: str) -> None:
        assert snapshot.store is not None
        snapshot.store.update_metadata(doc["chunk_ids"], department=department)
        doc["department"] = department


Parsed = tuple[LoadedDocument, list[Chunk]] | FileRejected


@dataclass
class _Work:
    """A file that passed `check` and must be parsed, embedded and stored."""

    result: FileResult
    path: Path
    doc_id: str
    digest: str
    t0: float


def _embed_hash(text: str) -> str:
    return hashlib.blake2b(text.encode("utf-8"), digest_size=10).hexdigest()


def _failed(result: FileResult, reason: str, t0: float) -> FileResult:
    result.status = "failed"
    result.reason = reason
    result.seconds = time.perf_counter() - t0
    return result


def add_paths(
    settings: Settings,
    paths: Iterable[Path],
    kb_name: str | None = None,
    department: str | None = None,
    on_file: ProgressFn | None = None,
    on_start: Callable[[int], None] | None = None,
    on_step: StepFn | None = None,
    workers: int = 1,
) -> IngestReport:
    """Ingest files and folders into a knowledge base. Bad files are reported, never fatal.

    `workers` > 1: new and changed files are parsed and embedded by that many worker processes first
    (`ingest.workers`); this process stores them and commits, as with one."""
    department = access.tag(department)  # access tags are case-insensitive: "HR" is "hr"
    t0 = time.perf_counter()
    kb = KnowledgeBase(settings, kb_name)
    ingestor = Ingestor(settings, on_step=on_step)
    report = IngestReport(kb=kb.name)
    candidates = list(expand_paths(paths))
    if on_start:
        on_start(len(candidates))
    events: queue.SimpleQueue[tuple[str, int]] = queue.SimpleQueue()

    def drain() -> None:  # progress callbacks run on this thread (UIs need that), fed by the parse worker
        while on_step is not None and not events.empty():
            on_step(*events.get())

    worker_step = (lambda kind, n: events.put((kind, n))) if on_step else None
    with kb.acquire(), ThreadPoolExecutor(1, thread_name_prefix="ingest-parse") as pool:
        snapshot = kb.load(ingestor.embeddings)
        report.warnings = ingestor.prepare(snapshot, kb)
        parsed_ahead: dict[Path, Parsed] = {}
        if workers > 1:
            from ingest.workers import embed_in_workers

            todo = [w.path for p, problem in candidates if problem is None
                    for w in [ingestor.check(snapshot, p, department, {})] if isinstance(w, _Work)]
            for path, (parsed, vectors) in embed_in_workers(settings, todo, workers).items():
                parsed_ahead[path] = parsed
                ingestor.precomputed.update(vectors)
        dirty = 0
        pending: dict[str, Path] = {}
        # each file is checked in order; parsing runs on a worker thread up to LOOKAHEAD files ahead of
        # the embedder (the embedding engine releases the GIL), so parse and embed overlap
        planned: list[FileResult | tuple[_Work, Future]] = []
        it = iter(candidates)

        def plan_next() -> bool:
            try:
                path, problem = next(it)
            except StopIteration:
                return False
            if problem is not None:
                planned.append(FileResult(path=path, status="failed", reason=problem))
            else:
                work = ingestor.check(snapshot, path, department, pending)
                if isinstance(work, FileResult):
                    planned.append(work)
                elif work.path in parsed_ahead:  # a worker parsed and embedded it
                    done: Future = Future()
                    done.set_result(parsed_ahead.pop(work.path))
                    planned.append((work, done))
                else:
                    planned.append((work, pool.submit(ingestor.parse, work, worker_step)))
            return True

        while True:
            while sum(isinstance(p, tuple) for p in planned) < LOOKAHEAD and plan_next():
                pass
            if not planned:
                break
            item = planned.pop(0)
            if isinstance(item, FileResult):
                results = [item]
            else:
                group = [item]
                _wait(item[1], drain)
                if ingestor.is_new(snapshot, item[0]):
                    # new files already parsed behind this one join its embedding pass, up to a batch's worth
                    tokens = _tokens(item[1].result())
                    while (tokens < settings.embed_batch_tokens and planned and isinstance(planned[0], tuple)
                           and ingestor.is_new(snapshot, planned[0][0])):
                        _wait(planned[0][1], drain)
                        group.append(planned.pop(0))
                        tokens += _tokens(group[-1][1].result())
                        plan_next()  # keep the worker busy while the group is gathered
                drain()
                results = ingestor.finish_many(snapshot, [(w, f.result()) for w, f in group], department, kb.name)
                for work, _ in group:
                    pending.pop(work.digest, None)
            for result in results:
                report.results.append(result)
                if on_file:
                    on_file(result)
                if result.status in ("added", "updated"):
                    dirty += 1
            if dirty >= settings.commit_every:  # long runs keep what they have done so far
                report.version = _commit(kb, snapshot, ingestor)
                dirty = 0
        if dirty or not kb.exists():
            report.version = _commit(kb, snapshot, ingestor)
        report.version = report.version or kb.current_version()
    drain()
    report.seconds = time.perf_counter() - t0
    report.timings = {k: round(v, 2) for k, v in ingestor.timings.items()}
    report.reused_vectors = ingestor.reused
    return report


LOOKAHEAD = 2  # files parsed ahead of the embedder (bounded: parsed documents wait in memory)


def _wait(future: Future, drain: Callable[[], None]) -> None:
    while not future.done():  # progress events from the parse worker are passed on meanwhile
        drain()
        time.sleep(0.02)


def _tokens(parsed: Parsed) -> int:
    return sum(c.tokens for c in parsed[1]) if isinstance(parsed, tuple) else 0


def _commit(kb: KnowledgeBase, snapshot: Snapshot, ingestor: Ingestor) -> str:
    t0 = time.perf_counter()
    version = kb.commit(snapshot)
    ingestor.timings["write"] += time.perf_counter() - t0
    return version


def _resolve_doc(manifest: dict[str, Any], ref: str) -> dict[str, Any]:
    docs = manifest["documents"]
    if ref in docs:
        return docs[ref]
    resolved = str(Path(ref).expanduser().resolve())
    matches = [d for d in docs.values() if d["source"] == ref or d["path"] == resolved]
    if not matches:
        raise NotFound(f"no document '{ref}' in this knowledge base; `ingest list` shows what is there")
    if len(matches) > 1:
        listing = ", ".join(f"{d['doc_id']} ({d['path']})" for d in matches)
        raise AssistantError(f"'{ref}' matches several documents: {listing}; pass the doc id or full path")
    return matches[0]


def remove_document(settings: Settings, ref: str, kb_name: str | None = None) -> dict[str, Any]:
    kb = KnowledgeBase(settings, kb_name)
    require_kb(kb)
    with kb.acquire():
        snapshot = kb.load()
        doc = _resolve_doc(snapshot.manifest, ref)
        if snapshot.store is not None and doc["chunk_ids"]:
            snapshot.store.delete(doc["chunk_ids"])
        del snapshot.documents[doc["doc_id"]]
        kb.commit(snapshot)
    return doc


def rebuild(
    settings: Settings,
    kb_name: str | None = None,
    on_file: ProgressFn | None = None,
    on_start: Callable[[int], None] | None = None,
    on_step: StepFn | None = None,
) -> IngestReport:
    """Re-chunk and re-embed every document with the current settings (e.g. a new embedding model).

    Documents whose source file has gone are re-embedded from their stored chunks. The new index
    replaces the old one in one atomic commit, so an interrupted rebuild changes nothing.
    """
    t0 = time.perf_counter()
    kb = KnowledgeBase(settings, kb_name)
    require_kb(kb)
    ingestor = Ingestor(settings, on_step=on_step)
    report = IngestReport(kb=kb.name)
    with kb.acquire():
        try:
            old = kb.load()
        except AssistantError:  # a damaged index: rebuild from the source files the manifest lists
            old = Snapshot(manifest=kb.read_manifest())
        docs = sorted(old.documents.values(), key=lambda d: d["path"])
        if on_start:
            on_start(len(docs))
        fresh = Snapshot(manifest=kb.empty_manifest())
        fresh.manifest["created_at"] = old.manifest.get("created_at", now_iso())
        ingestor.prepare(fresh, kb)
        if (old.manifest.get("embedding") or {}).get("name") == ingestor.embeddings.name:
            ingestor.reuse_from = old  # same model: chunks whose embedding text is unchanged keep their vector
        for doc in docs:
            path = Path(doc["path"])
            if path.exists():
                result = ingestor.ingest_file(fresh, path, doc.get("department"), kb.name)
            else:
                result = _reembed_stored(ingestor, old, fresh, doc)
            report.results.append(result)
            if on_file:
                on_file(result)
        report.version = _commit(kb, fresh, ingestor)
    report.seconds = time.perf_counter() - t0
    report.timings = {k: round(v, 2) for k, v in ingestor.timings.items()}
    report.reused_vectors = ingestor.reused
    return report


def _reembed_stored(ingestor: Ingestor, old: Snapshot, fresh: Snapshot, doc: dict[str, Any]) -> FileResult:
    t0 = time.perf_counter()
    result = FileResult(path=Path(doc["path"]), status="updated", doc_id=doc["doc_id"])
    if old.store is None:
        return _failed(result, "source file is gone and no stored chunks remain", t0)
    stored = old.store.get_by_ids(doc["chunk_ids"])
    title = _title_of(Path(doc["path"]))
    texts = [embedding_text(title, Chunk(d.page_content, None, None, d.metadata.get("clause", ""), 0)) for d in stored]
    vectors = ingestor.embed(texts)
    assert fresh.store is not None
    fresh.store.add_embeddings(
        list(zip([d.page_content for d in stored], vectors, strict=True)),
        metadatas=[d.metadata for d in stored],
        ids=[d.metadata["chunk_id"] for d in stored],
    )
    fresh.documents[doc["doc_id"]] = dict(doc, warnings=doc.get("warnings", []) + ["source file missing at rebuild"])
    result.chunks = len(stored)
    result.warnings = ["source file missing: re-embedded from stored chunks"]
    result.seconds = time.perf_counter() - t0
    return result


class Searcher:
    """Loads a knowledge base once and answers many queries (the chain and benchmarks reuse it)."""

    def __init__(self, settings: Settings, kb_name: str | None = None) -> None:
        self.kb = KnowledgeBase(settings, kb_name)
        require_kb(self.kb)
        self.embeddings = load_embeddings(settings.embedding_model)
        # Milvus: the version is searched where it lives (no vectors in memory); FAISS: loaded whole
        self.index = None
        if settings.vector_store == "milvus":
            version = self.kb.current_version()
            self.snapshot = Snapshot(manifest=self.kb.read_manifest(version), version=version)
            self.index = self.kb.open_index(version) if version and self.snapshot.manifest.get("embedding") else None
        else:
            self.snapshot = self.kb.load(self.embeddings)
        self.kb.check_embedding(self.snapshot.manifest, self.embeddings.name, self.embeddings.dim)

    def search(
        self,
        query: str,
        k: int = 5,
        departments: Iterable[str | None] | None = None,
        sources: Iterable[str] | None = None,
    ) -> list[SearchHit]:
        store = self.snapshot.store
        if (store is None and self.index is None) or not query.strip():
            return []
        allowed = {(d or "").strip().lower() or None for d in departments} if departments is not None else None
        wanted = set(sources) if sources is not None else None

        def keep(md: dict[str, Any]) -> bool:
            if allowed is not None and ((md.get("department") or "").lower() or None) not in allowed:
                return False
            return wanted is None or md.get("source") in wanted or md.get("doc_id") in wanted

        vec = self.embeddings.embed_query(query)
        if self.index is not None:  # the same filter, as a scalar filter inside Milvus's search
            from ingest.milvus_store import filter_expr

            return hits_from(self.index.hits(np.asarray(vec), k, filter_expr(
                allowed if departments is not None else None, wanted)))
        filt = keep if (allowed is not None or wanted is not None) else None
        return hits_from(store.similarity_search_with_score_by_vector(vec, k=k, filter=filt))


def search(
    settings: Settings,
    query: str,
    k: int = 5,
    kb_name: str | None = None,
    departments: Iterable[str | None] | None = None,
) -> list[SearchHit]:
    return Searcher(settings, kb_name).search(query, k=k, departments=departments)


def list_documents(settings: Settings, kb_name: str | None = None) -> list[dict[str, Any]]:
    kb = KnowledgeBase(settings, kb_name)
    require_kb(kb)
    docs = kb.read_manifest()["documents"].values()
    return sorted(({k: v for k, v in d.items() if k != "chunk_ids"} for d in docs), key=lambda d: d["source"])


def kb_stats(settings: Settings, kb_name: str | None = None) -> dict[str, Any]:
    kb = KnowledgeBase(settings, kb_name)
    require_kb(kb)
    manifest = kb.read_manifest()
    docs = list(manifest["documents"].values())
    version = kb.current_version()
    folder = kb.version_dir(version)
    size = sum(f.stat().st_size for f in folder.iterdir()) if folder is not None else 0
    return {
        "kb": kb.name,
        "path": str(kb.dir) if settings.vector_store == "faiss" else settings.milvus_target,
        "version": version,
        "embedding": manifest.get("embedding"),
        "configured_embedding": canonical_name(settings.embedding_model),
        "chunker": manifest.get("chunker"),
        "documents": len(docs),
        "pages": sum(d.get("pages", 0) for d in docs),
        "chunks": sum(d.get("chunks", 0) for d in docs),
        "tokens": sum(d.get("tokens", 0) for d in docs),
        "formats": dict(Counter(d["format"] for d in docs)),
        "departments": dict(Counter(d.get("department") or "(none)" for d in docs)),
        "index_bytes": size,
        "created_at": manifest.get("created_at"),
        "updated_at": manifest.get("updated_at"),
    }
