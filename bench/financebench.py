"""FinanceBench: ingest throughput and page-level retrieval quality, ours vs a plain LangChain baseline.

Ours: `ingest` (layout-aware PDF parsing on a worker thread ahead of the embedder, structure-aware token
chunks, heading context, token-budget embedding batches), searched by the chain's own `HybridRetriever`
(default fusion, one passage per page); the time split (parse / chunk / embed / write) is printed.
Baseline, same embedding model, same run: PyPDFLoader pages -> RecursiveCharacterTextSplitter
(1000 chars, 200 overlap) -> LangChain FAISS.
A query hits when a returned chunk comes from the question's filing at an evidence page.

    .venv/bin/python bench/financebench.py [--docs N] [--shared ../shared]
"""

from __future__ import annotations

import json
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

from common import parser, print_table, run_isolated, shared_dir


def _evaluate(questions: list[dict], search) -> dict[str, float]:
    recall5 = mrr = 0.0
    for q in questions:
        evidence = {e["evidence_page_num"] for e in q["evidence"]}
        for rank, (source, first, last) in enumerate(search(q["question"]), start=1):
            if Path(source).stem == q["doc_name"] and any(first <= p <= last for p in evidence):
                mrr += 1 / rank
                recall5 += rank <= 5
                break
    n = max(len(questions), 1)
    return {"recall@5": round(recall5 / n, 3), "mrr@10": round(mrr / n, 3)}


def run_ours(pdfs: list[str], questions: list[dict], model: str) -> dict[str, Any]:
    from core.settings import Settings
    from ingest import pipeline

    with tempfile.TemporaryDirectory() as home:
        settings = Settings(home=Path(home), embedding_model=model)
        t0 = time.perf_counter()
        report = pipeline.add_paths(settings, [Path(p) for p in pdfs])
        seconds = time.perf_counter() - t0
        assert not report.failed, [(r.path, r.reason) for r in report.failed]
        from assistant.chain.retrieval import HybridRetriever

        retriever = HybridRetriever(settings)

        def search(q: str):
            return [(p.hit.source, p.hit.page, p.hit.metadata.get("page_end", p.hit.page))
                    for p in retriever.retrieve(q, k=10).passages]

        t1 = time.perf_counter()
        quality = _evaluate(questions, search)
        query_ms = (time.perf_counter() - t1) / max(len(questions), 1) * 1000
    return {
        "config": "ours",
        "pages": report.pages,
        "chunks": report.chunks,
        "ingest_s": round(seconds, 1),
        "pages/s": round(report.pages / seconds, 2),
        "chunks/s": round(report.chunks / seconds, 2),
        "query_ms": round(query_ms, 1),
        "split": report.timings,
        **quality,
    }


def run_baseline(pdfs: list[str], questions: list[dict], model: str) -> dict[str, Any]:
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    from ingest.embeddings import load_embeddings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from langchain_community.document_loaders import PyPDFLoader
        from langchain_community.vectorstores import FAISS
        from langchain_community.vectorstores.utils import DistanceStrategy

    emb = load_embeddings(model)
    t0 = time.perf_counter()
    pages = []
    for p in pdfs:
        pages.extend(PyPDFLoader(p).load())
    chunks = RecursiveCharacterTextSplitter(chunk_size=1000, chunk_overlap=200).split_documents(pages)
    texts = [c.page_content for c in chunks]
    vectors = []
    for i in range(0, len(texts), 32):
        vectors.extend(emb.embed_documents(texts[i : i + 32]))
    store = FAISS.from_embeddings(
        list(zip(texts, vectors, strict=True)),
        emb,
        metadatas=[c.metadata for c in chunks],
        distance_strategy=DistanceStrategy.MAX_INNER_PRODUCT,
    )
    seconds = time.perf_counter() - t0

    def search(q: str):
        docs = store.similarity_search_by_vector(emb.embed_query(q), k=10)
        return [(d.metadata["source"], d.metadata["page"], d.metadata["page"]) for d in docs]

    t1 = time.perf_counter()
    quality = _evaluate(questions, search)
    query_ms = (time.perf_counter() - t1) / max(len(questions), 1) * 1000
    return {
        "config": "baseline",
        "pages": len(pages),
        "chunks": len(chunks),
        "ingest_s": round(seconds, 1),
        "pages/s": round(len(pages) / seconds, 2),
        "chunks/s": round(len(chunks) / seconds, 2),
        "query_ms": round(query_ms, 1),
        **quality,
    }


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--docs", type=int, default=0, help="only the N smallest filings (0 = all)")
    args = p.parse_args()
    data = shared_dir(args.shared) / "financebench"
    pdfs = sorted((data / "pdfs").glob("*.pdf"), key=lambda f: f.stat().st_size)
    if args.docs:
        pdfs = pdfs[: args.docs]
    names = {f.stem for f in pdfs}
    lines = (data / "questions.jsonl").read_text().splitlines()
    questions = [q for q in map(json.loads, lines) if q["doc_name"] in names]
    print(f"FinanceBench: {len(pdfs)} filings, {len(questions)} questions, embedding {args.embedding_model}")
    files = [str(f) for f in pdfs]
    rows = [run_isolated(fn, files, questions, args.embedding_model) for fn in (run_ours, run_baseline)]
    cols = ["config", "pages", "chunks", "ingest_s", "pages/s", "chunks/s", "peak_rss_mb", "query_ms"]
    cols += ["recall@5", "mrr@10"]
    print_table("ingest throughput and page-level retrieval", rows, cols)
    ours, base = rows
    print(f"ours, time split (s; parse runs on a worker thread beside embed): {ours['split']}")
    for metric in ("recall@5", "mrr@10"):
        ratio = ours[metric] / base[metric] if base[metric] else float("inf")
        print(f"{metric}: ours {ours[metric]} vs baseline {base[metric]} (x{ratio:.2f})")
    print(
        f"ingest speed: ours {ours['pages/s']} pages/s vs baseline {base['pages/s']} pages/s "
        f"(x{ours['pages/s'] / base['pages/s']:.2f})"
    )


if __name__ == "__main__":
    main()
