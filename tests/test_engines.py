"""Several OpenAI-compatible engines behind the `openai` backend: requests spread over the healthy ones, an engine
that dies is skipped (the request that found it dead goes to the next), one that comes back is used again after a
health check, an adapter goes to the engine that lists it, and with every engine down the turn says so."""

from __future__ import annotations

import time
from typing import Any

from assistant.backends import make_backend
from assistant.backends.engines import EnginePool
from assistant.chain import Assistant
from tests.chain_env import A_RAG, Q_RAG, STAFF
from tests.openai_server import serve


def _assistant(env: dict, urls: list[str], **update: Any) -> Assistant:
    settings = env["settings"].model_copy(update={
        "backend": "openai", "openai_base_urls": urls, "openai_model": "base", "adapter": "claims@v1",
        "engine_health_interval_s": 0.3, **update})
    backend = make_backend(settings)
    local: Assistant = env["assistant"]
    return Assistant(settings, backend, local.tools, local.audit, backend.name)


def test_requests_spread_fail_over_and_come_back(chain_env: dict) -> None:
    seen_a: list[dict[str, Any]] = []
    seen_b: list[dict[str, Any]] = []
    a, url_a = serve(chain_env["runtime"], "base", seen_a)
    b, url_b = serve(chain_env["runtime"], "base", seen_b)
    try:
        assistant = _assistant(chain_env, [url_a, url_b])
        pool: EnginePool = assistant.backend.pool  # type: ignore[attr-defined]
        for _ in range(4):
            ans = assistant.ask(Q_RAG, STAFF)
            assert ans.error is None and ans.model_answer == A_RAG
        assert seen_a and seen_b  # both engines served

        port_a = a.server_address[1]
        a.shutdown()
        a.server_close()  # engine A is gone: its port refuses
        before_b = len(seen_b)
        for _ in range(3):
            ans = assistant.ask(Q_RAG, STAFF)
            assert ans.error is None and ans.model_answer == A_RAG  # the request that found A dead went to B
        assert len(seen_b) > before_b
        assert [e["up"] for e in pool.status()] == [False, True]

        seen_a.clear()
        a, _ = serve(chain_env["runtime"], "base", seen_a, port=port_a)  # A restarts on its port
        time.sleep(0.4)  # past the health-check interval: the next choice probes A again
        for _ in range(2):
            assert assistant.ask(Q_RAG, STAFF).error is None
        assert seen_a and [e["up"] for e in pool.status()] == [True, True]
    finally:
        a.shutdown()
        b.shutdown()


def test_adapter_goes_to_the_engine_that_lists_it(chain_env: dict) -> None:
    seen_a: list[dict[str, Any]] = []
    seen_b: list[dict[str, Any]] = []
    a, url_a = serve(chain_env["runtime"], "base", seen_a)
    b, url_b = serve(chain_env["runtime"], "base", seen_b, models=["claims@v1"])
    try:
        assistant = _assistant(chain_env, [url_a, url_b])
        for _ in range(3):
            ans = assistant.ask(Q_RAG, STAFF)
            assert ans.error is None and ans.adapter == "claims@v1"
        assert not seen_a and {r["model"] for r in seen_b} == {"claims@v1"}
    finally:
        a.shutdown()
        b.shutdown()


def test_every_engine_down_is_a_clear_error(chain_env: dict) -> None:
    a, url_a = serve(chain_env["runtime"], "base")
    b, url_b = serve(chain_env["runtime"], "base")
    for s in (a, b):
        s.shutdown()
        s.server_close()
    assistant = _assistant(chain_env, [url_a, url_b])
    ans = assistant.ask(Q_RAG, STAFF)
    assert ans.status == "error" and "no model engine is answering" in ans.error
    assert url_a in ans.error and url_b in ans.error
    assert "Traceback" not in ans.error


def test_engine_dying_mid_answer_is_answered_afresh_by_another(chain_env: dict) -> None:
    seen_a: list[dict[str, Any]] = []
    seen_b: list[dict[str, Any]] = []
    a, url_a = serve(chain_env["runtime"], "base", seen_a, die_after=f'"answer":"{A_RAG[0]}')  # dies mid-answer
    b, url_b = serve(chain_env["runtime"], "base", seen_b)
    try:
        assistant = _assistant(chain_env, [url_a, url_b])
        events: list[tuple[str, Any]] = []
        ans = assistant.ask(Q_RAG, STAFF, on_event=lambda kind, payload: events.append((kind, payload)))
        assert seen_a and seen_b  # engine A took the request first and died in it
        assert ans.error is None and ans.status == "complete" and ans.model_answer == A_RAG
        kinds = [k for k, p in events]
        cut = max(i for i, (k, p) in enumerate(events) if (k, p) == ("status", "retracted"))
        assert "token" in kinds[:cut]  # part of the answer had reached the reader before engine A died
        assert "".join(p for k, p in events[cut:] if k == "token") == A_RAG  # what stands after the retraction
        assert [e["up"] for e in assistant.backend.pool.status()] == [False, True]  # type: ignore[attr-defined]
    finally:
        a.shutdown()
        b.shutdown()
