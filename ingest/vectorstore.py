"""The project's own vector store: a FAISS inner-product index beside a JSON docstore, behind LangChain's
`VectorStore` interface. No pickle: the index is FAISS's own binary format, chunks are plain JSON.

Vectors are L2-normalised by every embedding model of the project, so inner product is cosine.
Position i of the FAISS index is chunk `ids[i]`; deletions compact both alike.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import faiss
import numpy as np
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.vectorstores import VectorStore

DOCSTORE_FORMAT = "domain-assistant-docstore/1"
INDEX_FILE = "index.faiss"
DOCSTORE_FILE = "docstore.json"

MetadataFilter = Callable[[dict[str, Any]], bool] | dict[str, Any]


class StoreError(ValueError):
    """A store file that cannot be read back (the caller names the knowledge base and the way out)."""


class LocalVectorStore(VectorStore):
    def __init__(self, embedding: Embeddings | None, dim: int, index: faiss.Index | None = None,
                 ids: list[str] | None = None, docs: dict[str, Document] | None = None) -> None:
        self.embedding = embedding
        self.dim = int(dim)
        self.index = index if index is not None else faiss.IndexFlatIP(self.dim)
        self._ids: list[str] = list(ids or [])
        self._docs: dict[str, Document] = dict(docs or {})
        if self.index.ntotal != len(self._ids) or set(self._ids) != set(self._docs):
            raise StoreError(f"index holds {self.index.ntotal} vectors but the docstore {len(self._docs)} chunks")

    # ---- LangChain interface ------------------------------------------------------------------
    @property
    def embeddings(self) -> Embeddings | None:
        return self.embedding

    def add_texts(self, texts: Iterable[str], metadatas: list[dict] | None = None, *, ids: list[str] | None = None,
                  **kwargs: Any) -> list[str]:
        if self.embedding is None:
            raise StoreError("this store was opened without an embedding model")
        texts = list(texts)
        return self.add_embeddings(zip(texts, self.embedding.embed_documents(texts), strict=True), metadatas, ids)

    def add_embeddings(self, text_embeddings: Iterable[tuple[str, Sequence[float]]],
                       metadatas: Iterable[dict] | None = None, ids: Iterable[str] | None = None) -> list[str]:
        pairs = list(text_embeddings)
        if not pairs:
            return []
        metas = list(metadatas) if metadatas is not None else [{} for _ in pairs]
        new_ids = list(ids) if ids is not None else [m.get("chunk_id") or os.urandom(8).hex() for m in metas]
        if len(set(new_ids)) != len(new_ids) or any(i in self._docs for i in new_ids):
            raise StoreError("duplicate chunk ids: delete the old chunks before adding them again")
        vectors = np.asarray([v for _, v in pairs], dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.dim:
            raise StoreError(f"vectors of dimension {vectors.shape[-1]} do not fit an index of dimension {self.dim}")
        self.index.add(vectors)
        for cid, (text, _), md in zip(new_ids, pairs, metas, strict=True):
            self._docs[cid] = Document(page_content=text, metadata=dict(md), id=cid)
        self._ids.extend(new_ids)
        return new_ids

    def delete(self, ids: list[str] | None = None, **kwargs: Any) -> bool:
        gone = set(ids or ())
        positions = [i for i, cid in enumerate(self._ids) if cid in gone]
        if positions:
            self.index.remove_ids(np.asarray(positions, dtype=np.int64))  # compacts, keeping order
            self._ids = [cid for cid in self._ids if cid not in gone]
            for cid in gone:
                self._docs.pop(cid, None)
        return True

    def get_by_ids(self, ids: Sequence[str], /) -> list[Document]:
        return [self._docs[i] for i in ids if i in self._docs]

    def similarity_search_with_score_by_vector(self, embedding: Sequence[float], k: int = 4,
                                               filter: MetadataFilter | None = None,
                                               **kwargs: Any) -> list[tuple[Document, float]]:
        if not self._ids or k <= 0:
            return []
        params = None
        if filter is not None:  # restrict the search itself: exact at any scale, no over-fetching
            keep = _as_predicate(filter)
            allowed = np.asarray([i for i, cid in enumerate(self._ids) if keep(self._docs[cid].metadata)],
                                 dtype=np.int64)
            if not len(allowed):
                return []
            params = faiss.SearchParameters(sel=faiss.IDSelectorBatch(allowed))
        vec = np.asarray([embedding], dtype=np.float32)
        scores, idx = self.index.search(vec, min(k, len(self._ids)), params=params)
        return [(self._docs[self._ids[i]], float(s)) for i, s in zip(idx[0], scores[0], strict=True) if i >= 0]

    def similarity_search_by_vector(self, embedding: list[float], k: int = 4, **kwargs: Any) -> list[Document]:
        return [d for d, _ in self.similarity_search_with_score_by_vector(embedding, k, **kwargs)]

    def similarity_search_with_score(self, query: str, k: int = 4, **kwargs: Any) -> list[tuple[Document, float]]:
        if self.embedding is None:
            raise StoreError("this store was opened without an embedding model")
        return self.similarity_search_with_score_by_vector(self.embedding.embed_query(query), k, **kwargs)

    def similarity_search(self, query: str, k: int = 4, **kwargs: Any) -> list[Document]:
        return [d for d, _ in self.similarity_search_with_score(query, k, **kwargs)]

    def _select_relevance_score_fn(self) -> Callable[[float], float]:
        return lambda s: max(0.0, min(1.0, s))  # cosine of normalised vectors

    @classmethod
    def from_texts(cls, texts: list[str], embedding: Embeddings, metadatas: list[dict] | None = None, *,
                   ids: list[str] | None = None, **kwargs: Any) -> LocalVectorStore:
        vectors = embedding.embed_documents(list(texts))
        store = cls(embedding, len(vectors[0]) if vectors else int(kwargs.get("dim", 0)))
        store.add_embeddings(zip(texts, vectors, strict=True), metadatas, ids)
        return store

    # ---- the project's own accessors ----------------------------------------------------------
    @property
    def ids(self) -> list[str]:
        """Chunk ids in index order."""
        return self._ids

    @property
    def index_to_docstore_id(self) -> dict[int, str]:
        return dict(enumerate(self._ids))

    def documents(self) -> list[Document]:
        """Chunks in index order."""
        return [self._docs[i] for i in self._ids]

    def update_metadata(self, ids: Iterable[str], **fields: Any) -> None:
        for cid in ids:
            if cid in self._docs:
                self._docs[cid].metadata.update(fields)

    def __len__(self) -> int:
        return len(self._ids)

    # ---- disk -----------------------------------------------------------------------------------
    def save(self, folder: Path) -> list[Path]:
        """Write index and docstore into `folder` (a fresh version folder); returns the files written."""
        index_path, doc_path = folder / INDEX_FILE, folder / DOCSTORE_FILE
        faiss.write_index(self.index, str(index_path))
        docs = self.documents()
        payload = {"format": DOCSTORE_FORMAT, "dim": self.dim, "ids": self._ids,
                   "texts": [d.page_content for d in docs], "metadatas": [d.metadata for d in docs]}
        doc_path.write_text(json.dumps(payload, ensure_ascii=False, separators=(",", ":")), encoding="utf-8")
        return [index_path, doc_path]

    @classmethod
    def load(cls, folder: Path, embedding: Embeddings | None = None) -> LocalVectorStore:
        try:
            payload = json.loads((folder / DOCSTORE_FILE).read_text(encoding="utf-8"))
            if payload.get("format") != DOCSTORE_FORMAT:
                raise StoreError(f"unknown docstore format {payload.get('format')!r}")
            index = faiss.read_index(str(folder / INDEX_FILE))
            ids, texts, metas = payload["ids"], payload["texts"], payload["metadatas"]
            docs = {cid: Document(page_content=t, metadata=m, id=cid)
                    for cid, t, m in zip(ids, texts, metas, strict=True)}
            if index.d != int(payload["dim"]):
                raise StoreError(f"index dimension {index.d} differs from the docstore's {payload['dim']}")
            return cls(embedding, index.d, index, ids, docs)
        except StoreError:
            raise
        except (OSError, RuntimeError, ValueError, KeyError, TypeError) as exc:
            raise StoreError(f"{type(exc).__name__}: {exc}") from exc


def _as_predicate(filter: MetadataFilter) -> Callable[[dict[str, Any]], bool]:
    if callable(filter):
        return filter
    wanted = dict(filter)

    def match(md: dict[str, Any]) -> bool:
        return all(md.get(k) in v if isinstance(v, list | set | tuple) else md.get(k) == v for k, v in wanted.items())

    return match
