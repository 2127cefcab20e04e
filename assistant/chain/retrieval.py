"""Hybrid retrieval: FAISS dense search fused with BM25 (jieba for Chinese) by reciprocal rank or
weighted scores; an optional cross-encoder reranker over the fused candidates; filters (department/access
tag, document) applied inside both searches, before ranking; a relevance floor so that "nothing relevant"
is a result, not a guess."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import numpy as np

from assistant.chain.line_items import line_items
from core.errors import AssistantError
from core.settings import Settings
from core.text import is_han
from ingest import lexical
from ingest.lexical import bm25_tokens
from ingest.pipeline import Searcher
from ingest.store import SearchHit

__all__ = ["HybridRetriever", "RetrievalResult", "Retrieved", "bm25_tokens"]


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
    coverage: float | None = None  # share of the question's informative terms found in the best passages


# words that ask rather than say what is asked about: they do not have to appear in an answering passage
_ASKING = frozenset(
    "多少 什么 几 几天 几个 几折 谁 哪 哪些 哪个 多久 多长 多长时间 长时间 时间 怎么 怎样 如何 是否 "
    "吗 呢 那 可以 能 请问 一下 帮 我 我查 查 查询 有 是 现在 么 哪里 哪儿 条件 标准 要求 规定 流程 情况 方式 "
    "what who whom which how many much long when where why whose does do did is are "
    "was were can could would should must have has please tell me".split())


# BM25's pull in calibrated fusion, in dense z-score units for a candidate matching as well as the best one,
# per query language: jieba's segmentation makes Chinese BM25 noisier than English words (measured in
# bench/retrieval_eval.py)
_BM25_WEIGHT_ZH = 0.3
_BM25_WEIGHT_EN = 0.7
# a question naming a financial metric is answered by a statement's table, which the embedder reads poorly
# and its line items' words find: BM25 leads there
_BM25_WEIGHT_ITEMS = 2.0
# a PDF page's second-best candidate chunk adds this share of its score to the page: an answer that
# spans two chunks of one page (a statement's lines, a clause and its table) makes the page stronger
_PAGE_SUPPORT = 0.1


# a question that names a document (its file name or title: "3M", "Best Buy", 员工手册) has its
# candidates searched inside that document too, and they get this much (in z-score units) on top
_NAMED_BOOST = 1.0
_WORD = re.compile(r"[0-9a-z]+|[\u3400-\u9fff]+")
_NUMBER = re.compile(r"[\d.,]+")


def _name_keys(names: dict[str, list[str]]) -> dict[str, set[str]]:
    """Per document, the words of its file name and title that name it: words with a letter that no more
    than a fifth of the documents share ("10K", "2022", "EARNINGS" or 条款 name no one document)."""
    words = {d: {w for n in ns for w in _WORD.findall(n.lower().replace("_", " "))
                 if len(w) >= 2 and not w.isdigit()} for d, ns in names.items()}
    shared: dict[str, int] = {}
    for ws in words.values():
        for w in ws:
            shared[w] = shared.get(w, 0) + 1
    cap = max(1, len(words) // 5)
    return {d: {w for w in ws if shared[w] <= cap} for d, ws in words.items()}


def _merged(first: list[tuple[int, float]], more: list[tuple[int, float]]) -> list[tuple[int, float]]:
    """`first`, then the results of `more` it does not hold, in their order."""
    seen = {i for i, _ in first}
    return first + [(i, s) for i, s in more if i not in seen]


def _z(x: np.ndarray) -> np.ndarray:
    std = float(x.std())
    return (x - x.mean()) / std if std > 1e-9 else np.zeros_like(x)


def fusion_scores(dense: np.ndarray, bm25: np.ndarray, weight: float) -> np.ndarray:
    """Dense z-scores plus `weight` x each candidate's BM25 score over the best candidate's.

    Dense cosines crowd into a narrow band, so they are put on their per-query scale (z). BM25 keeps its own
    contrast instead: a z-score would stretch a flat BM25 list (every candidate mentions the question's
    words, as in a pool of news about one event) to the same spread as a decisive one (one passage holds
    the exact code or term), and its noise would reorder dense's good results (measured: rgb-en recall@5
    0.88 dense, 0.84 with z-scored BM25)."""
    top = float(bm25.max()) if len(bm25) else 0.0
    return _z(dense) + (weight * bm25 / top if top > 0 else 0.0)


def _is_chinese(text: str) -> bool:
    cjk = sum(is_han(c) for c in text)
    return cjk >= max(2, 0.2 * len(text.replace(" ", "")))


def _one_per_page(ranked: list[Retrieved], per_page: int = 3) -> list[Retrieved]:
    """Each PDF page once, at its best chunk's place (the next page takes the freed slot). The page's
    other candidate chunks (up to `per_page` in all) join its passage in reading order, so a page that
    matched in two places shows both. Chunks of documents without pages stay apart."""
    pages: dict[tuple[str, int], list[Retrieved]] = {}
    out: list[Retrieved] = []
    for r in ranked:
        page = r.hit.metadata.get("page")
        if page is None:
            out.append(r)
            continue
        group = pages.setdefault((r.hit.doc_id, page), [])
        if not group:
            out.append(r)
        if len(group) < per_page:
            group.append(r)
    for group in pages.values():
        if len(group) > 1:
            best = group[0]
            parts = sorted(group, key=lambda g: g.hit.metadata.get("chunk_index", 0))
            # the passage holds every part's clauses: a citation names the one its quote comes from
            clauses = list(dict.fromkeys(c for g in parts for c in g.hit.metadata.get("clauses") or [g.hit.clause]))
            best.hit = replace(best.hit, text="\n".join(g.hit.text for g in parts),
                               metadata={**best.hit.metadata, "clauses": clauses})
    return out


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
                 fusion: Literal["calibrated", "rrf", "weighted", "dense", "bm25"] | None = None) -> None:
        self.settings = settings
        self.searcher = Searcher(settings, kb_name)
        self.fusion = fusion or settings.fusion
        snapshot = self.searcher.snapshot
        store = snapshot.store
        self._n = 0  # chunks in the version
        self._ids: list[str] = []  # FAISS: chunk ids, metadata and texts in index order (Milvus: fetched by hit)
        self._meta: list[dict[str, Any]] = []
        self._texts: list[str] = []
        self._doc_ids: list[str] = []  # per chunk: document (code into _doc_ids) and page (-1: none)
        self._doc_code = np.array([], dtype=np.int32)
        self._page = np.array([], dtype=np.int32)
        self._bm25 = None
        self._query_vectors: dict[str, np.ndarray] = {}
        self._unit_vectors: dict[str, np.ndarray] = {}
        self._names: dict[str, set[str]] = {}
        self.named_documents = True  # False only to measure retrieval without the named-document step
        self.one_per_page = True  # False only to measure the chunk-level ranking of earlier releases
        self.bm25_loaded = False  # True: the version's saved BM25 index was read, nothing re-tokenised
        # Milvus: dense and BM25 searches run in Milvus, filters inside them; only per-chunk codes held here
        self._milvus = self.searcher.index
        if self._milvus is not None and len(self._milvus):
            self._n = len(self._milvus)
            self.bm25_loaded = True
            self._doc_ids, self._doc_code, self._page = self._milvus.doc_ids, self._milvus.doc_code, self._milvus.page
            self._names = _name_keys({d: [Path(doc.get("source") or "").stem, doc.get("title") or ""]
                                      for d, doc in snapshot.documents.items()})
        elif store is not None and len(store):
            self._ids = list(store.ids)
            self._n = len(self._ids)
            docs = store.documents()
            self._meta = [d.metadata for d in docs]
            self._texts = [d.page_content for d in docs]
            folder = self.searcher.kb.version_dir(snapshot.version)
            self._bm25 = lexical.load_bm25(folder, self._ids) if folder is not None else None
            self.bm25_loaded = self._bm25 is not None
            codes: dict[str, int] = {}
            self._doc_code = np.fromiter((codes.setdefault(m.get("doc_id", ""), len(codes)) for m in self._meta),
                                         dtype=np.int32, count=self._n)
            self._doc_ids = list(codes)
            self._page = np.fromiter((-1 if m.get("page") is None else int(m["page"]) for m in self._meta),
                                     dtype=np.int32, count=self._n)
            self._names = _name_keys({d: [Path(doc.get("source") or "").stem, doc.get("title") or ""]
                                      for d, doc in snapshot.documents.items()})
            if self._bm25 is None:  # a version without its BM25 files (written by hand, or damaged)
                titles = {d: doc.get("title") or "" for d, doc in snapshot.documents.items()}
                texts = [lexical.lexical_text(titles.get(m.get("doc_id"), ""), m, t)
                         for m, t in zip(self._meta, self._texts, strict=True)]
                self._bm25 = lexical.build_bm25(lexical.chunk_terms(texts, {})[0])

    def _mask(self, departments: Iterable[str | None] | None, sources: Iterable[str] | None) -> np.ndarray | None:
        if departments is None and sources is None:
            return None
        if self._milvus is not None:
            return self._milvus.mask(departments, sources)
        allowed = set(departments) if departments is not None else None
        wanted = set(sources) if sources is not None else None
        keep = [
            (allowed is None or m.get("department") in allowed)
            and (wanted is None or m.get("source") in wanted or m.get("doc_id") in wanted)
            for m in self._meta
        ]
        return np.array(keep, dtype=bool)

    def named(self, query: str) -> set[str]:
        """Documents the question names: a distinctive word of a document's name is a question word or
        consecutive question words run together ("Best Buy" names BESTBUY_2023_10K), or a question word of
        3+ letters begins one ("MGM" names MGMRESORTS); a Chinese name word stands anywhere in the question.
        A word the text of several other documents uses is an ordinary word there, not a name ("data" does
        not name "Data Privacy FAQ"), and naming most of the documents names none."""
        words = _WORD.findall(query.lower())
        spans = {"".join(words[i:j]) for i in range(len(words)) for j in range(i + 2, min(i + 4, len(words) + 1))}
        starts = [w for w in words if len(w) >= 3 and not w.isdigit() and not is_han(w[0])]
        squashed = "".join(words)
        hits = set()
        for d, keys in self._names.items():
            for k in keys:
                if is_han(k[0]):
                    said = k if k in squashed else None
                else:
                    said = k if k in spans else next((w for w in starts if k.startswith(w)), None)
                if said is not None and self._distinctive(said, d):
                    hits.add(d)
                    break
        return hits if len(hits) <= max(1, len(self._names) // 3) else set()

    def _distinctive(self, word: str, doc_id: str) -> bool:
        """`word` is no stop word and the text of at most a fifth of the other documents uses it."""
        if word in lexical.STOP_WORDS:
            return False
        if self._milvus is not None:  # documents using it, less the named one (counted as a user)
            stats = self._milvus.term(word)
            return stats is None or stats[1] - 1 <= max(1, len(self._names) // 5)
        term = self._bm25.vocab_dict.get(word) if self._bm25 is not None else None
        if term is None:  # no chunk has it as a word ("bestbuy", a Chinese title): nothing else is called so
            return True
        ptr = self._bm25.scores["indptr"]
        chunks = self._bm25.scores["indices"][ptr[term]:ptr[term + 1]]
        users = {self._doc_ids[c] for c in np.unique(self._doc_code[chunks])}
        return len(users - {doc_id}) <= max(1, len(self._names) // 5)

    def _dense(self, query: str, n: int, mask: np.ndarray | None) -> list[tuple[int, float]]:
        return self._dense_by_vector(self._embed(query), n, mask)

    def _embed(self, query: str) -> np.ndarray:
        vec = self._query_vectors.get(query)
        if vec is None:  # a repeated question (a retry, a follow-up searched again) is not re-embedded
            vec = np.array([self.searcher.embeddings.embed_query(query)], dtype=np.float32)
            if len(self._query_vectors) >= 256:
                self._query_vectors.pop(next(iter(self._query_vectors)))
            self._query_vectors[query] = vec
        return vec

    def _dense_by_vector(self, vec: np.ndarray, n: int, mask: np.ndarray | None,
                         expr: str = "") -> list[tuple[int, float]]:
        if self._milvus is not None:  # `expr` is `mask` as Milvus's scalar filter, applied inside the search
            return self._milvus.dense(vec, n, expr)
        import faiss

        store = self.searcher.snapshot.store
        params = None
        if mask is not None:  # filter inside the index search: exact at any scale, no over-fetching
            params = faiss.SearchParameters(sel=faiss.IDSelectorBatch(np.flatnonzero(mask).astype(np.int64)))
        scores, idx = store.index.search(vec, n, params=params)
        return [(int(i), float(s)) for i, s in zip(idx[0], scores[0], strict=True) if i >= 0]

    def _bm25_scores(self, query: str, mask: np.ndarray | None, expr: str = "", n: int = 0,
                     fetched: dict[str, set[int]] | None = None) -> np.ndarray | None:
        """BM25 score of every chunk for the query (masked chunks 0), None when the query has no term.

        Milvus: the top `n` allowed chunks' scores, the others 0 until `_complete_bm25` fetches the ones that
        become candidates (`fetched` records which positions hold their true score)."""
        if self._milvus is not None:
            text = self._milvus.query_text(query)
            if not text:
                return None
            scores = np.zeros(self._n, dtype=np.float32)
            top = self._milvus.bm25(text, n, expr)
            for i, s in top:
                scores[i] = s
            if fetched is not None:
                fetched[query] = {i for i, _ in top} | ({-1} if len(top) < n else set())  # -1: all found
            return scores
        tokens = bm25_tokens(query)
        if not tokens or self._bm25 is None:
            return None
        vocab = self._bm25.vocab_dict
        known = [t for t in tokens if t in vocab]
        if not known:
            return np.zeros(self._n, dtype=np.float32)
        scores = np.asarray(self._bm25.get_scores(known), dtype=np.float32)
        return scores * mask if mask is not None else scores

    @staticmethod
    def _top(scores: np.ndarray | None, n: int) -> list[tuple[int, float]]:
        if scores is None:
            return []
        n = min(n, len(scores))
        idx = np.argpartition(-scores, n - 1)[:n]
        idx = idx[np.argsort(-scores[idx], kind="stable")]
        return [(int(i), float(scores[i])) for i in idx if scores[i] > 0]

    def _sparse(self, query: str, n: int, mask: np.ndarray | None) -> list[tuple[int, float]]:
        return self._top(self._bm25_scores(query, mask, n=n), n)

    def retrieve(self, query: str, k: int = 5, departments: Iterable[str | None] | None = None,
                 sources: Iterable[str] | None = None) -> RetrievalResult:
        if not self._n or not query.strip():
            return RetrievalResult([], False, None)
        mask = self._mask(departments, sources)
        allowed = int(mask.sum()) if mask is not None else self._n
        if allowed == 0:
            return RetrievalResult([], False, None)
        # more candidates than k: chunks of one page collapse into one passage below
        n = min(allowed, max(50, 6 * k))
        # a question naming a financial metric is answered by a statement's lines: where the knowledge base
        # has them, BM25 searches the lines alone (the question's prose is not in a table) and the embedder
        # reads the question with them
        expr = self._expr(departments, sources)
        fetched: dict[str, set[int]] = {}
        items = line_items(query)
        lines = self._bm25_scores(items, mask, expr, n, fetched) if items else None
        if not self._has_statement(items, lines):
            items = ""
        bm25_all = lines if items else self._bm25_scores(query, mask, expr, n, fetched)
        bm25_query = items or query
        vec = self._embed(f"{query} {items}" if items else query)
        dense = self._dense_by_vector(vec, n, mask, expr)
        sparse = self._top(bm25_all, n)
        named = self.named(query) if self.named_documents and self.fusion == "calibrated" else set()
        in_named = np.isin(self._doc_code, [i for i, d in enumerate(self._doc_ids) if d in named]) if named else None
        if in_named is not None:  # the named documents' best chunks join the candidates, within the user's access
            inside = in_named & mask if mask is not None else in_named
            inside_expr = self._expr(departments, sources, named)
            extra = self._dense_by_vector(vec, min(n, int(inside.sum())), inside, inside_expr) if inside.any() else []
            dense_pool = _merged(dense, extra)
            if self._milvus is not None and bm25_all is not None:  # the named documents' own BM25 top
                self._complete_bm25(bm25_all, bm25_query, self._milvus.bm25(
                    self._milvus.query_text(bm25_query), n, inside_expr), fetched)
            sparse = _merged(sparse, self._top(bm25_all * inside, n) if bm25_all is not None else [])
        else:
            dense_pool = dense
        fused: dict[int, Retrieved] = {}
        rows = self._rows([i for i, _ in dense_pool] + [i for i, _ in sparse])

        def entry(i: int) -> Retrieved:
            if i not in fused:
                fused[i] = Retrieved(self._hit(i, rows), 0.0)
            return fused[i]

        for name, results in (("dense", dense_pool), ("bm25", sparse)):
            for rank, (i, s) in enumerate(results, 1):
                e = entry(i)
                e.ranks[name] = rank
                if name == "dense":
                    e.dense = s
                else:
                    e.bm25 = s
        if self.fusion == "dense":
            for i, s in dense:
                fused[i].score = s
            fused = {i: fused[i] for i, _ in dense}
        elif self.fusion == "bm25":
            for i, s in sparse:
                fused[i].score = s
            fused = {i: fused[i] for i, _ in sparse}
        elif self.fusion == "weighted":
            top_bm25 = max((s for _, s in sparse), default=1.0) or 1.0
            for e in fused.values():
                e.score = self.settings.dense_weight * (e.dense or 0.0)
                e.score += (1 - self.settings.dense_weight) * (e.bm25 or 0.0) / top_bm25
        elif self.fusion == "rrf":  # reciprocal rank fusion (k=60, Cormack et al.)
            for e in fused.values():
                e.score = sum(1.0 / (60 + r) for r in e.ranks.values())
        else:
            if self._milvus is not None and bm25_all is not None:  # every candidate's exact BM25 score
                missing = [i for i in fused if i not in fetched.get(bm25_query, set())]
                if missing and -1 not in fetched.get(bm25_query, set()):
                    self._complete_bm25(bm25_all, bm25_query, list(self._milvus.bm25_of(
                        self._milvus.query_text(bm25_query), missing).items()), fetched)
            self._calibrated(query, vec, fused, bm25_all, in_named, bool(items))
        ranked = sorted(fused.values(), key=lambda r: r.score, reverse=True)
        if self.one_per_page:
            ranked = _one_per_page(ranked)
        if self.settings.reranker:  # the cross-encoder reads query and passage together: a finer order
            ranked = ranked[: max(k, self.settings.rerank_candidates)]
            scores = cross_encoder(self.settings.reranker).predict([(query, r.hit.text) for r in ranked],
                                                                   show_progress_bar=False)
            for r, s in zip(ranked, scores, strict=True):
                r.rerank = float(s)
            ranked.sort(key=lambda r: r.rerank, reverse=True)
        ranked = ranked[:k]
        best = max((s for _, s in dense), default=None)
        coverage = self.coverage(query, ranked[:2])
        relevant = best is not None and (best >= self.settings.sure_relevance or (
            best >= self.settings.min_relevance and coverage >= self.settings.min_coverage))
        return RetrievalResult(ranked, relevant, best, coverage)

    def _expr(self, departments: Iterable[str | None] | None, sources: Iterable[str] | None,
              named: set[str] | None = None) -> str:
        """The access filter (and the named documents) as a Milvus scalar filter; "" for FAISS."""
        if self._milvus is None:
            return ""
        from ingest.milvus_store import filter_expr

        return filter_expr(departments, sources, named)

    @staticmethod
    def _complete_bm25(scores: np.ndarray, query: str, found: list[tuple[int, float]],
                       fetched: dict[str, set[int]]) -> None:
        for i, s in found:
            scores[i] = s
        fetched.setdefault(query, set()).update(i for i, _ in found)

    def coverage(self, query: str, passages: list[Retrieved]) -> float:
        """IDF-weighted share of the query's informative terms that occur in `passages`.

        Cosines of a multilingual embedder crowd into one band for on- and off-topic questions alike (0.85-0.90
        for both on the demo corpus); whether the passages contain what the question is about is the sharper
        test: an off-topic question's key terms (年终奖, CEO salary) are rare or absent in the knowledge base,
        so they weigh most and are missing. Question words are left out."""
        # a number is a value of the asker's case (a bill of 2600, 400 claims), not what the question is about
        terms = {t for t in lexical.query_terms(query) if t not in _ASKING and not _NUMBER.fullmatch(t)}
        if not terms or (self._bm25 is None and self._milvus is None):
            return 1.0  # nothing to check (a question of only question words): the dense floor decides
        found = " ".join(r.hit.text for r in passages).lower()
        weights = {t: self.idf(t) for t in terms}
        total = sum(weights.values())
        # presence as a substring of the passages: no mismatch between the question's and the index's words
        return sum(w for t, w in weights.items() if t in found) / total if total > 0 else 1.0

    def idf(self, term: str) -> float:
        """How informative a term is in this knowledge base (BM25's idf over its chunks); a term it never uses is
        as informative as it gets."""
        if self._milvus is not None:
            stats = self._milvus.term(term)
            return float(np.log((self._milvus.chunks + 1) / ((stats[0] if stats else 0) + 0.5)))
        if self._bm25 is None:
            return 1.0
        i = self._bm25.vocab_dict.get(term)
        indptr = self._bm25.scores["indptr"]
        df = 0 if i is None else int(indptr[i + 1] - indptr[i])
        return float(np.log((float(self._bm25.scores["num_docs"]) + 1) / (df + 0.5)))

    def unit_vectors(self, texts: list[str]) -> np.ndarray:
        """Passage-side embeddings of short texts (evidence units), kept by text: a knowledge base's units recur
        across questions, so most are embedded once."""
        missing = [t for t in dict.fromkeys(texts) if t not in self._unit_vectors]
        if missing:
            for t, v in zip(missing, self.searcher.embeddings.embed_documents(missing), strict=True):
                self._unit_vectors[t] = np.asarray(v, dtype=np.float32)
            while len(self._unit_vectors) > 50_000:
                self._unit_vectors.pop(next(iter(self._unit_vectors)))
        return np.stack([self._unit_vectors[t] for t in texts]) if texts else np.zeros((0, 1), np.float32)

    def query_vector(self, query: str) -> np.ndarray:
        return self._embed(query)[0]

    def chunk_texts(self, ids: list[str]) -> dict[str, str]:
        """The text each of these chunks holds in this version (absent: no longer in the knowledge base)."""
        if self._milvus is not None:
            return self._milvus.texts_of(ids)
        if getattr(self, "_text_of", None) is None:
            self._text_of = dict(zip(self._ids, self._texts, strict=True))
        return {i: self._text_of[i] for i in ids if i in self._text_of}

    def embed_texts(self, texts: list[str]) -> np.ndarray:
        """Unit-length embeddings of texts compared with each other (the knowledge base's own embedding model)."""
        rows = np.array([self.searcher.embeddings.embed_query(t) for t in texts], dtype=np.float32)
        norms = np.linalg.norm(rows, axis=1, keepdims=True)
        return rows / np.where(norms > 0, norms, 1.0)

    def _calibrated(self, query: str, vec: np.ndarray, fused: dict[int, Retrieved],
                    bm25_all: np.ndarray | None, in_named: np.ndarray | None = None, items: bool = False) -> None:
        """Score-calibrated fusion: both legs scored exactly on every candidate either leg found, combined
        by `fusion_scores` (dense on its per-query z scale, BM25 by its contrast with the best candidate,
        at a weight below dense's), then a PDF page's second candidate chunk adds a little to the page.

        Raw scores are not comparable (cosines of one model crowd into a narrow band, BM25 is unbounded),
        and rank fusion lets the weaker leg's top results outrank dense's good ones; the weight keeps BM25
        a supporter that breaks close dense calls and lifts exact-term matches, never a co-equal voter."""
        ids = np.fromiter(fused, dtype=np.int64)
        if self._milvus is not None:  # exact cosines of the candidates, computed by Milvus
            cos = self._milvus.dense_of(vec, ids.tolist())
            d = np.array([cos.get(int(i), 0.0) for i in ids], dtype=np.float32)
        else:
            d = self.searcher.snapshot.store.index.reconstruct_batch(ids) @ vec[0]
        b = bm25_all[ids] if bm25_all is not None else np.zeros(len(ids), dtype=np.float32)
        for i, s in zip(ids, d, strict=True):
            fused[int(i)].dense = float(s)
        weight = _BM25_WEIGHT_ITEMS if items else _BM25_WEIGHT_ZH if _is_chinese(query) else _BM25_WEIGHT_EN
        score = fusion_scores(d, b, weight)
        if in_named is not None:
            score = score + _NAMED_BOOST * in_named[ids]
        score = score + _PAGE_SUPPORT * self._second_on_page(ids, score)
        for i, s in zip(ids, score, strict=True):
            fused[int(i)].score = float(s)

    def _has_statement(self, items: str, lines: np.ndarray | None) -> bool:
        """Whether the best chunk for a metric's line items holds most of them (a statement, not a policy
        that mentions cash once): only then do the lines stand in for the question's words."""
        if lines is None or lines.max() <= 0:
            return False
        best = Retrieved(self._hit(int(np.argmax(lines))), 0.0)
        return self.coverage(items, [best]) >= 0.5

    def _second_on_page(self, ids: np.ndarray, score: np.ndarray) -> np.ndarray:
        """For each candidate, the positive score of the second-best candidate chunk on its PDF page (0 when
        the page has one candidate chunk or the chunk has no page)."""
        best: dict[tuple[int, int], list[float]] = {}
        keys = []
        for i, s in zip(ids, score, strict=True):
            page = int(self._page[int(i)])
            key = (int(self._doc_code[int(i)]), page) if page >= 0 else None
            keys.append(key)
            if key is not None:
                best.setdefault(key, []).append(float(s))
        second = {k: max(0.0, sorted(v, reverse=True)[1]) for k, v in best.items() if len(v) > 1}
        return np.array([second.get(k, 0.0) if k is not None else 0.0 for k in keys], dtype=np.float64)

    def _rows(self, positions: list[int]) -> dict[int, tuple[str, str, dict[str, Any]]]:
        """(chunk id, text, metadata) of these chunks: FAISS holds them, Milvus fetches them in one query."""
        if self._milvus is not None:
            return self._milvus.rows(positions)
        return {i: (self._ids[i], self._texts[i], self._meta[i]) for i in positions}

    def _hit(self, i: int, rows: dict[int, tuple[str, str, dict[str, Any]]] | None = None) -> SearchHit:
        chunk_id, text, md = rows[i] if rows is not None and i in rows else self._rows([i])[i]
        return SearchHit(source=md.get("source", ""), page=md.get("page"), clause=md.get("clause", ""),
                         text=text, score=0.0, chunk_id=chunk_id, doc_id=md.get("doc_id", ""), metadata=md)
