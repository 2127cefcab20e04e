"""The chain end to end with real parts: a real FAISS + BM25 knowledge base, a real SQLite business
database and audit log, and a tiny real-architecture Qwen3 whose LoRA adapter is trained (tests/chain_env.py) on the
chain's own prompts to call tools, cite, fall for a poisoned document, recover from a malformed call
and think."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from assistant.backends.runtime import ModelRuntime
from assistant.chain import Assistant, StreamRouter, build_assistant, thinking_switch
from assistant.tools.demo.business_db import connect
from core.identity import User
from core.prompts import NO_ANSWER_EN
from finetune import jobs
from finetune.recipe import Recipe
from tests.chain_env import Q_BAD, Q_POISON, Q_RAG, Q_THINK, Q_TOOL, STAFF


@pytest.fixture(scope="module")
def env(chain_env: dict[str, Any]) -> dict[str, Any]:
    return chain_env


def test_tool_loop_answers_a_policy_question_through_the_tool(env: dict) -> None:
    a: Assistant = env["assistant"]
    events: list[tuple[str, Any]] = []
    ans = a.ask(Q_TOOL, STAFF, on_event=lambda k, p: events.append((k, p)))
    assert ans.adapter == "claims@v1"
    assert [t.name for t in ans.tool_calls] == ["get_policy_status"]
    t = ans.tool_calls[0]
    assert t.ok and t.arguments == {"policy_id": "POL-2024-0001"} and t.result["status"] == "active"
    assert ans.answer == "保单有效。" and ans.steps == 2
    streamed = "".join(p for k, p in events if k == "token")
    assert streamed == "保单有效。" and "<tool_call>" not in streamed  # markup never reaches the user
    assert any(k == "tool" for k, _ in events)
    record = a.audit.get(ans.audit_id)
    assert record["user"] == "wang" and record["adapter"] == "claims@v1" and record["model"] == str(env["tiny"])
    assert record["tool_calls"][0]["name"] == "get_policy_status" and record["tool_calls"][0]["ok"]
    assert record["tool_calls"][0]["duration_s"] >= 0 and record["latency_s"] > 0


def test_answer_cites_its_passage(env: dict) -> None:
    ans = env["assistant"].ask(Q_RAG, STAFF)
    assert ans.answer.startswith("十日内报案 [") and not ans.tool_calls
    assert [s.source for s in ans.sources] == ["claims.md"]
    d = ans.to_dict()
    assert set(d["sources"][0]) >= {"source", "page", "clause", "text"} and "95500-88" in d["sources"][0]["text"]
    assert d["sources"][0]["clause"] == "理赔规则 > 第一条 报案"
    record = env["assistant"].audit.get(ans.audit_id)
    assert record["cited"] == [ans.sources[0].chunk_id] and len(record["retrieved"]) == 2


def test_poisoned_document_cannot_trigger_a_tool_the_user_may_not_use(env: dict) -> None:
    a: Assistant = env["assistant"]
    assert "draft_email" not in {s["function"]["name"] for s in a.tools.schemas(STAFF)}
    ans = a.ask(Q_POISON, STAFF)
    assert [t.name for t in ans.tool_calls] == ["draft_email"]  # the (trained-to-be-fooled) model tried
    assert ans.tool_calls[0].denied and not ans.tool_calls[0].ok
    assert ans.answer == "无权执行。"
    with connect(env["db"]) as conn:
        assert conn.execute("SELECT COUNT(*) FROM outbox").fetchone()[0] == 0  # nothing was drafted
    assert a.audit.get(ans.audit_id)["tool_calls"][0]["denied"]


def test_malformed_call_is_answered_with_an_error_the_model_recovers_from(env: dict) -> None:
    ans = env["assistant"].ask(Q_BAD, STAFF)
    assert ans.steps == 3 and [t.name for t in ans.tool_calls] == ["calculator"]
    assert ans.tool_calls[0].result == {"result": 4} and ans.answer == "结果是 4。" and ans.error is None


def test_thinking_mode_separates_reasoning_from_the_answer(env: dict) -> None:
    a: Assistant = env["assistant"]
    thoughts: list[str] = []
    ans = a.ask(Q_THINK, STAFF, think=True, on_event=lambda k, p: k == "thinking" and thoughts.append(p))
    assert ans.thinking == "850-100=750，750×0.9=675。" and "".join(thoughts).strip() == ans.thinking
    # the uncited "675 元。" is replaced by the grounding guard (tests/test_guard.py): no passage sentence shares a
    # word with the question, so by the refusal
    assert "<think>" not in ans.answer and ans.guard["status"] == "refused"
    runtime: ModelRuntime = env["runtime"]
    on = runtime.render([{"role": "user", "content": "q"}], None, True)
    off = runtime.render([{"role": "user", "content": "q"}], None, False)
    assert off == on + "<think>\n\n</think>\n\n"
    assert thinking_switch("问题 /think", False) == ("问题", True)
    assert thinking_switch("/no_think 问题", True) == ("问题", False)


def test_adapters_switch_per_request_without_reloading(env: dict) -> None:
    settings, runtime, a = env["settings"], env["runtime"], env["assistant"]
    recipe = Recipe(base=str(env["tiny"]), max_steps=1, batch_size=2, eval_ratio=0.0, dropout=0.0)
    hr = jobs.train_adapter("hr", [env["data"]], recipe, settings)
    before = id(runtime.lm.model)
    ans_hr = a.ask(Q_TOOL, STAFF, adapter=hr.ref)
    ans_claims = a.ask(Q_TOOL, STAFF)
    ans_base = a.ask(Q_TOOL, STAFF, adapter="none")
    assert (ans_hr.adapter, ans_claims.adapter, ans_base.adapter) == ("hr@v1", "claims@v1", None)
    assert set(runtime.adapters) == {"claims-v1", "hr-v1"} and id(runtime.lm.model) == before
    assert ans_claims.answer == "保单有效。" and ans_base.tool_calls != ans_claims.tool_calls


def test_nothing_relevant_means_no_invented_answer(env: dict) -> None:
    ans = env["assistant"].ask("What is the office Wi-Fi password?", User("x", "staff"))
    assert not ans.relevant and ans.sources == [] and ans.answer == NO_ANSWER_EN


def test_audit_log_is_append_only(env: dict) -> None:
    path = env["settings"].audit_db
    conn = sqlite3.connect(str(path))
    try:
        assert conn.execute("SELECT COUNT(*) FROM turns").fetchone()[0] >= 5
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            conn.execute("UPDATE turns SET answer = 'edited'")
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            conn.execute("DELETE FROM turns")
    finally:
        conn.rollback()
        conn.close()


def test_stream_router_holds_back_partial_tags() -> None:
    out: list[tuple[str, str]] = []
    r = StreamRouter(lambda k, p: out.append((k, p)))
    for piece in ["<th", "ink>\nstep 1", "</thi", "nk>\n\nAnswer [1", "] done", "<tool", "_call>{...}"]:
        r.feed(piece)
    r.finish()
    thinking = "".join(p for k, p in out if k == "thinking")
    answer = "".join(p for k, p in out if k == "token")
    assert thinking.strip() == "step 1" and answer == "Answer [1] done"


def test_stream_router_never_shows_a_bare_json_tool_call() -> None:
    def route(pieces: list[str]) -> str:
        out: list[str] = []
        r = StreamRouter(lambda k, p: out.append(p) if k == "token" else None)
        for piece in pieces:
            r.feed(piece)
        r.finish()
        return "".join(out)

    # what the offline model writes instead of <tool_call> tags
    assert route(['\n{"name": "get_policy_status", ', '"arguments": {"policy_id": "POL-2024-0003"}}']) == ""
    assert route(['{"totals": ', '[1, 2]} is the shape']) == '{"totals": [1, 2]} is the shape'  # not a call


def test_empty_knowledge_base_and_forbidden_kb_are_clear_errors(env: dict, tmp_path: Path) -> None:
    a: Assistant = env["assistant"]
    ans = a.ask("anything", STAFF, kb="empty")
    assert ans.error and "knowledge base 'empty' is empty" in ans.error and "ingest add" in ans.error
    a.kb_access["default"] = {"claims"}
    try:
        ans = a.ask(Q_RAG, STAFF)
        assert ans.error and "may not use knowledge base" in ans.error
    finally:
        a.kb_access.clear()


def test_openai_compatible_backend_over_http(env: dict) -> None:
    """The `openai` backend against a real HTTP server that serves the adapter by model name (as vLLM does)."""
    from assistant.backends.openai import openai_chat
    from tests.openai_server import serve

    server, url = serve(env["runtime"], "base")
    try:
        settings = env["settings"].model_copy(update={
            "backend": "openai", "openai_base_url": url, "openai_model": "base", "adapter": "claims@v1"})
        local: Assistant = env["assistant"]
        a = Assistant(settings, openai_chat(settings, None, False), local.tools, local.audit, f"openai:{url}")
        tokens: list[str] = []
        ans = a.ask(Q_TOOL, STAFF, on_event=lambda k, p: k == "token" and tokens.append(p))
        assert ans.adapter == "claims@v1" and ans.error is None
        assert [t.name for t in ans.tool_calls] == ["get_policy_status"] and ans.tool_calls[0].ok
        assert ans.answer == "保单有效。" and "".join(tokens) == "保单有效。"
        assert a.audit.get(ans.audit_id)["model"] == f"openai:{url}"
    finally:
        server.shutdown()


def test_kb_access_comes_from_settings(env: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    from core.settings import load_settings

    monkeypatch.setenv("ASSISTANT_KB_ACCESS", '{"default": ["claims"]}')
    settings = load_settings(home=env["settings"].home)
    a = build_assistant(settings, runtime=env["runtime"], tools=env["assistant"].tools)
    assert a.kb_access == {"default": {"claims"}}
    ans = a.ask(Q_RAG, STAFF)
    assert ans.error and "may not use knowledge base 'default'" in ans.error
    assert a.ask(Q_RAG, User("li", "claims", "claims")).error is None
