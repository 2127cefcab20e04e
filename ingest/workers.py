"""Several ingest workers for one knowledge base: worker processes parse, chunk and embed (93% of an ingest's
time is embedding); the one writer process stores what they return and commits once.

Invariant: workers never write the knowledge base. The writer holds the lock, puts every file's chunks into
the version being built and commits it as one atomic version (a collection + alias move in Milvus, a version
folder + CURRENT with FAISS), so parallel work cannot leave half a version. (Milvus Lite opens its file in
one process only, which is why the writer alone talks to the store; a Milvus server would accept inserts
from the workers too, with the same single commit.)
"""

from __future__ import annotations

import multiprocessing as mp
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from core.errors import FileRejected
from core.settings import Settings

# what a worker returns for a file: (parsed document and chunks, or the reason it was rejected;
# embedding vectors by the hash of their embedding text)
WorkerResult = tuple[Any, dict[str, list[float]]]


def _init(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)  # the workers share the machine's cores rather than each taking all


def _embed_files(settings: Settings, paths: list[Path]) -> list[tuple[Path, WorkerResult]]:
    from ingest.pipeline import FileResult, Ingestor, _embed_hash, _title_of, _Work, embedding_text

    ingestor = Ingestor(settings)
    out: list[tuple[Path, WorkerResult]] = []
    for path in paths:
        parsed = ingestor.parse(_Work(FileResult(path=path, status="added"), path, "", "", 0.0), None)
        if isinstance(parsed, FileRejected):  # sent back as plain values (the exception does not pickle)
            out.append((path, (("rejected", parsed.reason), {})))
            continue
        title = _title_of(path)
        texts: dict[str, tuple[str, int]] = {}
        for c in parsed[1]:
            text = embedding_text(title, c)
            texts.setdefault(_embed_hash(text), (text, c.tokens))
        vectors = ingestor.embed([t for t, _ in texts.values()], [n for _, n in texts.values()])
        out.append((path, (parsed, {h: list(map(float, v)) for h, v in zip(texts, vectors, strict=True)})))
    return out


def embed_in_workers(settings: Settings, paths: list[Path], workers: int) -> dict[Path, WorkerResult]:
    """Parse, chunk and embed `paths` in `workers` processes, files shared out by size."""
    shares: list[list[Path]] = [[] for _ in range(workers)]
    loads = [0] * workers
    for p in sorted(paths, key=lambda p: -p.stat().st_size):
        i = loads.index(min(loads))
        shares[i].append(p)
        loads[i] += p.stat().st_size
    shares = [s for s in shares if s]
    if not shares:
        return {}
    threads = max(1, (os.cpu_count() or 1) // len(shares))
    results: dict[Path, WorkerResult] = {}
    with ProcessPoolExecutor(len(shares), mp_context=mp.get_context("spawn"), initializer=_init,
                             initargs=(threads,)) as pool:
        for done in pool.map(_embed_files, [settings] * len(shares), shares):
            for path, res in done:
                parsed = res[0]
                if isinstance(parsed, tuple) and parsed and parsed[0] == "rejected":
                    parsed = FileRejected(path, parsed[1])
                results[path] = (parsed, res[1])
    return results
