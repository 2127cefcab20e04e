"""Several OpenAI-compatible engines serving the same model: which one takes a request.

Invariants: a request goes only to an engine not marked down; among those, one that lists the requested adapter
among its models is preferred, then the least busy (fewest requests in flight from this process). An engine is
marked down when a request to it fails before any text came back, and is probed again (GET /models) no sooner than
`interval` seconds later; a probe that answers brings it back. When every engine is down the caller gets a clear
error naming them. The state is per process: app servers stay stateless, each keeps its own view.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from core.errors import AssistantError

__all__ = ["Engine", "EnginePool", "NoEngine"]


class NoEngine(AssistantError):
    """No engine can take the request now (all down)."""


@dataclass
class Engine:
    url: str
    up: bool = True
    in_flight: int = 0
    checked: float = 0.0  # monotonic time of the last probe or failure
    models: set[str] = field(default_factory=set)  # names the engine lists (adapters it serves), from the last probe
    served: int = 0
    failures: int = 0
    error: str = ""


class EnginePool:
    def __init__(self, urls: list[str], api_key: str | None = None, interval: float = 5.0,
                 probe_timeout: float = 2.0) -> None:
        if not urls:
            raise AssistantError("no engine URL configured: set ASSISTANT_OPENAI_BASE_URL or "
                                 "ASSISTANT_OPENAI_BASE_URLS")
        self.engines = [Engine(u.rstrip("/")) for u in dict.fromkeys(urls)]
        self.api_key, self.interval, self.probe_timeout = api_key, interval, probe_timeout
        self._lock = threading.Lock()

    # ---- health ------------------------------------------------------------------------------------
    def probe(self, engine: Engine) -> bool:
        """GET /models: up when it answers 200 with a JSON list; records the model names it serves."""
        req = urllib.request.Request(f"{engine.url}/models")
        if self.api_key:
            req.add_header("Authorization", f"Bearer {self.api_key}")
        try:
            with urllib.request.urlopen(req, timeout=self.probe_timeout) as r:
                names = {m.get("id", "") for m in json.loads(r.read()).get("data", [])}
        except (OSError, ValueError) as exc:
            with self._lock:
                engine.checked = time.monotonic()
                if isinstance(exc, TimeoutError) or isinstance(getattr(exc, "reason", None), TimeoutError):
                    return engine.up  # slow to answer (a server that answers one request at a time): not gone
                engine.up, engine.error = False, f"{type(exc).__name__}: {exc}"
            return False
        with self._lock:
            engine.up, engine.checked, engine.models, engine.error = True, time.monotonic(), names, ""
        return True

    def mark_down(self, engine: Engine, reason: str) -> None:
        with self._lock:
            engine.up, engine.checked, engine.error = False, time.monotonic(), reason
            engine.failures += 1

    def _due(self) -> list[Engine]:
        now = time.monotonic()
        with self._lock:
            return [e for e in self.engines if not e.checked or (not e.up and now - e.checked >= self.interval)]

    # ---- choice ------------------------------------------------------------------------------------
    def pick(self, model: str | None, exclude: set[str] = frozenset()) -> Engine:  # type: ignore[assignment]
        """The engine for one request (raises NoEngine when none is up)."""
        for engine in self._due():  # engines down long enough are probed again before choosing
            self.probe(engine)
        with self._lock:
            up = [e for e in self.engines if e.up and e.url not in exclude]
            if not up:
                raise NoEngine("no model engine is answering (" + "; ".join(
                    f"{e.url}: {e.error or 'down'}" for e in self.engines) + "); check that they are running")
            listing = [e for e in up if model and model in e.models]
            best = min(listing or up, key=lambda e: (e.in_flight, e.served))
            best.in_flight += 1
            best.served += 1
            return best

    def load_adapter(self, engine: Engine, name: str, path: str) -> bool:
        """Asks an engine to load a LoRA adapter at run time (vLLM's POST /load_lora_adapter, with
        VLLM_ALLOW_RUNTIME_LORA_UPDATING): True when it now serves `name`. `path` must be readable by the engine
        (the shared adapters folder)."""
        body = json.dumps({"lora_name": name, "lora_path": path}).encode()
        req = urllib.request.Request(f"{engine.url}/load_lora_adapter", data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
        if self.api_key:
            req.add_header("Authorization", f"Bearer {self.api_key}")
        try:
            with urllib.request.urlopen(req, timeout=60):
                pass
        except (OSError, urllib.error.URLError):  # an engine without run-time loading: it decides what it serves
            return False
        with self._lock:
            engine.models.add(name)
        return True

    def release(self, engine: Engine) -> None:
        with self._lock:
            engine.in_flight -= 1

    @contextmanager
    def use(self, model: str | None, exclude: set[str] = frozenset()) -> Iterator[Engine]:  # type: ignore[assignment]
        engine = self.pick(model, exclude)
        try:
            yield engine
        finally:
            self.release(engine)

    def status(self) -> list[dict[str, object]]:
        with self._lock:
            return [{"url": e.url, "up": e.up, "in_flight": e.in_flight, "served": e.served, "failures": e.failures,
                     "error": e.error} for e in self.engines]
