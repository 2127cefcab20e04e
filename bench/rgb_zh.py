"""RGB Chinese retrieval: recall@5 over all questions' passages pooled, ours vs a plain baseline.

Each passage is a document. Ours: the `ingest` chunker (token-sized, CJK-aware) and embedding text.
Baseline, same embedding model, same run: RecursiveCharacterTextSplitter (500 chars, 50 overlap).
A query hits when a top-5 chunk comes from one of its positive passages.

    .venv/bin/python bench/rgb_zh.py [--limit N] [--shared ../shared]
"""

from __future__ import annotations

import json
import time

import numpy as np
from common import parser, peak_rss_mb, print_table, shared_dir


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--limit", type=int, default=0, help="only the first N questions' passages (0 = all 300)")
    args = p.parse_args()
    rows = [json.loads(line) for line in (shared_dir(args.shared) / "rgb" / "zh_refine.jsonl").read_text().splitlines()]
    if args.limit:
        rows = rows[: args.limit]
    passages: dict[str, int] = {}
    for r in rows:
        for text in r["positive"] + r["negative"]:
            passages.setdefault(text, len(passages))
    pool = list(passages)
    print(f"RGB zh: {len(rows)} questions, {len(pool)} pooled passages, embedding {args.embedding_model}")

    from langchain_text_splitters import RecursiveCharacterTextSplitter

    from core.settings import Settings
    from ingest.embeddings import load_embeddings
    from ingest.loaders.base import LoadedDocument, Page
    from ingest.pipeline import Ingestor, embedding_text

    emb = load_embeddings(args.embedding_model)
    cache: dict[str, np.ndarray] = {}

    def embed(texts: list[str]) -> np.ndarray:
        todo = [t for t in dict.fromkeys(texts) if t not in cache]
        for i in range(0, len(todo), 32):
            for t, v in zip(todo[i : i + 32], emb.embed_documents(todo[i : i + 32]), strict=True):
                cache[t] = np.asarray(v, dtype=np.float32)
        return np.stack([cache[t] for t in texts])

    ingestor = Ingestor(Settings(embedding_model=args.embedding_model), emb)
    baseline_splitter = RecursiveCharacterTextSplitter(chunk_size=500, chunk_overlap=50)
    configs = {
        "ours": lambda text: [
            (c.text, embedding_text("", c)) for c in ingestor.chunk(LoadedDocument("text", [Page(text)]))
        ],
        "baseline": lambda text: [(t, t) for t in baseline_splitter.split_text(text)],
    }
    queries = np.stack([np.asarray(emb.embed_query(r["query"]), dtype=np.float32) for r in rows])
    results = []
    for name, split in configs.items():
        t0 = time.perf_counter()
        owner: list[int] = []
        embed_texts: list[str] = []
        for text in pool:
            for _, etext in split(text):
                owner.append(passages[text])
                embed_texts.append(etext)
        matrix = embed(embed_texts)
        seconds = time.perf_counter() - t0
        scores = queries @ matrix.T
        hits5 = mrr = 0.0
        for qi, r in enumerate(rows):
            positives = {passages[t] for t in r["positive"]}
            top = np.argsort(-scores[qi])[:10]
            for rank, ci in enumerate(top, start=1):
                if owner[ci] in positives:
                    mrr += 1 / rank
                    hits5 += rank <= 5
                    break
        results.append(
            {
                "config": name,
                "chunks": len(owner),
                "build_s": round(seconds, 1),
                "recall@5": round(hits5 / len(rows), 3),
                "mrr@10": round(mrr / len(rows), 3),
            }
        )
    print_table("RGB zh retrieval (passage-level)", results, ["config", "chunks", "build_s", "recall@5", "mrr@10"])
    ours, base = results
    print(f"recall@5: ours {ours['recall@5']} vs baseline {base['recall@5']}; peak RSS {peak_rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
