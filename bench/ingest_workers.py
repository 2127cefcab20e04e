"""Parallel ingest: pages/s of `ingest add --workers N` for N = 1, 2, 4 into one knowledge base (Milvus Lite by
default), each run into a fresh one, same files; every run must end with the same chunks in one version.

Files: --docs synthetic PDFs of --pages pages each, English prose from the README and Chinese-free corpus
text (the embedding model's time dominates, as in real filings). Worker processes split the machine's cores
(torch threads = cores / workers), so on a small machine the figure shows the cost of the split; with cores
to spare (or one node per worker against a Milvus server) it shows the gain.

    .venv/bin/python bench/ingest_workers.py [--workers 1,2,4] [--docs 8] [--pages 6] [--store milvus|faiss]
"""

from __future__ import annotations

import re
import tempfile
import time
from pathlib import Path

from common import ROOT, parser, print_table


def make_files(folder: Path, docs: int, pages: int) -> list[Path]:
    from core.testing.pdfs import make_pdf

    words = re.findall(r"[A-Za-z][A-Za-z,.;:()'-]*", (ROOT / "README.md").read_text(encoding="utf-8"))
    files = []
    for d in range(docs):
        texts = []
        for p in range(pages):
            start = (d * pages + p) * 220 % max(1, len(words) - 220)
            body = " ".join(words[start:start + 220])
            texts.append(f"Section {d + 1}.{p + 1}\n" + "\n".join(body[i:i + 90] for i in range(0, len(body), 90)))
        files.append(make_pdf(folder / f"report_{d:02d}.pdf", texts))
    return files


def run(files: list[Path], home: Path, store: str, workers: int, model: str) -> dict[str, object]:
    from core.settings import Settings
    from ingest import pipeline
    from ingest.store import KnowledgeBase

    settings = Settings(home=home, vector_store=store, embedding_model=model)
    t0 = time.perf_counter()
    report = pipeline.add_paths(settings, files, workers=workers)
    seconds = time.perf_counter() - t0
    docs = KnowledgeBase(settings).read_manifest()["documents"].values()
    return {"workers": workers, "files": report.count("added"), "pages": report.pages, "chunks": report.chunks,
            "seconds": round(seconds, 1), "pages/s": round(report.pages / seconds, 2),
            "failed": len(report.failed), "embed s (this process)": report.timings.get("embed", 0.0),
            "write s": report.timings.get("write", 0.0), "_ids": sorted(c for d in docs for c in d["chunk_ids"])}


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--workers", default="1,2,4")
    p.add_argument("--docs", type=int, default=8)
    p.add_argument("--pages", type=int, default=6)
    p.add_argument("--store", choices=["milvus", "faiss"], default="milvus")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "files").mkdir()
        files = make_files(root / "files", args.docs, args.pages)
        rows = [run(files, root / f"home-{n}", args.store, int(n), args.embedding_model)
                for n in args.workers.split(",")]
    same = all(r["_ids"] == rows[0]["_ids"] for r in rows)
    base = rows[0]["pages/s"] or 1.0
    for r in rows:
        r["x of first"] = round(float(r["pages/s"]) / float(base), 2)
    print_table(f"ingest workers ({args.store}, {args.docs} PDFs x {args.pages} pages, {args.embedding_model}); "
                f"same chunks in every run: {same}", rows,
                ["workers", "files", "pages", "chunks", "seconds", "pages/s", "x of first", "embed s (this process)",
                 "write s", "failed"])


if __name__ == "__main__":
    main()
