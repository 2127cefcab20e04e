"""Hybrid retrieval: FAISS dense search fused with BM25 (jieba for Chinese) by reciprocal rank or
weighted scores; an optional cross-encoder reranker over the fused candidates; filters (department/access
tag, document) applied inside both searches, before ranking; a relevance floor so that "nothing relevant"
is a result, not a guess."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Literal

import numpy as np

from core.errors import AssistantError
from core.settings import Settings
from ingest.pipeline import Searcher
from ingest.store import SearchHit

logging.getLogger("jieba").setLevel(logging.WARNING)  # once, not per tokenised text
_WORD = re.compile(r"[\w\u4e00-\u9fff]")
_STOP = {"的", "了", "是", "在", "和", "与", "及", "或", "吗", "呢", "what", "the", "a", "an", "of", "to", "is",
         "are", "and", "or", "in", "on", "for", "how", "do", "does", "i", "we", "can", "be", "by", "with", "之"}


def bm25_tokens(text: str) -> list[str]:
    import jieba

    return [t for t in (w.strip() for w in jieba.lcut_for_search(text.lower())) if t and _WORD.match(t)
            and t not in _STOP]


@dataclass
class Retrieved:
    hit: SearchHit
    score: float  # fused score used for ranking
    dense: float | None = None  # cosine similarity, when the dense search found it
    bm25: float | None = None
    ranks: dict[str, int] = field(default_factory=dict)
    rerank: float | None = None  # the cross-encoder's score, when a reranker is configured

    def to_dict(self) -> dict[str, Any]:
        return {**self.hit.to_dict(), "score": round(self.score, 6), "dense_score": self.dense,
                "bm25_score": self.bm25, "rerank_score": self.rerank}


@dataclass
class RetrievalResult:
    passages: list[Retrieved]
    relevant: bool  # False: below the relevance floor, the chain answers "the documents do not say"
    best_dense: float | None


@lru_cache(maxsize=2)
def cross_encoder(spec: str) -> Any:
    """A sentence-transformers CrossEncoder, loaded once per process."""
    from sentence_transformers import CrossEncoder

    try:
        return CrossEncoder(spec)
    except (OSError, ValueError) as exc:
        raise AssistantError(f"reranker '{spec}' could not be loaded ({exc}); set ASSISTANT_RERANKER to a local "
                             "cross-encoder folder or a model id you can download, or unset it") from None


class HybridRetriever:
    def __init__(self, settings: Settings, kb_name: str | None = None,
                 fusion: Literal["rrf", "weighted"] | None = None) -> None:
        self.settings = settings
        self.searcher = Searcher(settings, kb_name)
        self.fusion = fusion or settings.fusion
        store = self.searcher.snapshot.store
        self._ids: list[str] = []
        self._meta: list[dict[str, Any]] = []
        self._bm25 = None
        if store is not None:
            self._ids = [store.index_to_docstore_id[i] for i in range(store.index.ntotal)]
            docs = [store.docstore.search(i) for i in self._ids]
            self._meta = [d.metadata for d in docs]
            self._texts = [d.page_content for d in docs]
            import bm25s

            titles = {d: doc.get("title", "") for d, doc in self.searcher.snapshot.documents.items()}
            corpus = [bm25_tokens(f"{titles.get(m.get('doc_id'), '')} {m.get('clause') or ''} {t}") for m, t in
                      zip(self._meta, self._texts, strict=True)]
            self._bm25 = bm25s.BM25()
            self._bm25.index(corpus, show_progress=False)

    def _mask(self, departments: Iterable[str | None] | None, sources: Iterable[str] | None) -> np.ndarray | None:
        if departments is None and sources is None:
            return None
        allowed = set(departments) if departments is not None else None
        wanted = set(sources) if sources is not None else None
        keep = [
            (allowed is None or m.get("department") in allowed)
            and (wanted is None or m.get("source") in wanted or m.get("doc_id") in wanted)
            for m in self._meta
        ]
        return np.array(keep, dtype=bool)

    def _dense(self, query: str, n: int, mask: np.ndarray | None) -> list[tuple[int, float]]:
        import faiss

        store = self.searcher.snapshot.store
        vec = np.array([self.searcher.embeddings.embed_query(query)], dtype=np.float32)
        params = None
        if mask is not None:  # filter inside the index search: exact at any scale, no over-fetching
            params = faiss.SearchParameters(sel=faiss.IDSelectorBatch(np.flatnonzero(mask).astype(np.int64)))
        scores, idx = store.index.search(vec, n, params=params)
        return [(int(i), float(s)) for i, s in zip(idx[0], scores[0], strict=True) if i >= 0]

    def _sparse(self, query: str, n: int, mask: np.ndarray | None) -> list[tuple[int, float]]:
        tokens = bm25_tokens(query)
        if not tokens or self._bm25 is None:
            return []
        kwargs: dict[str, Any] = {"k": n, "show_progress": False}
        if mask is not None:
            kwargs["weight_mask"] = mask.astype(np.float32)
        docs, scores = self._bm25.retrieve([tokens], **kwargs)
        return [(int(d), float(s)) for d, s in zip(docs[0], scores[0], strict=True) if s > 0]

    def retrieve(self, query: str, k: int = 5, departments: Iterable[str | None] | None = None,
                 sources: Iterable[str] | None = None) -> RetrievalResult:
        if not self._ids or not query.strip():
            return RetrievalResult([], False, None)
        mask = self._mask(departments, sources)
        allowed = int(mask.sum()) if mask is not None else len(self._ids)
        if allowed == 0:
            return RetrievalResult([], False, None)
        n = min(allowed, max(20, 4 * k))
        dense = self._dense(query, n, mask)
        sparse = self._sparse(query, n, mask)
        fused: dict[int, Retrieved] = {}

        def entry(i: int) -> Retrieved:
            if i not in fused:
                fused[i] = Retrieved(self._hit(i), 0.0)
            return fused[i]

        if self.fusion == "weighted":
            top_bm25 = max((s for _, s in sparse), default=1.0) or 1.0
            for i, s in dense:
                e = entry(i)
                e.dense, e.score = s, e.score + self.settings.dense_weight * s
            for i, s in sparse:
                e = entry(i)
                e.bm25, e.score = s, e.score + (1 - self.settings.dense_weight) * s / top_bm25
        else:  # reciprocal rank fusion (k=60, Cormack et al.)
            for name, results in (("dense", dense), ("bm25", sparse)):
                for rank, (i, s) in enumerate(results, 1):
                    e = entry(i)
                    e.ranks[name] = rank
                    e.score += 1.0 / (60 + rank)
                    if name == "dense":
                        e.dense = s
                    else:
                        e.bm25 = s
        ranked = sorted(fused.values(), key=lambda r: r.score, reverse=True)
        if self.settings.reranker:  # the cross-encoder reads query and passage together: a finer order
            ranked = ranked[: max(k, self.settings.rerank_candidates)]
            scores = cross_encoder(self.settings.reranker).predict([(query, r.hit.text) for r in ranked],
                                                                   show_progress_bar=False)
            for r, s in zip(ranked, scores, strict=True):
                r.rerank = float(s)
            ranked.sort(key=lambda r: r.rerank, reverse=True)
        ranked = ranked[:k]
        best = max((s for _, s in dense), default=None)
        relevant = best is not None and best >= self.settings.min_relevance
        return RetrievalResult(ranked, relevant, best)

    def _hit(self, i: int) -> SearchHit:
        md = self._meta[i]
        return SearchHit(source=md.get("source", ""), page=md.get("page"), clause=md.get("clause", ""),
                         text=self._texts[i], score=0.0, chunk_id=self._ids[i], doc_id=md.get("doc_id", ""),
                         metadata=md)
