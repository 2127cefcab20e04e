"""Prometheus metrics of the API. With several worker processes (PROMETHEUS_MULTIPROC_DIR set by `assistant
serve`), each writes its own files and `/metrics` sums them."""

from __future__ import annotations

import os

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64)

REQUEST_S = Histogram("assistant_request_seconds", "Whole request time", ["endpoint", "cached"], buckets=_BUCKETS)
FIRST_TOKEN_S = Histogram("assistant_first_token_seconds", "Time to the first answer text of a streamed request",
                          ["cached"], buckets=_BUCKETS)
TOKENS = Counter("assistant_tokens", "Model tokens", ["kind"])
RESPONSES = Counter("assistant_responses", "Responses by status class", ["endpoint", "status"])
CACHE = Counter("assistant_cache_lookups", "Answer cache lookups", ["result"])
QUEUE = Gauge("assistant_queue_depth", "Answers waiting for the engine", multiprocess_mode="livesum")
BUSY = Gauge("assistant_engine_busy", "Answers being generated", multiprocess_mode="livesum")


def exposition() -> tuple[bytes, str]:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST
