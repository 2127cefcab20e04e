"""The domain training set `data/sft/` is the chain's own structured form: every prompt is the one the chain sends the
model for its question (checked against a real knowledge base built here from `corpus/`), every document answer
cites exactly the units that hold it and passes the chain's own verification, every look-up result is what the live
tool returns, and every follow-up row is the chain's standalone prompt with its decision."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from assistant.backends.scripted import ScriptedChat
from assistant.chain import Assistant, build_assistant
from assistant.chain.calls import result_texts
from assistant.chain.verification import verify
from core.identity import User
from core.prompts import answer_fields, parse_reply, prompt_units, standalone_messages, tool_reply
from core.settings import Settings
from ingest import pipeline

ROOT = Path(__file__).resolve().parents[1]
SFT = ROOT / "data" / "sft"
STAFF = User("wang.staff", "staff", "sales")
CLAIMS = User("li.claims", "claims", "claims")
REFUSE = '{"evidence":[],"answer":""}'
_UNIT = re.compile(r"^\[(\d+)\] (.*)$")


@cache
def build_script() -> Any:
    """scripts/data/build_sft.py (its tables say which sentence answers which question)."""
    spec = importlib.util.spec_from_file_location("build_sft", ROOT / "scripts" / "data" / "build_sft.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def rows(name: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (SFT / name).read_text(encoding="utf-8").splitlines() if line.strip()]


def answer_path_rows() -> list[dict[str, Any]]:
    """Every row whose prompt is the answer path's (rules, evidence and question, calls made)."""
    return [r for name in ("rag_qa.jsonl", "tool_calls.jsonl", "reasoning.jsonl") for r in rows(name)]


def question_of(messages: list[dict[str, Any]]) -> str:
    text = messages[1]["content"]
    for ask in ("\n\n问题：", "\n\nQuestion: "):
        if ask in text:
            return text.rsplit(ask, 1)[1]
    raise AssertionError(f"no question in {text!r}")


def user_of(messages: list[dict[str, Any]]) -> User:
    """The user whose tools the system prompt describes (claims staff are offered the claim look-ups)."""
    return CLAIMS if "get_claim_status(" in messages[0]["content"] else STAFF


def units_of(messages: list[dict[str, Any]]) -> list[tuple[int, str, str]]:
    """(id, text, label) of every unit the user turns show."""
    out = []
    for m in messages:
        if m["role"] != "user":
            continue
        label = ""
        for line in m["content"].split("\n"):
            if found := _UNIT.match(line):
                out.append((int(found.group(1)), found.group(2), label))
            elif line.strip():
                label = line
    return out


@pytest.fixture(scope="module")
def chains(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The corpus in a real knowledge base; the chain as configured and the same chain without its relevance floor
    (the units it would show a question it refuses by itself), each over a scripted model that is never asked."""
    settings = Settings(home=tmp_path_factory.mktemp("sft") / "home", _env_file=None)
    report = pipeline.add_paths(settings, [ROOT / "corpus"])
    assert all(r.status == "added" for r in report.results)
    chain = build_assistant(settings, chat=ScriptedChat(replies=[REFUSE]))
    loose = build_assistant(settings.model_copy(update={"min_relevance": 0.0, "min_coverage": 0.0}),
                            chat=ScriptedChat(replies=[REFUSE]))
    cached: dict[tuple[str, str, str], tuple[list[dict[str, Any]], Any]] = {}

    def prompt(which: str, question: str, user: User) -> tuple[list[dict[str, Any]], Any]:
        key = (which, question, user.name)
        if key not in cached:
            a: Assistant = chain if which == "chain" else loose
            messages, _, ans = a.prompt_for(question, user)
            cached[key] = (messages, ans)
        return cached[key]

    return {"chain": chain, "prompt": prompt}


def test_every_prompt_is_the_chains_own_and_every_result_the_live_tools(chains: dict[str, Any]) -> None:
    prompt, chain = chains["prompt"], chains["chain"]
    checked = calls = 0
    for row in answer_path_rows():
        msgs = row["messages"]
        assert set(row) == {"messages"} and {m["role"] for m in msgs} <= {"system", "user", "assistant"}
        question, user = question_of(msgs), user_of(msgs)
        want, _ = prompt("chain", question, user)
        if msgs[:2] != want:  # a refusal may show the units the chain would show without its relevance floor
            assert parse_reply(msgs[-1]["content"]).data == {"evidence": [], "answer": ""}, question
            assert not units_of(want), question  # the chain refuses it by itself, without the model
            want, _ = prompt("loose", question, user)
        assert msgs[:2] == want, question
        checked += 1
        # the calls the chain made before the model wrote: each an assistant tool reply, then its result's units
        shown = max((n for n, _, _ in units_of(msgs[:2])), default=0)
        for call, result in zip(msgs[2:-1:2], msgs[3:-1:2], strict=True):
            data = parse_reply(call["content"]).data
            assert call["role"] == "assistant" and call["content"] == tool_reply(data["tool"], data["arguments"])
            got = [(n, text) for n, text, _ in units_of([result])]
            assert [n for n, _ in got] == list(range(shown + 1, shown + 1 + len(got)))
            shown += len(got)
            if data["tool"] == "draft_email":  # it writes to the outbox: its draft id is the database's
                assert all(re.fullmatch(r"draft_email\(.*\): draft_id: \d+; status: saved to outbox", t) for _, t in got)
                continue
            live = chain.run_tool(data["tool"], data["arguments"], user)
            assert live.ok and [t for _, t in got] == result_texts(live), (question, got)
            calls += 1
    assert checked >= 200 and calls >= 40


def test_document_answers_cite_the_units_that_hold_them_and_pass_verification(chains: dict[str, Any]) -> None:
    facts = {q: (source, clause, frags, answer) for source, clause, items in build_script().FACTS
             for q, answer, frags in items}
    answered = 0
    for row in rows("rag_qa.jsonl") + rows("reasoning.jsonl"):
        msgs = row["messages"]
        reply = parse_reply(msgs[-1]["content"]).data
        if not reply["evidence"] or len(msgs) != 3:  # refusals; answers from tool results are checked above
            continue
        question = question_of(msgs)
        source, clause, frags, answer = facts[question]
        assert reply["answer"] == answer
        units = units_of(msgs)
        holding = {f: [n for n, text, label in units if source in label and clause in label and f in text]
                   for f in frags}
        assert all(holding.values()), (question, holding)
        cited, _, problem = answer_fields(reply, prompt_units(msgs[:-1]))  # the keys, back to the units they open
        assert problem is None and sorted(cited) == sorted({n for ns in holding.values() for n in ns}), question
        # the chain's own check of the answer against the units it cites (figures, tiers of the question's quantity)
        _, ans = chains["prompt"]("chain", question, user_of(msgs))
        ans.cited, ans.model_answer = cited, reply["answer"]
        verify(ans, None, None)
        assert ans.verification["status"] == "verified", (question, ans.verification)
        answered += 1
    assert answered >= 80


def test_followups_are_the_chains_standalone_prompt_with_its_decision() -> None:
    got = [r["messages"] for r in rows("followups.jsonl")]
    want = []
    for history, question, rewritten in build_script().FOLLOWUPS:
        reply = {"complete": True} if rewritten is None else {"complete": False, "question": rewritten}
        want.append([*standalone_messages([{"role": "user", "content": q} for q in history], question),
                     {"role": "assistant", "content": json.dumps(reply, ensure_ascii=False, separators=(",", ":"))}])
    assert got == want
    assert {m[-1]["content"].startswith('{"complete":false') for m in got} == {True, False}
