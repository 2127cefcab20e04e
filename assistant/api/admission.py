"""Backpressure in front of the engine: at most `slots` answers generated at once and `queue` waiting; one more is
refused at once (`EngineBusy`, answered 503 with Retry-After), never left to wait until the client times out.

Only work that needs the model passes the gate (the chain enters it after the answer cache missed), so answers the
cache serves never wait behind generation."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from core.errors import TurnRefused


class EngineBusy(TurnRefused):
    def __init__(self, retry_after_s: float, waiting: int) -> None:
        super().__init__(f"the engine is busy ({waiting} answers waiting); retry in {retry_after_s:.0f} s")
        self.retry_after_s = max(1, round(retry_after_s))


class EngineGate:
    """A counting gate with a bounded queue, safe across threads; `service_s` is a running mean of how long one
    answer holds a slot (the Retry-After estimate)."""

    def __init__(self, slots: int, queue: int) -> None:
        self.slots, self.queue = slots, queue
        self.busy = self.waiting = 0
        self.service_s = 5.0
        self._cond = threading.Condition()

    def retry_after(self) -> float:
        return self.service_s * (self.waiting + 1) / self.slots

    @contextmanager
    def __call__(self) -> Iterator[None]:
        with self._cond:
            if self.busy >= self.slots:
                if self.waiting >= self.queue:
                    raise EngineBusy(self.retry_after(), self.waiting)
                self.waiting += 1
                try:
                    while self.busy >= self.slots:
                        self._cond.wait()
                finally:
                    self.waiting -= 1
            self.busy += 1
        t0 = time.perf_counter()
        try:
            yield
        finally:
            with self._cond:
                self.busy -= 1
                self.service_s = 0.8 * self.service_s + 0.2 * (time.perf_counter() - t0)
                self._cond.notify()
