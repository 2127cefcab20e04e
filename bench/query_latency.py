"""Query latency of the chain's retriever on a synthetic 100k-chunk knowledge base: dense, BM25 and hybrid.

The knowledge base is written through the real store (FAISS index, JSON docstore, BM25 saved with the
version) and cached under --cache (built once; delete the folder to rebuild).
- texts: half Chinese (words drawn by frequency from jieba's dictionary, ~120-250 characters), half
  English (words drawn by frequency from the repo's corpus and README, ~60-120 words), in 2,000 documents
  with heading paths and departments;
- vectors: random unit vectors of the embedding model's dimension (384 for multilingual-e5-small); queries
  are embedded by the real model, so the dense figure includes the query embedding.
Timings are per query, after one warm-up query; "hybrid, all in" = the query's embedding + everything
else retrieve() does (FAISS, BM25, exact scores of every candidate, fusion, one passage per page); load is
opening the knowledge base (docstore, FAISS, BM25). Each store is measured in its own process: "reader MB" is
what opening the knowledge base adds to an app process's RSS (FAISS: the whole version; Milvus: per-chunk codes
and term statistics, texts fetched per query); "server MB" is the process that serves the Milvus Lite file (its
server runs inside that process), now and at its peak: the deployment's Milvus, apart from the app.

--store milvus|both: the same knowledge base (chunks, vectors) copied into Milvus Lite (a file beside it, built
once), searched by the same retriever with dense and BM25 in Milvus; "hybrid, dept filter" is a staff user's
query (one department of four: the filter inside both searches).

    .venv/bin/python bench/query_latency.py [--chunks 100000] [--queries 200] [--cache .cache/bench]
        [--store faiss|milvus|both]
"""

from __future__ import annotations

import multiprocessing as mp
import os
import re
import statistics
import time
from collections import Counter
from pathlib import Path

import numpy as np
from common import ROOT, parser, print_table, run_isolated


def _zh_vocab() -> tuple[list[str], np.ndarray]:
    import jieba

    words, freqs = [], []
    for line in (Path(jieba.__file__).parent / "dict.txt").read_text(encoding="utf-8").splitlines():
        word, freq, *_ = line.split(" ")
        if re.fullmatch(r"[\u4e00-\u9fff]{1,4}", word) and int(freq) >= 20:
            words.append(word)
            freqs.append(int(freq))
    p = np.asarray(freqs, dtype=np.float64)
    return words, p / p.sum()


def _en_vocab() -> tuple[list[str], np.ndarray]:
    text = " ".join(p.read_text(encoding="utf-8", errors="ignore") for p in [ROOT / "README.md",
                                                                              *(ROOT / "corpus").glob("*.md")])
    counts = Counter(w.lower() for w in re.findall(r"[A-Za-z]{2,}", text))
    words = list(counts)
    p = np.asarray([counts[w] for w in words], dtype=np.float64)
    return words, p / p.sum()


