"""Locust users of `bench/load.py`: staff applications calling the API with the traffic mix of
bench/data/load_mix.json (popular questions repeated and reworded, look-ups, unanswerable questions, some streamed).

Each request's outcome is also appended as one JSON line to $LOAD_RECORDS (kind, status, latency, time to first
answer text, whether the cache served it), which `bench/load.py` summarises. A 429 or 503 is honoured as real
clients do: the user waits its Retry-After (at most $LOAD_MAX_BACKOFF_S) before the next request.
"""

from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path

import requests
from locust import HttpUser, constant, constant_pacing, task

MIX = json.loads((Path(__file__).parent / "data" / "load_mix.json").read_text(encoding="utf-8"))
KEYS = os.environ["LOAD_KEYS"].split(",")
CACHE = os.environ.get("LOAD_CACHE", "on") == "on"
RECORDS = os.environ["LOAD_RECORDS"]
MAX_BACKOFF = float(os.environ.get("LOAD_MAX_BACKOFF_S", "5"))
KINDS, WEIGHTS = zip(*(json.loads(os.environ.get("LOAD_WEIGHTS") or "null") or MIX["weights"]).items(), strict=True)


def _record(**row: object) -> None:
    with open(RECORDS, "a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")


PACING = float(os.environ.get("LOAD_PACING_S") or 0)  # seconds between a user's requests (0: none, back to back)
FEEDBACK = float(os.environ.get("LOAD_FEEDBACK_SHARE") or 0)  # share of answers the client then rates


class Staff(HttpUser):
    wait_time = constant_pacing(PACING) if PACING else constant(0)

    def on_start(self) -> None:
        self.key = random.choice(KEYS)
        self.rng = random.Random()

    @task
    def ask(self) -> None:
        kind = self.rng.choices(KINDS, WEIGHTS)[0]
        question = self.rng.choice(MIX[kind])
        stream = self.rng.random() < MIX["stream_share"]
        body = {"model": "default", "messages": [{"role": "user", "content": question}], "stream": stream,
                "cache": CACHE}
        headers = {"Authorization": f"Bearer {self.key}"}
        t0 = time.perf_counter()
        first = None
        cached = None
        audit_id = None
        name = f"chat/{kind}" + ("/stream" if stream else "")
        with self.client.post("/v1/chat/completions", json=body, headers=headers, stream=stream, name=name,
                              catch_response=True, timeout=300) as resp:
            status = resp.status_code
            error = None
            if status == 200 and stream:
                try:
                    for line in resp.iter_lines():
                        if not line or not line.startswith(b"data: ") or line == b"data: [DONE]":
                            continue
                        event = json.loads(line[6:])
                        if "error" in event:
                            error = event["error"].get("message")
                            break
                        delta = (event.get("choices") or [{}])[0].get("delta") or {}
                        if delta.get("content") and first is None:
                            first = time.perf_counter() - t0
                        if "cached" in event:
                            cached = event["cached"]
                            audit_id = event.get("audit_id")
                except requests.RequestException as exc:  # the server went away mid-stream: an error, recorded
                    error, cached, audit_id = f"stream broken: {type(exc).__name__}", None, None
            elif status == 200:
                data = resp.json()
                cached, audit_id = data.get("cached"), data.get("audit_id")
                first = time.perf_counter() - t0
            latency = time.perf_counter() - t0
            if status in (429, 503):
                resp.success()  # counted apart from errors
            elif status != 200 or error:
                resp.failure(error or resp.text[:200])
            else:
                resp.success()
            _record(kind=kind, stream=stream, status=status, error=error, latency=latency, first=first,
                    cached=cached, audit_id=audit_id, t=time.time())
            if status in (429, 503):
                time.sleep(min(MAX_BACKOFF, float(resp.headers.get("Retry-After", "1"))))
        if status == 200 and not error and audit_id and self.rng.random() < FEEDBACK:
            self.rate(audit_id, headers)

    def rate(self, audit_id: int, headers: dict[str, str]) -> None:
        body = {"audit_id": audit_id, "rating": self.rng.choice((1, -1)), "comment": "bench/load_locustfile.py"}
        t0 = time.perf_counter()
        with self.client.post("/v1/feedback", json=body, headers=headers, name="feedback", catch_response=True,
                              timeout=60) as resp:
            ok = resp.status_code == 200
            (resp.success if ok else resp.failure)(*(() if ok else (resp.text[:200],)))
            _record(kind="feedback", stream=False, status=resp.status_code, error=None if ok else resp.text[:200],
                    latency=time.perf_counter() - t0, first=None, cached=None, audit_id=audit_id,
                    feedback_id=resp.json().get("id") if ok else None, t=time.time())
