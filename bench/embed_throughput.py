"""Passage embedding throughput: the engine called plainly (one call per batch on all cores, the baseline) vs
ours (each batch split into single-threaded calls, one per core at a time), on the same chunks, same run,
alternating rounds. Also checks that both give the same vectors (the split must change no vector).

Chunks: the demo corpus as ingest chunks it (Chinese and English), repeated to --chunks.

    .venv/bin/python bench/embed_throughput.py [--chunks 240] [--rounds 2] [--batch 48]
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
from common import ROOT, parser


def _chunks(n: int) -> list[str]:
    from core.settings import Settings
    from ingest.loaders import load_file
    from ingest.pipeline import Ingestor, _title_of, embedding_text

    texts = []
    with tempfile.TemporaryDirectory() as home:
        ingestor = Ingestor(Settings(home=Path(home)))
        for path in sorted((ROOT / "corpus").iterdir()):
            texts += [embedding_text(_title_of(path), c) for c in ingestor.chunk(load_file(path))]
    return (texts * (n // len(texts) + 1))[:n]


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--chunks", type=int, default=240)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--batch", type=int, default=48, help="chunks per embedding call of the pipeline")
    args = p.parse_args()
    from ingest.embeddings import E5Embeddings

    texts = _chunks(args.chunks)
    plain, ours = E5Embeddings(data_parallel=False), E5Embeddings()
    tokens = sum(ours.count_tokens(t) for t in texts)
    print(f"{len(texts)} chunks, {tokens} tokens, {ours.cores} cores, batches of {args.batch}")
    rates: dict[str, list[float]] = {"baseline (one call, all cores)": [], "ours (one call per core)": []}
    vectors = {}
    for _ in range(args.rounds):
        for name, model in zip(rates, (plain, ours), strict=True):
            t0 = time.perf_counter()
            out = [v for i in range(0, len(texts), args.batch) for v in model.embed_documents(texts[i:i + args.batch])]
            rates[name].append(tokens / (time.perf_counter() - t0))
            vectors[name] = np.asarray(out)
    print("| config | tokens/s (each round) | best |")
    print("|---|---|---|")
    for name, r in rates.items():
        print(f"| {name} | {' / '.join(f'{x:.0f}' for x in r)} | {max(r):.0f} |")
    base, mine = (max(r) for r in rates.values())
    diff = float(np.abs(vectors["baseline (one call, all cores)"] - vectors["ours (one call per core)"]).max())
    print(f"ours x{mine / base:.2f} the baseline's tokens/s; largest vector difference {diff:.1e}")


if __name__ == "__main__":
    main()