def build(settings, n_chunks: int, dim: int, seed: int = 0) -> None:
    from ingest.store import KnowledgeBase, Snapshot, new_store

    rng = np.random.default_rng(seed)
    zh, zp = _zh_vocab()
    en, ep = _en_vocab()
    zcdf, ecdf = np.cumsum(zp), np.cumsum(ep)
    zcdf[-1] = ecdf[-1] = 1.0
    kb = KnowledgeBase(settings)
    snap = Snapshot(manifest=kb.empty_manifest())
    snap.manifest["embedding"] = {"name": "multilingual-e5-small", "dim": dim}
    store = new_store(None, dim)
    n_docs = 2000
    per_doc = n_chunks // n_docs
    for d in range(n_docs):
        chinese = d % 2 == 0
        doc_id = f"doc{d:05d}"
        ids, pairs, metas = [], [], []
        vecs = rng.normal(size=(per_doc, dim)).astype(np.float32)
        vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
        words, cdf = (zh, zcdf) if chinese else (en, ecdf)
        draws = np.searchsorted(cdf, rng.random(per_doc * 120))  # sampling by frequency, all at once
        for c in range(per_doc):
            picked = [words[i] for i in draws[c * 120: c * 120 + int(rng.integers(60, 120))]]
            if chinese:
                text = "".join(picked) + "。"
                clause = f"第{c // 5 + 1}章 > 第{c + 1}条"
            else:
                text = " ".join(picked) + "."
                clause = f"ARTICLE {c // 5 + 1} > Section {c // 5 + 1}.{c % 5 + 1}"
            cid = f"{doc_id}:synth:{c:04d}"
            ids.append(cid)
            pairs.append((text, vecs[c].tolist()))
            metas.append({"chunk_id": cid, "doc_id": doc_id, "source": f"{doc_id}.{'pdf' if chinese else 'md'}",
                          "page": c // 3 if chinese else None, "clause": clause, "department": f"dept{d % 4}"})
        store.add_embeddings(pairs, metas, ids)
        snap.documents[doc_id] = {"doc_id": doc_id, "source": metas[0]["source"], "path": f"/synthetic/{doc_id}",
                                  "sha256": doc_id, "format": "pdf" if chinese else "markdown",
                                  "title": f"synthetic {d}", "pages": per_doc // 3, "chunks": per_doc,
                                  "tokens": 0, "chunk_ids": ids, "department": f"dept{d % 4}"}
    snap.store = store
    with kb.acquire():
        kb.commit(snap)


def _queries(n: int, seed: int = 1) -> list[str]:
    rng = np.random.default_rng(seed)
    zh, zp = _zh_vocab()
    en, ep = _en_vocab()
    out = []
    for i in range(n):
        if i % 2 == 0:
            out.append("".join(rng.choice(zh, size=int(rng.integers(3, 7)), p=zp)) + "？")
        else:
            out.append(" ".join(rng.choice(en, size=int(rng.integers(4, 10)), p=ep)) + "?")
    return out


def _stats(name: str, samples: list[float]) -> dict[str, object]:
    qs = statistics.quantiles(samples, n=100)
    return {"leg": name, "p50_ms": round(qs[49], 1), "p95_ms": round(qs[94], 1),
            "mean_ms": round(statistics.mean(samples), 1)}


def _milvus_settings(settings):
    return settings.model_copy(update={"vector_store": "milvus", "milvus_uri": str(settings.home / "milvus.db")})


def _build(settings, n_chunks: int, embedding_model: str) -> dict[str, object]:
    from ingest.embeddings import load_embeddings

    t0 = time.perf_counter()
    build(settings, n_chunks, load_embeddings(embedding_model).dim)
    return {"seconds": time.perf_counter() - t0}


def _copy(settings) -> dict[str, object]:
    """The synthetic knowledge base copied into Milvus Lite (same chunks, vectors and BM25 tokens)."""
    from ingest import lexical
    from ingest.store import KnowledgeBase, Snapshot

    t0 = time.perf_counter()
    snapshot = KnowledgeBase(settings).load()
    kb = KnowledgeBase(_milvus_settings(settings))
    with kb.acquire():
        kb.commit(Snapshot(manifest=snapshot.manifest, store=snapshot.store),
                  tokens=lexical.load_terms(KnowledgeBase(settings).version_dir()))
    return {"seconds": time.perf_counter() - t0, "chunks": len(snapshot.store)}


def _serve(settings, ready) -> None:
    """Serve the Milvus Lite file (its server runs inside the process that opens it) until terminated: the
    deployment's Milvus, apart from the app process measured."""
    from ingest.store import KnowledgeBase

    KnowledgeBase(settings).current_version()  # opens the file: starts its server, loads its collections
    ready.put(os.getpid())
    while True:
        time.sleep(60)


def _rss_mb(pid: int | str = "self", field: str = "VmRSS") -> float:
    """Resident memory of a process now (VmRSS) or at its peak (VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def measure(settings, store: str, embedding_model: str, queries: list[str], k: int) -> dict[str, object]:
    """One store's figures, in a process of its own (run_isolated)."""
    import pymilvus  # noqa: F401  (the client library is not the knowledge base's cost: loaded for both stores)

    from assistant.chain.retrieval import HybridRetriever
    from ingest.embeddings import load_embeddings

    emb = load_embeddings(embedding_model)
    emb.embed_query("warm-up")
    before = _rss_mb()
    t0 = time.perf_counter()
    retriever = HybridRetriever(settings)
    load_s = time.perf_counter() - t0
    reader_mb = _rss_mb() - before
    assert retriever.bm25_loaded, "the version's BM25 index should have been loaded, not rebuilt"
    n = max(20, 4 * k)
    retriever.retrieve(queries[0], k=k)  # warm-up: jieba's dictionary, FAISS threads
    engine = "FAISS" if store == "faiss" else "Milvus"
    legs: dict[str, list[float]] = {"embed query (E5)": [], f"dense search ({engine})": [],
                                    "BM25 (tokens + scores)": [], "hybrid, query embedded": [],
                                    "hybrid, all in": [], "hybrid, dept filter": []}
    for q in queries:
        t = time.perf_counter()
        vec = np.asarray([emb.embed_query(q)], dtype=np.float32)
        embed_ms = (time.perf_counter() - t) * 1000
        legs["embed query (E5)"].append(embed_ms)
        t = time.perf_counter()
        retriever._dense_by_vector(vec, n, None)
        legs[f"dense search ({engine})"].append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        retriever._sparse(q, n, None)
        legs["BM25 (tokens + scores)"].append((time.perf_counter() - t) * 1000)
        retriever._query_vectors[q] = vec  # the retriever's own cache: the rest of retrieve() alone
        t = time.perf_counter()
        retriever.retrieve(q, k=k)
        rest = (time.perf_counter() - t) * 1000
        legs["hybrid, query embedded"].append(rest)
        legs["hybrid, all in"].append(embed_ms + rest)
        t = time.perf_counter()
        retriever.retrieve(q, k=k, departments=["dept1", None])
        legs["hybrid, dept filter"].append(embed_ms + (time.perf_counter() - t) * 1000)
    return {"rows": [{"store": store, **_stats(name, v)} for name, v in legs.items()],
            "memory": {"store": store, "chunks": retriever._n, "load_s": round(load_s, 2),
                       "reader_mb": round(reader_mb), "process_mb": round(_rss_mb())}}


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--store", choices=["faiss", "milvus", "both"], default="both")
    p.add_argument("--chunks", type=int, default=100_000)
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--k", type=int, default=5)
    p.add_argument("--cache", default=str(ROOT / ".cache" / "bench"), help="where the synthetic KB is kept")
    args = p.parse_args()
    from core.settings import Settings
    from ingest.store import KnowledgeBase

    home = Path(args.cache) / f"latency-{args.chunks}"
    settings = Settings(home=home, embedding_model=args.embedding_model, vector_store="faiss")
    if not KnowledgeBase(settings).exists():  # each step in a process of its own: this one holds nothing
        built = run_isolated(_build, settings, args.chunks, args.embedding_model)
        print(f"built the synthetic knowledge base ({args.chunks} chunks) in {built['seconds']:.0f} s, "
              f"peak RSS {built['peak_rss_mb']:.0f} MB")
    queries = _queries(args.queries)
    results = []
    if args.store in ("faiss", "both"):
        results.append(run_isolated(measure, settings, "faiss", args.embedding_model, queries, args.k))
        results[-1]["memory"].update(server_mb=0, server_peak_mb=0)
    if args.store in ("milvus", "both"):
        target = _milvus_settings(settings)
        ctx = mp.get_context("spawn")
        ready = ctx.Queue()
        server = ctx.Process(target=_serve, args=(target, ready), daemon=True)
        server.start()  # first: every other process (this one too) is its client
        try:
            ready.get(timeout=1800)
            if not KnowledgeBase(target).exists():
                copied = run_isolated(_copy, settings)
                print(f"copied {copied['chunks']} chunks into Milvus Lite in {copied['seconds']:.0f} s, "
                      f"peak RSS {copied['peak_rss_mb']:.0f} MB (the server's peak includes the copy)")
            results.append(run_isolated(measure, target, "milvus", args.embedding_model, queries, args.k))
            results[-1]["memory"].update(server_mb=round(_rss_mb(server.pid)),
                                         server_peak_mb=round(_rss_mb(server.pid, "VmHWM")))
        finally:
            server.terminate()
            server.join()
    print_table(f"query latency, {args.chunks} chunks, embedding {args.embedding_model}",
                [r for res in results for r in res["rows"]], ["store", "leg", "p50_ms", "p95_ms", "mean_ms"])
    print_table("opening the knowledge base (one app process)",
                [{**res["memory"], "peak_rss_mb": res["peak_rss_mb"]} for res in results],
                ["store", "chunks", "load_s", "reader_mb", "process_mb", "peak_rss_mb", "server_mb",
                 "server_peak_mb"])


if __name__ == "__main__":
    main()
