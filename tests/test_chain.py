"""The chain end to end with real parts: a real FAISS + BM25 knowledge base, a real SQLite business
database and audit log, and a tiny real-architecture Qwen3 on the transformers engine whose LoRA adapter is trained
(tests/chain_env.py) on the chain's own prompts; its replies are constrained to the structured form (llguidance)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from assistant.backends.runtime import ModelRuntime
from assistant.chain import Assistant, build_assistant, thinking_switch
from assistant.tools.demo.business_db import connect
from core.identity import User
from core.prompts import NO_ANSWER_EN, parse_reply
from finetune import jobs
from finetune.recipe import Recipe
from tests.chain_env import A_RAG, A_TOOL, Q_POISON, Q_RAG, Q_THINK, Q_TOOL, STAFF, THOUGHT


@pytest.fixture(scope="module")
def env(chain_env: dict[str, Any]) -> dict[str, Any]:
    return chain_env


def test_a_looked_up_record_is_worded_and_cited(env: dict) -> None:
    a: Assistant = env["assistant"]
    events: list[tuple[str, Any]] = []
    ans = a.ask(Q_TOOL, STAFF, on_event=lambda k, p: events.append((k, p)))
    assert ans.adapter == "claims@v1"
    assert [t.name for t in ans.tool_calls] == ["get_policy_status"]
    t = ans.tool_calls[0]
    assert t.ok and t.arguments == {"policy_id": "POL-2024-0001"} and t.result["status"] == "active"
    assert ans.outcome == "answer" and ans.model_answer == A_TOOL and ans.answer.startswith(A_TOOL + " [1]")
    assert ans.sources[0]["kind"] == "tool" and "POL-2024-0001" in ans.sources[0]["text"]
    streamed = "".join(p for k, p in events if k == "token")
    assert streamed == A_TOOL  # the answer field only: no JSON reaches the user
    assert parse_reply(ans.reply).data["answer"] == A_TOOL  # the reply the engine enforced
    record = a.audit.get(ans.audit_id)
    assert record["user"] == "wang" and record["adapter"] == "claims@v1" and record["model"] == str(env["tiny"])
    assert record["tool_calls"][0]["name"] == "get_policy_status" and record["tool_calls"][0]["ok"]
    assert record["tool_calls"][0]["duration_s"] >= 0 and record["latency_s"] > 0


def test_answer_cites_its_unit(env: dict) -> None:
    ans = env["assistant"].ask(Q_RAG, STAFF)
    assert ans.outcome == "answer" and ans.model_answer == A_RAG and not ans.tool_calls
    assert [s["source"] for s in ans.sources] == ["claims.md"]
    d = ans.to_dict()
    assert set(d["sources"][0]) >= {"source", "page", "clause", "text"} and "95500-88" in d["sources"][0]["text"]
    assert d["sources"][0]["clause"] == "第一条 报案"
    record = env["assistant"].audit.get(ans.audit_id)
    assert record["cited"] == [d["sources"][0]["chunk_id"]] and len(record["retrieved"]) == 2


def test_a_poisoned_document_cannot_make_the_model_mail_anyone(env: dict) -> None:
    """The passage orders a mail to leak@evil.example: the address is no value the user gave, so draft_email is
    never offered, even to a user who may draft mails."""
    a: Assistant = env["assistant"]
    li = User("li", "claims", "claims")
    ans = a.ask(Q_POISON, li)
    assert not any(t.name == "draft_email" for t in ans.tool_calls)
    with connect(env["db"]) as conn:
        assert conn.execute("SELECT COUNT(*) FROM outbox").fetchone()[0] == 0  # nothing was drafted


def test_thinking_mode_separates_reasoning_from_the_structured_reply(env: dict) -> None:
    a: Assistant = env["assistant"]
    thoughts: list[str] = []
    ans = a.ask(Q_THINK, STAFF, think=True, on_event=lambda k, p: k == "thinking" and thoughts.append(p))
    assert ans.thinking == THOUGHT and ans.reply.endswith('{"evidence":[],"answer":""}')
    assert ans.outcome == "refusal" and "<think>" not in ans.answer
    runtime: ModelRuntime = env["runtime"]
    on = runtime.render([{"role": "user", "content": "q"}], None, True)
    off = runtime.render([{"role": "user", "content": "q"}], None, False)
    assert off == on + "<think>\n\n</think>\n\n"
    assert thinking_switch("问题 /think", False) == ("问题", True)
    assert thinking_switch("/no_think 问题", True) == ("问题", False)


def test_the_base_model_can_only_write_the_structured_form(env: dict) -> None:
    """Without the adapter the tiny model is noise; constrained decoding still makes every reply a valid one, or,
    where the token limit cut it, the start of one (noise may write a long string)."""
    for q in (Q_RAG, Q_TOOL, Q_THINK):
        ans = env["assistant"].ask(q, STAFF, adapter="none")
        assert ans.outcome in ("answer", "evidence", "refusal", "tool_result")
        if ans.reply_problem is None:
            json.loads(ans.reply)
        else:
            assert ans.new_tokens >= env["settings"].max_new_tokens, (ans.reply_problem, ans.reply)


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
    assert ans_claims.model_answer == A_TOOL and ans_base.reply != ans_claims.reply


def test_nothing_relevant_means_no_invented_answer(env: dict) -> None:
    ans = env["assistant"].ask("What is the office Wi-Fi password?", User("x", "staff"))
    assert not ans.relevant and ans.sources == [] and ans.answer == NO_ANSWER_EN


@pytest.mark.sqlite_only  # on PostgreSQL: tests/test_postgres_state.py::test_tampering_through_sql_is_refused
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

    requests: list[dict[str, Any]] = []
    server, url = serve(env["runtime"], "base", requests)
    try:
        settings = env["settings"].model_copy(update={
            "backend": "openai", "openai_base_url": url, "openai_model": "base", "adapter": "claims@v1"})
        local: Assistant = env["assistant"]
        a = Assistant(settings, openai_chat(settings, None, False), local.tools, local.audit, f"openai:{url}")
        tokens: list[str] = []
        ans = a.ask(Q_TOOL, STAFF, on_event=lambda k, p: k == "token" and tokens.append(p))
        assert ans.adapter == "claims@v1" and ans.error is None
        assert [t.name for t in ans.tool_calls] == ["get_policy_status"] and ans.tool_calls[0].ok
        assert ans.model_answer == A_TOOL and "".join(tokens) == A_TOOL
        fmt = requests[-1]["response_format"]  # guided decoding asked for, as vLLM and llama-server take it
        assert fmt["type"] == "json_schema" and "evidence" in json.dumps(fmt["json_schema"]["schema"])
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
