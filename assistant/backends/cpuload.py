"""How many CPU cores other programs leave free: llama.cpp's thread count follows it per request.

llama.cpp's threads meet at a barrier after every layer, so one thread sharing a core with another busy program
makes all of them wait: on 2 cores, 2 threads beside one busy job fell to 0.3-2 tok/s while 1 thread held
~40 tok/s; on a quiet machine 2 threads prefill almost twice as fast as 1. A fixed count is wrong half the time.

The monitor samples /proc/stat (all cores) and /proc/self/stat (this process) every `interval_s` in a daemon
thread; what other processes used is the machine's busy time minus ours. Where /proc is missing (not Linux)
nothing is measured and the caller keeps its fixed default.
"""

from __future__ import annotations

import os
import threading
import time


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _machine_busy_s() -> tuple[float, float] | None:
    """(busy, total) CPU seconds of the whole machine since boot, from /proc/stat."""
    try:
        with open("/proc/stat", encoding="ascii") as fh:
            fields = [float(x) for x in fh.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    tick = os.sysconf("SC_CLK_TCK")
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)  # idle + iowait
    total = sum(fields[:8])  # guest time is already inside user time
    return (total - idle) / tick, total / tick


def _own_busy_s() -> float:
    t = os.times()
    return t.user + t.system


class CpuMonitor:
    """Cores used by other programs, averaged over the last few seconds (0.0 until the first sample)."""

    def __init__(self, interval_s: float = 0.5, smoothing: float = 0.5) -> None:
        self.interval_s = interval_s
        self.smoothing = smoothing
        self.others = 0.0
        self.available = _machine_busy_s() is not None
        self._last: tuple[float, float, float] | None = None
        if self.available:
            self._sample()
            threading.Thread(target=self._run, name="cpu-monitor", daemon=True).start()

    def _sample(self) -> None:
        machine = _machine_busy_s()
        if machine is None:
            return
        busy, total = machine
        now = (busy, total, _own_busy_s())
        if self._last is not None:
            d_busy, d_total, d_own = (a - b for a, b in zip(now, self._last, strict=True))
            n = cores()
            wall = d_total / max(1, os.cpu_count() or 1)  # total counts every online core
            if wall > 0:
                others = max(0.0, min(float(n), (d_busy - d_own) / wall))
                self.others = self.smoothing * self.others + (1 - self.smoothing) * others
        self._last = now

    def _run(self) -> None:
        while True:
            time.sleep(self.interval_s)
            self._sample()

    def free_cores(self) -> float:
        return max(0.0, cores() - self.others)


def threads_for(free: float, busy_requests: int, total: int) -> int:
    """Threads for one more request: the cores nobody else uses, shared with our own requests in flight."""
    spare = int(free + 0.35)  # a core 65% free is worth a thread; less makes every thread wait for it
    return max(1, min(total, spare // (busy_requests + 1) if spare else 1))
