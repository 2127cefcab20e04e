"""`assistant ask` / `assistant chat` in a terminal: the model's words stream to stdout as they come; when they do not
stand (verification put the documents' own words, the record or the refusal in their place) the terminal says so
and prints the answer that stands, then the quoted units with their citations, the sources and the tool calls.
The model is scripted (what it writes is what is tested); the knowledge base, tools, verification and audit are
real."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from typer.testing import CliRunner

from assistant import cli
from assistant.backends.scripted import ScriptedChat
from assistant.chain import Assistant
from assistant.tools.demo.business_db import ensure_business_db
from assistant.tools.demo.tools import demo_registry
from core.audit import AuditLog
from core.settings import Settings
from ingest import pipeline
from ui.testing import REFUSE, cite

CLAIMS_MD = ("# 理赔规则\n\n## 第一条 报案\n\n出险后十日内拨打 95500-88 报案。\n\n## 第二条 材料\n\n申请保险金时须提供下列材料：\n\n"
             "| 项目 | 材料 |\n|---|---|\n| 身故 | 死亡证明 |\n| 伤残 | 伤残鉴定书 |\n")
Q = "出险后几天内报案？"
ANSI = re.compile(r"\x1b\[[0-9;]*m")


@pytest.fixture(scope="module")
def kb(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    root = tmp_path_factory.mktemp("cli")
    (root / "docs").mkdir()
    (root / "docs" / "claims.md").write_text(CLAIMS_MD, encoding="utf-8")
    settings = Settings(home=root / "home")
    pipeline.add_paths(settings, [root / "docs"])
    return settings


@pytest.fixture(scope="module")
def assistant(kb: Settings) -> Assistant:
    return Assistant(kb, ScriptedChat(replies=[REFUSE]), demo_registry(ensure_business_db(kb.home / "b.db")),
                     AuditLog(kb.home / "audit.db"), "scripted")


@pytest.fixture
def run(assistant: Assistant, monkeypatch: pytest.MonkeyPatch) -> Any:
    """`run(args, *replies, input=...)`: the CLI over the scripted model writing `replies` (one per model turn);
    (stdout, stderr, exit code)."""
    monkeypatch.setattr(cli, "_assistant", lambda home, model: assistant)

    def invoke(args: list[str], *replies: Any, input: str | None = None) -> tuple[str, str, int]:
        chat = assistant.backend
        chat.replies[:] = list(replies)
        chat.seen.clear()
        res = CliRunner().invoke(cli.app, args, input=input)
        return ANSI.sub("", res.stdout), ANSI.sub("", res.stderr), res.exit_code

    return invoke


def test_the_cli_shows_the_final_answer_when_verification_replaced_the_streamed_one(run: Any) -> None:
    """The model's words stream to the terminal as they come; a figure no cited unit has (两天: the clause says
    十日) makes verification show the clause itself instead, and the terminal must then show that, saying why,
    not leave the wrong answer standing."""
    out, err, code = run(["ask", Q], cite("十日内拨打", "出险后两天内报案。"))
    assert code == 0, err
    streamed, _, final = out.partition("出险后两天内报案。")
    assert streamed == "" and final == "\n资料原文：\n\n> 出险后十日内拨打 95500-88 报案。 [1]\n"
    assert "(verification: failed — figures in no cited unit, tool result or the question: 两; shown instead:)" in err
    assert "[1] claims.md · 第一条 报案" in err and "evidence · verification failed" in err


def test_a_verified_answer_is_written_once_with_its_marks_and_quotes(run: Any) -> None:
    out, err, code = run(["ask", Q], cite("十日内拨打", "出险后十日内报案。"))
    assert code == 0, err
    assert out == "出险后十日内报案。 [1]\n\n> 出险后十日内拨打 95500-88 报案。 [1]\n"
    assert "shown instead" not in err and "[1] claims.md · 第一条 报案" in err and "answer · verification verified" in err
    out, err, _ = run(["ask", "身故理赔需要什么材料？"], cite("死亡证明", "身故须提供死亡证明。"))
    # a small table is one unit, quoted whole with its header
    assert out == "身故须提供死亡证明。 [1]\n\n> | 项目 | 材料 |\n> | 身故 | 死亡证明 |\n> | 伤残 | 伤残鉴定书 | [1]\n"
    assert "[1] claims.md · 第二条 材料" in err


def test_a_refusal_lists_no_sources_and_a_record_says_which_look_up(run: Any) -> None:
    out, err, _ = run(["ask", Q], REFUSE)
    assert out == "抱歉，现有资料中没有找到这个问题的答案。\n" and "[1]" not in err and "refusal" in err
    # the model's wording of a record fails (a date the record does not hold): the record as it came back
    out, err, _ = run(["ask", "查一下保单 POL-2024-0001 的状态"],
                      cite("get_policy_status(POL-2024-0001)", "保单已于 2023-01-01 失效。"))
    assert out.startswith("保单已于 2023-01-01 失效。\n查询结果：\n\n> get_policy_status(POL-2024-0001): ")
    assert "status: active" in out and "(verification: failed — figures in no cited unit" in err
    assert 'tool get_policy_status({"policy_id": "POL-2024-0001"}) → ok {"policy_id": "POL-2024-0001"' in err
    assert "[1] tool get_policy_status" in err


def test_json_output_is_the_answers_dict(run: Any) -> None:
    out, _, code = run(["ask", Q, "--json"], cite("十日内拨打", "出险后两天内报案。"))
    d = json.loads(out)
    assert code == 0 and d["outcome"] == "evidence" and d["lead"] == "资料原文：" and d["model_answer"] == "出险后两天内报案。"
    assert d["verification"]["status"] == "failed" and d["sources"][0]["text"] == "出险后十日内拨打 95500-88 报案。"


def test_chat_prints_each_turn_and_resolves_a_follow_up(run: Any) -> None:
    rewrite = '{"complete":false,"question":"伤残理赔需要什么材料？"}'
    out, err, code = run(["chat"], cite("死亡证明", "身故须提供死亡证明。"), rewrite,
                         cite("伤残鉴定书", "伤残须提供伤残鉴定书。"), input="身故理赔需要什么材料？\n那伤残呢？\n/quit\n")
    assert code == 0, err
    table = "> | 项目 | 材料 |\n> | 身故 | 死亡证明 |\n> | 伤残 | 伤残鉴定书 | [1]\n"
    assert "身故须提供死亡证明。 [1]\n\n" + table in out and "伤残须提供伤残鉴定书。 [1]\n\n" + table in out
    assert "follow-up question written out in full" in err and "searched as: 伤残理赔需要什么材料？" in err
