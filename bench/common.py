"""Shared helpers for the benchmarks: data location, peak memory, a child process per measured config."""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def shared_dir(arg: str | None) -> Path:
    path = Path(arg) if arg else ROOT.parent / "shared"
    if not (path / "data").exists():
        raise SystemExit(f"evaluation data not found under {path}/data; pass --shared PATH")
    return path / "data"


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--shared", help="path of the shared/ folder (default: ../shared beside the repo)")
    p.add_argument("--embedding-model", default="multilingual-e5-small")
    return p


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _child(fn: Callable[..., dict[str, Any]], args: tuple, queue: mp.Queue) -> None:
    result = fn(*args)
    result["peak_rss_mb"] = round(peak_rss_mb(), 1)
    queue.put(result)


def run_isolated(fn: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    """Run one measured configuration in a fresh process so its peak RSS is its own."""
    ctx = mp.get_context("spawn")
    queue: mp.Queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(fn, args, queue))
    proc.start()
    import queue as queue_mod

    while True:  # a child that dies (an exception, the OOM killer) must not hang the benchmark
        try:
            result = queue.get(timeout=5)
            break
        except queue_mod.Empty:
            if not proc.is_alive():
                raise SystemExit(f"{fn.__name__} failed in its process (exit code {proc.exitcode})") from None
    proc.join()
    return result


def print_table(title: str, rows: list[dict[str, Any]], columns: list[str]) -> None:
    print(f"\n{title}")
    widths = [max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in columns]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
    for r in rows:
        print("  ".join(str(r.get(c, "")).ljust(w) for c, w in zip(columns, widths, strict=True)))
