"""Peak resident memory of a process tree (a parse worker and the OCR engine it runs), sampled from /proc:
what a hostile file costs the machine, measured by the tests and `bench/security_check.py`."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from types import TracebackType


def _rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass  # the process ended between listing and reading
    return 0


def _tree(pid: int) -> list[int]:
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        try:
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return pids


class PeakRss:
    """`with PeakRss(lambda: worker.pid) as m: ...` then `m.peak_mb`: the largest sum of the resident memory of
    the process and its descendants seen while the block ran (sampled every `interval_s`)."""

    def __init__(self, pid: Callable[[], int | None], interval_s: float = 0.02) -> None:
        self._pid = pid
        self._interval = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.peak_kb = 0
        self.start_kb = 0

    def _sample(self) -> None:
        pid = self._pid()
        if pid is not None:
            self.peak_kb = max(self.peak_kb, sum(_rss_kb(p) for p in _tree(pid)))

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self._sample()

    @property
    def peak_mb(self) -> float:
        return self.peak_kb / 1024

    @property
    def growth_mb(self) -> float:
        """The peak above what the tree held when the block began: what the block itself cost."""
        return max(0, self.peak_kb - self.start_kb) / 1024

    def __enter__(self) -> PeakRss:
        self._sample()
        self.start_kb = self.peak_kb
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join()
