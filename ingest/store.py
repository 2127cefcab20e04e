"""A knowledge base on disk: the project's FAISS store, its BM25 index and a manifest, written atomically,
under a lock.

Layout of `<home>/kb/<name>/`:
    CURRENT                 name of the live version (replaced atomically with os.replace)
    versions/<id>/          index.faiss + docstore.json (ingest.vectorstore), bm25/ (ingest.lexical),
                            manifest.json
    .lock                   filelock held by writers

A commit writes a complete new version into a temporary folder, renames it into place, then swaps
CURRENT. A crash or kill -9 at any point leaves CURRENT pointing at the previous complete version;
leftover temporary folders are removed by the next writer. Readers never take the lock: versions are
immutable, and the previous one is kept so a reader that raced a commit can still finish.

A version written before this store (LangChain community FAISS: index.faiss + index.pkl) is read once by
`ingest.legacy` and committed in the new layout the first time it is opened.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout
from langchain_core.documents import Document

from core.clock import now_iso
from core.errors import AssistantError, EmbeddingMismatch, KnowledgeBaseBusy, NotFound
from core.files import atomic_write_text, fsync_dir
from core.settings import Settings
from ingest import lexical
from ingest.legacy import is_legacy, read_legacy
from ingest.vectorstore import INDEX_FILE, LocalVectorStore, StoreError

MANIFEST_VERSION = 1


@dataclass
class Snapshot:
    """One committed (or being-built) version: the manifest and the vector store."""

    manifest: dict[str, Any]
    store: LocalVectorStore | None = None
    version: str | None = None  # the version it was loaded from (None: built from scratch)

    @property
    def documents(self) -> dict[str, dict[str, Any]]:
        return self.manifest["documents"]


@dataclass
class SearchHit:
    source: str
    page: int | None
    clause: str
    text: str
    score: float
    chunk_id: str
    doc_id: str
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "page": self.page,
            "clause": self.clause or None,
            "text": self.text,
            "score": round(self.score, 6),
            "chunk_id": self.chunk_id,
            "doc_id": self.doc_id,
            "page_end": self.metadata.get("page_end"),
            "department": self.metadata.get("department"),
            "path": self.metadata.get("path"),
        }


class KnowledgeBase:
    """Storage of one named knowledge base. Ingestion logic lives in `ingest.pipeline`.

    With settings.vector_store 'milvus', `KnowledgeBase(settings, name)` is an `ingest.milvus_store`
    MilvusKnowledgeBase: the same interface, versions held by Milvus."""

    def __new__(cls, settings: Settings, name: str | None = None) -> KnowledgeBase:
        if cls is KnowledgeBase and settings.vector_store == "milvus":
            from ingest.milvus_store import MilvusKnowledgeBase

            return super().__new__(MilvusKnowledgeBase)
        return super().__new__(cls)

    def __init__(self, settings: Settings, name: str | None = None) -> None:
        self.settings = settings
        self.name = name or settings.default_kb
        if not self.name or "/" in self.name or self.name.startswith("."):
            raise AssistantError(f"invalid knowledge base name '{self.name}': use letters, digits, - or _")
        self.dir = settings.kb_dir(self.name)
        self.versions_dir = self.dir / "versions"
        self._current_file = self.dir / "CURRENT"

    # ---- reading ------------------------------------------------------------------------------
    def exists(self) -> bool:
        return self._current_file.exists()

    def current_version(self) -> str | None:
        try:
            return self._current_file.read_text(encoding="utf-8").strip() or None
        except FileNotFoundError:
            return None

    def read_manifest(self) -> dict[str, Any]:
        version = self.current_version()
        if version is None:
            return self.empty_manifest()
        path = self.versions_dir / version / "manifest.json"
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise AssistantError(
                f"knowledge base '{self.name}' is damaged: cannot read {path} ({exc}). "
                f"Run `ingest rebuild --kb {self.name}` or remove {self.dir}."
            ) from exc

    def empty_manifest(self) -> dict[str, Any]:
        return {
            "manifest_version": MANIFEST_VERSION,
            "kb": self.name,
            "embedding": None,
            "chunker": None,
            "documents": {},
            "created_at": now_iso(),
            "updated_at": now_iso(),
        }

    def version_dir(self, version: str | None = None) -> Path | None:
        version = version or self.current_version()
        return self.versions_dir / version if version else None

    def load(self, embeddings=None, migrate: bool = True) -> Snapshot:
        """The live version with its vector store (None when the KB holds no chunks yet).

        A version in the legacy layout is converted and, with `migrate`, committed in the new layout
        (when no writer holds the lock; otherwise the writer's own commit converts it)."""
        manifest = self.read_manifest()
        version = self.current_version()
        store = None
        if version is not None and manifest.get("embedding"):
            folder = self.versions_dir / version
            legacy = is_legacy(folder)
            if legacy or (folder / INDEX_FILE).exists():
                try:
                    store = read_legacy(folder) if legacy else LocalVectorStore.load(folder)
                except StoreError as exc:
                    raise AssistantError(
                        f"knowledge base '{self.name}' is damaged: cannot load the index in {folder} "
                        f"({exc}). Run `ingest rebuild --kb {self.name}`."
                    ) from exc
                store.embedding = embeddings
            if legacy and migrate:
                self._migrate(Snapshot(manifest=manifest, store=store, version=version))
        return Snapshot(manifest=manifest, store=store, version=version)

    def _migrate(self, snapshot: Snapshot) -> None:
        lock = self.lock()
        try:
            lock.acquire(timeout=0)
        except Timeout:
            return  # a writer is at work: its commit writes the new layout
        try:
            if self.current_version() == snapshot.version:
                self.commit(snapshot)
        except OSError:
            pass  # a read-only knowledge base keeps serving the legacy layout from memory
        finally:
            lock.release()

    def check_embedding(self, manifest: dict[str, Any], name: str, dim: int) -> None:
        built = manifest.get("embedding")
        if built and (built["name"] != name or int(built["dim"]) != int(dim)):
            raise EmbeddingMismatch(
                f"knowledge base '{self.name}' was built with embedding model '{built['name']}' "
                f"(dim {built['dim']}), but '{name}' (dim {dim}) is configured. Vectors from different "
                f"models are not comparable. Either set ASSISTANT_EMBEDDING_MODEL={built['name']} "
                f"(or --embedding-model), or re-embed everything with "
                f"`ingest rebuild --kb {self.name} --embedding-model {name}`."
            )

    # ---- writing ------------------------------------------------------------------------------
    def lock(self) -> FileLock:
        self.dir.mkdir(parents=True, exist_ok=True)
        return FileLock(str(self.dir / ".lock"), timeout=self.settings.lock_timeout_s)

    def acquire(self) -> FileLock:
        lock = self.lock()
        try:
            lock.acquire()
        except Timeout as exc:
            raise KnowledgeBaseBusy(
                f"knowledge base '{self.name}' is being written by another process (lock {lock.lock_file}); "
                f"wait for it to finish, or raise ASSISTANT_LOCK_TIMEOUT_S."
            ) from exc
        self._clean_partial_versions()
        return lock

    def commit(self, snapshot: Snapshot) -> str:
        """Write `snapshot` as a new version and make it live. Caller holds the lock."""
        self.versions_dir.mkdir(parents=True, exist_ok=True)
        version = f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"
        tmp = self.versions_dir / f".tmp-{version}"
        tmp.mkdir()
        snapshot.manifest["updated_at"] = now_iso()
        if snapshot.store is not None:
            written = snapshot.store.save(tmp)
            if len(snapshot.store):
                written += self._save_lexical(snapshot, tmp)
            for path in written:
                with open(path, "rb+") as fh:
                    os.fsync(fh.fileno())
        atomic_write_text(tmp / "manifest.json", json.dumps(snapshot.manifest, ensure_ascii=False, indent=1))
        fsync_dir(tmp)
        os.rename(tmp, self.versions_dir / version)
        fsync_dir(self.versions_dir)
        previous = self.current_version()
        atomic_write_text(self._current_file, version + "\n")
        self._prune(keep={version, previous})
        return version

    def _save_lexical(self, snapshot: Snapshot, folder: Path) -> list[Path]:
        """The version's BM25 index, in FAISS order; tokens of chunks the live version already had are reused."""
        assert snapshot.store is not None
        titles = {d: doc.get("title") or "" for d, doc in snapshot.documents.items()}
        texts = [lexical.lexical_text(titles.get(d.metadata.get("doc_id"), ""), d.metadata, d.page_content)
                 for d in snapshot.store.documents()]
        terms, used = lexical.chunk_terms(texts, lexical.load_terms(self.version_dir()))
        return lexical.save_bm25(folder, lexical.build_bm25(terms), snapshot.store.ids, used)

    def _clean_partial_versions(self) -> None:
        if self.versions_dir.exists():
            for p in self.versions_dir.glob(".tmp-*"):
                shutil.rmtree(p, ignore_errors=True)

    def _prune(self, keep: set[str | None]) -> None:
        """Drop versions other than the live one and its predecessor (kept for readers that raced
        the swap); this also removes complete versions orphaned by a crash before the swap."""
        for p in self.versions_dir.iterdir():
            if not p.name.startswith(".") and p.name not in keep:
                shutil.rmtree(p, ignore_errors=True)


def list_knowledge_bases(settings: Settings) -> list[str]:
    """Names of the knowledge bases that hold a committed version."""
    if settings.vector_store == "milvus":
        from ingest.milvus_store import list_milvus_knowledge_bases

        return list_milvus_knowledge_bases(settings)
    root = settings.kb_root
    names = sorted(d.name for d in root.iterdir() if d.is_dir()) if root.is_dir() else []
    return [n for n in names if not n.startswith(".") and KnowledgeBase(settings, n).exists()]


def new_store(embeddings, dim: int) -> LocalVectorStore:
    return LocalVectorStore(embeddings, dim)  # vectors are L2-normalised: inner product = cosine


def hits_from(results: list[tuple[Document, float]]) -> list[SearchHit]:
    hits = []
    for doc, score in results:
        md = doc.metadata
        hits.append(
            SearchHit(
                source=md.get("source", ""),
                page=md.get("page"),
                clause=md.get("clause", ""),
                text=doc.page_content,
                score=float(score),
                chunk_id=md.get("chunk_id", ""),
                doc_id=md.get("doc_id", ""),
                metadata=md,
            )
        )
    return hits


def require_kb(kb: KnowledgeBase) -> None:
    if not kb.exists():
        raise NotFound(
            f"knowledge base '{kb.name}' does not exist under {kb.settings.kb_root}; "
            f"create it with `ingest add PATH --kb {kb.name}`."
        )
