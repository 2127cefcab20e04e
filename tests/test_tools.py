"""The tool registry over a real SQLite database: schemas, validation, permissions, timeouts, safety."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from assistant.chain.calls import result_texts
from assistant.tools.calculator import safe_eval
from assistant.tools.demo.business_db import connect, ensure_business_db
from assistant.tools.demo.schemas import DEMO_TOOL_SCHEMAS, TOOL_VIEWS
from assistant.tools.demo.tools import demo_registry
from assistant.tools.registry import ToolRegistry, business_tool
from core.identity import User
from core.prompts import parse_reply, tool_lines

STAFF = User("wang", "staff", "sales")
CLAIMS = User("li", "claims", "claims")
ADMIN = User("root", "admin")


@pytest.fixture
def registry(tmp_path: Path) -> ToolRegistry:
    return demo_registry(ensure_business_db(tmp_path / "business.db"))


def _training_rows() -> list[list[dict]]:
    """The messages of the domain training set's answer-path rows (the structured form: core.prompts)."""
    root = Path(__file__).parents[1] / "data/sft"
    return [json.loads(line)["messages"] for name in ("rag_qa.jsonl", "tool_calls.jsonl", "reasoning.jsonl")
            for line in (root / name).open(encoding="utf-8") if line.strip()]


def test_schemas_match_the_training_set_and_hide_denied_tools(registry: ToolRegistry) -> None:
    assert registry.schemas(ADMIN) == DEMO_TOOL_SCHEMAS
    assert registry.schemas(CLAIMS) == TOOL_VIEWS["claims"] and registry.schemas(STAFF) == TOOL_VIEWS["staff"]
    # the adapter learnt exactly the tool lists the chain offers these users, as its system prompt describes them
    offered = {tool_lines(registry.schemas(u, offered_only=True)) for u in (STAFF, CLAIMS)}
    systems = {msgs[0]["content"] for msgs in _training_rows()}
    assert systems and all(any(s.endswith(lines) for lines in offered) for s in systems)
    assert all("search_documents" not in s for s in systems)  # never offered: retrieval already searches
    staff_names = {s["function"]["name"] for s in registry.schemas(STAFF)}
    assert "get_policy_status" in staff_names and "get_claim_status" not in staff_names
    assert "draft_email" not in staff_names


def test_training_set_tool_results_are_what_the_tools_return(registry: ToolRegistry) -> None:
    """The adapter learnt to answer from these results: a field the live tool adds or drops is a drift."""
    checked = 0
    for msgs in _training_rows():
        for call_msg, result_msg in zip(msgs[2:-1:2], msgs[3:-1:2], strict=True):
            call = parse_reply(call_msg["content"]).data
            if call["tool"] not in {"get_policy_status", "get_claim_status", "get_order_status",
                                    "list_customer_policies", "calculator"}:
                continue
            live = registry.execute(call["tool"], call["arguments"], ADMIN)
            shown = [line.split("] ", 1)[1] for line in result_msg["content"].splitlines() if line.startswith("[")]
            assert live.ok and shown == result_texts(live), (call, result_msg["content"])
            checked += 1
    assert checked >= 40


def test_lookups_answer_from_the_database(registry: ToolRegistry) -> None:
    r = registry.execute("get_policy_status", {"policy_id": "pol-2024-0003"}, STAFF)
    assert r.ok and r.result["status"] == "lapsed" and r.result["holder"] == "李娜"
    assert r.result["status_zh"] == "已失效（欠缴保费）"  # the label a Chinese answer copies, not a translation
    r = registry.execute("get_claim_status", {"claim_id": "CLM-2024-0002"}, CLAIMS)
    assert r.ok and r.result["status"] == "investigating"
    r = registry.execute("list_customer_policies", {"customer_id": "CUS-1001"}, CLAIMS)
    assert [p["policy_id"] for p in r.result] == ["POL-2024-0001", "POL-2024-0002"]
    r = registry.execute("get_policy_status", {"policy_id": "POL-1999-0000"}, STAFF)
    assert r.ok and r.result == {"error": "not found: POL-1999-0000"}


