"""Access on every path, for users of three departments (issue 10): chat retrieval, each tool (the search tool
above all), the sources shown, the cited file, the knowledge-base selector and the CLI all answer from
core.access, and nothing restricted comes back on any of them.

The world is real: a knowledge base with documents tagged for sales, claims and hr plus a public one, a
second knowledge base restricted to hr (ASSISTANT_KB_ACCESS), the demo business database, the chain over a
tiny real-architecture Qwen3, the Streamlit app through AppTest and the Typer CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from streamlit.testing.v1 import AppTest
from typer.testing import CliRunner

from assistant.app import conversations
from assistant.app.cited_files import open_cited
from assistant.app.users import add_user
from assistant.backends.runtime import ModelRuntime
from assistant.chain import Assistant, build_assistant
from core.access import AccessPolicy
from core.errors import AssistantError
from core.identity import User
from core.models import load_model
from core.settings import Settings
from core.testing.tiny_qwen3 import build_tiny_qwen3
from ingest import pipeline
from ingest.store import KnowledgeBase

APP = str(Path(__file__).resolve().parent.parent / "ui" / "app.py")
PASSWORD = "Quiet-Harbour-Lantern-2026"
KB_ACCESS = {"hrkb": ["hr"]}
# one marker per restricted text; every marker is searched for on every path
DOCS = {  # file: (department, knowledge base, text)
    "public.md": (None, "default", "# 公司简介\n\n## 地址\n\n公司总部位于上海，公开资料 PUBLIC-ADDR-01。\n"),
    "sales.md": ("sales", "default", "# 销售提成\n\n## 提成比例\n\n销售提成比例为百分之八，SALES-SECRET-07。\n"),
    "claims.md": ("claims", "default", "# 理赔审批\n\n## 大额理赔\n\n超过三十万的理赔需总监审批，CLAIMS-SECRET-03。\n"),
    "hr.md": ("hr", "default", "# 薪酬制度\n\n## 年终奖\n\n年终奖为三个月工资，HR-SECRET-05。\n"),
    "hrkb.md": (None, "hrkb", "# 裁员计划\n\n## 名单\n\n明年裁员名单保密，HRKB-SECRET-09。\n"),
}
QUESTIONS = {"sales.md": "销售提成比例是多少？", "claims.md": "大额理赔需要谁审批？", "hr.md": "年终奖是多少？",
             "hrkb.md": "明年裁员名单", "public.md": "公司总部在哪里？"}
MARKERS = {name: text.split("，")[-1].rstrip("。\n") for name, (_, _, text) in DOCS.items()}
USERS = {"sales": User("wang.sales", "staff", "sales"), "claims": User("li.claims", "claims", "claims"),
         "hr": User("zhou.hr", "staff", "hr")}
VISIBLE = {"sales": {"public.md", "sales.md"}, "claims": {"public.md", "claims.md"},
           "hr": {"public.md", "hr.md", "hrkb.md"}}


def forbidden(dept: str) -> set[str]:
    return {MARKERS[n] for n in DOCS if n not in VISIBLE[dept]}


def leaks(dept: str, value: Any) -> set[str]:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return {m for m in forbidden(dept) if m in text}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("access")
    settings = Settings(home=root / "home", max_new_tokens=8, retrieval_k=4, min_relevance=0.0, min_coverage=0.0,
                        kb_access=KB_ACCESS)
    docs = root / "docs"
    docs.mkdir()
    for name, (dept, kb, text) in DOCS.items():
        (docs / name).write_text(text, encoding="utf-8")
        pipeline.add_paths(settings, [docs / name], kb, dept)
    tiny = build_tiny_qwen3(root / "tiny")
    runtime = ModelRuntime(load_model(str(tiny), settings), settings)
    assistant = build_assistant(settings, runtime=runtime)  # the full demo tool registry, as the UI and CLI
    for user in USERS.values():
        add_user(settings.app_db, user.name, PASSWORD, user.role, user.department)
    return {"settings": settings, "assistant": assistant, "tiny": tiny, "docs": docs, "root": root}


@pytest.mark.parametrize("dept", list(USERS))
def test_chat_retrieval_sources_and_audit_show_only_what_the_user_may_see(world: dict, dept: str) -> None:
    a: Assistant = world["assistant"]
    user = USERS[dept]
    for name, question in QUESTIONS.items():
        kb = DOCS[name][1]
        if not a.access.may_use_kb(user, kb):
            ans = a.ask(question, user, kb=kb)
            assert ans.error and "may not use knowledge base" in ans.error and not ans.passages
            assert not leaks(dept, ans.to_dict())
            continue
        messages, _, found = a.prompt_for(question, user, kb=kb)  # exactly what the model would be sent
        assert not leaks(dept, messages) and not leaks(dept, [p.text for p in found.passages])
        if name in VISIBLE[dept]:
            assert MARKERS[name] in json.dumps(messages, ensure_ascii=False)  # the search does find it
    ans = a.ask(QUESTIONS["hr.md"] + " " + QUESTIONS["claims.md"], user)  # one whole turn: sources, audit
    d = ans.to_dict()
    assert not leaks(dept, d["retrieved"]) and not leaks(dept, d["sources"]) and not leaks(dept, d["answer"])
    assert not leaks(dept, a.audit.get(ans.audit_id))


@pytest.mark.parametrize("dept", list(USERS))
def test_every_tool_answers_within_the_users_access(world: dict, dept: str) -> None:
    a: Assistant = world["assistant"]
    user = USERS[dept]
    samples = {"get_policy_status": {"policy_id": "POL-2024-0001"}, "get_claim_status": {"claim_id": "CLM-2024-0001"},
               "get_order_status": {"order_id": "ORD-5001"}, "list_customer_policies": {"customer_id": "CUS-1001"},
               "calculator": {"expression": "1+1"}, "draft_email": {"to": "a@corp.example", "subject": "s", "body": "b"}}
    assert set(a.tools.tools) == set(samples) | {"search_documents"}  # a new tool gets a line here
    for name, args in samples.items():
        r = a.run_tool(name, args, user)
        assert r.denied == (not a.tools.access(name).allows(user)) and not leaks(dept, r.result)
    for doc, question in QUESTIONS.items():  # the search tool: the user's knowledge base, the chat's filter
        for kb in ("default", "hrkb"):
            r = a.run_tool("search_documents", {"query": question + " " + MARKERS[doc]}, user, kb)
            assert not leaks(dept, r.result) and not leaks(dept, r.error or "")
            if not a.access.may_use_kb(user, kb):
                assert not r.ok and "may not use knowledge base" in r.error
            elif doc in VISIBLE[dept] and DOCS[doc][1] == kb:
                assert MARKERS[doc] in json.dumps(r.result, ensure_ascii=False)


@pytest.mark.parametrize("dept", list(USERS))
def test_cited_files_open_only_for_users_who_may_see_them_now(world: dict, dept: str) -> None:
    settings: Settings = world["settings"]
    policy = AccessPolicy.from_settings(settings)
    user = USERS[dept]
    for kb in ("default", "hrkb"):
        for doc in KnowledgeBase(settings, kb).read_manifest()["documents"].values():
            chunk = doc["chunk_ids"][0]
            if doc["source"] in VISIBLE[dept]:
                assert open_cited(settings, policy, user, kb, chunk).data.decode() == DOCS[doc["source"]][2]
            else:
                with pytest.raises(AssistantError, match="not available to you"):
                    open_cited(settings, policy, user, kb, chunk)


def test_a_file_replaced_by_another_departments_document_is_not_served(world: dict, tmp_path: Path) -> None:
    """The issue's attack: a public report.pdf cited to a sales user is replaced by an HR-only file of the same
    name; "Open the file" on the old citation must not hand out the HR file."""
    settings = world["settings"].model_copy(update={"home": tmp_path / "home"})
    policy = AccessPolicy.from_settings(settings)
    report = tmp_path / "report.md"
    report.write_text("# 报告\n\n## 概要\n\n公开的季度报告。\n", encoding="utf-8")
    pipeline.add_paths(settings, [report])
    cited = KnowledgeBase(settings).read_manifest()["documents"]
    chunk = next(iter(cited.values()))["chunk_ids"][0]  # what the sales user's saved answer points at
    assert open_cited(settings, policy, USERS["sales"], "default", chunk).name == "report.md"
    report.write_text("# 报告\n\n## 裁员\n\n裁员名单 HR-SECRET-05。\n", encoding="utf-8")  # changed on disk only
    with pytest.raises(AssistantError, match="changed on disk"):
        open_cited(settings, policy, USERS["sales"], "default", chunk)
    pipeline.add_paths(settings, [report], department="hr")  # now ingested, HR only
    for user in (USERS["sales"], USERS["claims"]):
        with pytest.raises(AssistantError, match="not available to you"):
            open_cited(settings, policy, user, "default", chunk)
    with pytest.raises(AssistantError, match="replaced since this answer"):  # hr may see it, but not as cited
        open_cited(settings, policy, USERS["hr"], "default", chunk)


@pytest.fixture
def ui_env(world: dict, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    for k, v in {"ASSISTANT_HOME": str(world["settings"].home), "ASSISTANT_MODEL": str(world["tiny"]),
                 "ASSISTANT_MAX_NEW_TOKENS": "8", "ASSISTANT_RETRIEVAL_K": "4", "ASSISTANT_MIN_RELEVANCE": "0",
                 "ASSISTANT_MIN_COVERAGE": "0",
                 "ASSISTANT_KB_ACCESS": json.dumps(KB_ACCESS)}.items():
        monkeypatch.setenv(k, v)
    return world


def login(name: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120).run()
    at.text_input(key="login_name").input(name)
    at.text_input(key="login_password").input(PASSWORD)
    at.button(key="login").click().run()
    assert not at.exception and at.session_state["account"].name == name, at.exception
    return at


@pytest.mark.parametrize("dept", list(USERS))
def test_ui_knowledge_base_selector_and_saved_sources(ui_env: dict, dept: str) -> None:
    user = USERS[dept]
    settings: Settings = ui_env["settings"]
    # saved answers that cite every document (as if written before a tag or a rule changed): one as the release
    # before saved it (`answer` and the passages), one as the structured answer path saves it (units quoted)
    manifest = {kb: KnowledgeBase(settings, kb).read_manifest()["documents"] for kb in ("default", "hrkb")}
    cites = [{"n": i, "source": d["source"], "page": None, "clause": None, "text": "(cited passage)",
              "chunk_id": d["chunk_ids"][0], "doc_id": d["doc_id"]}
             for i, d in enumerate(manifest["default"].values(), 1)]
    units = [c | {"unit": c["n"], "kind": "sentence", "header": None, "page_label": None, "path": None,
                  "text": "(cited unit)"} for c in cites]
    marks = "".join(f"[{c['n']}]" for c in cites)
    conv = conversations.create(settings.app_db, user.name)
    conversations.add_turn(settings.app_db, conv.id, user.name, "旧问题", "旧答案 [1]",
                           {"answer": "旧答案 [1]", "sources": cites, "kb": "default"})
    conversations.add_turn(settings.app_db, conv.id, user.name, "新问题", f"新答案 {marks}",
                           {"answer": f"新答案 {marks}", "lead": f"新答案 {marks}", "outcome": "answer",
                            "verification": {"status": "verified", "reasons": []}, "sources": units, "kb": "default"})
    at = login(user.name)
    selectors = [s for s in at.sidebar.selectbox if s.key == "kb"]
    offered = selectors[0].options if selectors else ["default"]
    assert offered == (["default", "hrkb"] if dept == "hr" else ["default"])
    files = list(at.get("download_button"))
    labels = [e.label for e in at.expander]
    assert len(files) == 2 * len(VISIBLE[dept] & {n for n in DOCS if DOCS[n][1] == "default"})  # in each answer
    assert sum("not available to you" in c.value for c in at.caption) == \
        2 * sum(1 for d in manifest["default"].values() if d["source"] not in VISIBLE[dept])
    assert labels  # the sources are listed (their text came from the saved turn, as a reload shows it)
    assert not leaks(dept, [c.value for c in at.caption] + [m.value for m in at.markdown] + labels)
    conversations.delete(settings.app_db, conv.id, user.name)


@pytest.mark.parametrize("dept", list(USERS))
def test_cli_ask_answers_within_the_users_access(ui_env: dict, dept: str) -> None:
    from assistant.cli import app

    user = USERS[dept]
    runner = CliRunner()
    base = ["--role", user.role, "--department", user.department, "--json", "--user", user.name]
    res = runner.invoke(app, ["ask", QUESTIONS["hr.md"] + " " + QUESTIONS["sales.md"] + " " + QUESTIONS["claims.md"],
                              *base])
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout)
    assert d["retrieved"] and not leaks(dept, d)
    res = runner.invoke(app, ["ask", QUESTIONS["hrkb.md"], "--kb", "hrkb", *base])
    if dept == "hr":
        assert res.exit_code == 0 and MARKERS["hrkb.md"] in res.stdout
    else:
        assert res.exit_code == 1 and "may not use knowledge base 'hrkb'" in res.stdout and not leaks(dept, res.stdout)


def test_department_names_compare_case_insensitively(world: dict) -> None:
    """Ingest stores tags in lower case; a user typed in as "HR" must neither lose nor gain access by it."""
    a: Assistant = world["assistant"]
    shouting = User("zhou.hr", "staff", " HR ")
    _, _, found = a.prompt_for(QUESTIONS["hr.md"], shouting)
    assert MARKERS["hr.md"] in json.dumps([p.text for p in found.passages], ensure_ascii=False)
    assert a.access.may_use_kb(shouting, "hrkb") and not a.access.may_use_kb(User("w", "staff", "Sales"), "hrkb")
    _, _, found = a.prompt_for(QUESTIONS["hr.md"], User("w", "staff", "SALES"))
    assert not leaks("sales", [p.text for p in found.passages])