def test_denied_invalid_unknown_and_failing_calls_come_back_as_results(registry: ToolRegistry) -> None:
    r = registry.execute("get_claim_status", {"claim_id": "CLM-2024-0001"}, STAFF)
    assert not r.ok and r.denied and "permission denied" in r.error
    r = registry.execute("get_policy_status", {"policy": "x"}, STAFF)
    assert not r.ok and "invalid arguments" in r.error and "policy_id" in r.error
    r = registry.execute("drop_tables", {}, ADMIN)
    assert not r.ok and "unknown tool" in r.error
    r = registry.execute("calculator", {"expression": "__import__('os').system('id')"}, STAFF)
    assert not r.ok and "not allowed" in r.error
    assert json.loads(r.for_model())["error"].startswith("'calculator' failed")


def test_schema_words_a_model_copies_into_its_call_are_dropped_but_other_extras_still_fail(
        registry: ToolRegistry) -> None:
    # seen from the 0.5B model: it echoed the schema's "required" list beside the real argument
    r = registry.execute("calculator", {"expression": "850 - 100", "required": ["expression"]}, STAFF)
    assert r.ok and r.result["result"] == 750 and r.arguments == {"expression": "850 - 100"}
    r = registry.execute("calculator", {"expression": "1 + 1", "scale": 2}, STAFF)
    assert not r.ok and "unexpected 'scale'" in r.error
    r = registry.execute("calculator", {"expression": "1 + 1", "type": "function"}, STAFF)
    assert not r.ok and "reserved" in r.error


def test_draft_email_goes_to_the_outbox_not_the_network(registry: ToolRegistry, tmp_path: Path) -> None:
    r = registry.execute("draft_email", {"to": "zhang.wei@example.com", "subject": "进度", "body": "您好"}, CLAIMS)
    assert r.ok and r.result["status"] == "saved to outbox"
    with connect(tmp_path / "business.db") as conn:
        row = dict(conn.execute("SELECT * FROM outbox").fetchone())
    assert row["recipient"] == "zhang.wei@example.com" and row["created_by"] == "li" and row["status"] == "draft"


def test_safe_calculator() -> None:
    assert safe_eval("(2600 - 100) × 0.9") == 2250
    assert safe_eval("400 * 85 + 250 * 160 + 20,000") == 94000
    for bad in ("a + 1", "2 ** 1000", "1/0", "open('x')", "(1"):
        with pytest.raises(ValueError):
            safe_eval(bad)


def test_a_company_tool_is_one_decorated_function_with_a_timeout() -> None:
    @business_tool(roles={"finance"}, timeout_s=0.2)
    def slow_ledger(account: str) -> dict:
        """Ledger balance (账户余额)"""
        time.sleep(2)
        return {"account": account}

    reg = ToolRegistry().add(slow_ledger)
    assert reg.schemas(User("f", "finance"))[0]["function"]["description"] == "Ledger balance (账户余额)"
    assert reg.schemas(STAFF) == []
    t0 = time.perf_counter()
    r = reg.execute("slow_ledger", {"account": "A1"}, User("f", "finance"))
    assert not r.ok and "did not answer within 0.2 s" in r.error and time.perf_counter() - t0 < 1.5


def test_tool_call_parsing_accepts_the_forms_small_models_emit() -> None:
    from core.toolcalls import parse_output

    for text in ('<tool_call>\n{"name": "calculator", "arguments": {"expression": "1+1"}}\n</tool_call>',
                 '```json\n{"name": "calculator", "arguments": {"expression": "1+1"}}\n```',
                 '{"name": "calculator", "arguments": "{\\"expression\\": \\"1+1\\"}"}'):
        out = parse_output(text)
        assert [(c.name, c.arguments) for c in out.calls] == [("calculator", {"expression": "1+1"})], text
        assert out.content == "" and not out.errors
    out = parse_output("<think>\nplan\n</think>\n\n答案 [1]")
    assert (out.thinking, out.content, out.calls) == ("plan", "答案 [1]", [])
    bad = parse_output('<tool_call>\n{"name": "calculator", "arguments": {1+1}}\n</tool_call>')
    assert bad.calls == [] and "not valid JSON" in bad.errors[0]
    assert parse_output('The JSON {"a": 1} is data').calls == []
