"""Retraining from staff feedback: the feedback set (positives, corrections, dedup), a new version trained on
feedback + base set and compared with the active one, promoted only if not worse; the background job the UI
starts, followed by a fresh page."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import pytest
from streamlit.testing.v1 import AppTest

from assistant.app.feedback import add_feedback, turn_example
from assistant.app.users import DEMO_USERS, ensure_demo_users
from core import registry
from core.errors import AssistantError
from core.settings import Settings
from finetune import background
from finetune.retrain import feedback_dataset, retrain
from tests.chain_env import Q_RAG, Q_TOOL, STAFF

APP = str(Path(__file__).resolve().parent.parent / "ui" / "app.py")


@pytest.fixture
def home(chain_env: dict, tmp_path: Path) -> Settings:
    """A copy of the chain world (claims@v1 active) with two real answered turns to give feedback on."""
    shutil.copytree(chain_env["settings"].home, tmp_path / "home")
    return chain_env["settings"].model_copy(update={"home": tmp_path / "home"})


def _turn(chain_env: dict, question: str) -> tuple[int, dict[str, Any]]:
    a = chain_env["assistant"]
    ans = a.ask(question, STAFF)
    return ans.audit_id, turn_example(ans.question, [], ans.to_dict(), a.tools.schemas(STAFF))


def test_feedback_set_keeps_positives_and_corrections_deduplicated(home: Settings, chain_env: dict) -> None:
    db = home.app_db
    (rag_id, rag), (tool_id, tool) = _turn(chain_env, Q_RAG), _turn(chain_env, Q_TOOL)
    add_feedback(db, rag_id, "wang", 1, rag)
    add_feedback(db, rag_id, "li", -1, rag, comment="no phone number", correction="拨打 95500-88 报案 [1]。")
    add_feedback(db, rag_id, "zhao", 1, rag)  # a later thumbs-up never beats a correction
    add_feedback(db, tool_id, "wang", -1, tool, comment="slow")  # nothing to learn from
    fs = feedback_dataset(home)
    assert (fs.positives, fs.corrections, fs.skipped_negative, fs.duplicates) == (0, 1, 1, 2)
    assert [r["messages"][-1]["content"] for r in fs.rows] == ["拨打 95500-88 报案 [1]。"]
    add_feedback(db, tool_id, "wang", 1, tool)  # the same user changes their mind: replaces the earlier row
    fs = feedback_dataset(home)
    assert (fs.positives, fs.corrections, fs.skipped_negative) == (1, 1, 0)
    calls = [m for m in fs.rows[1]["messages"] if m.get("tool_calls")]
    assert calls[0]["tool_calls"][0]["function"]["name"] == "get_policy_status"


def test_retrain_promotes_only_a_version_that_is_not_worse(home: Settings, chain_env: dict) -> None:
    with pytest.raises(AssistantError, match="no usable feedback"):
        retrain(home, "claims")
    audit_id, example = _turn(chain_env, Q_RAG)
    add_feedback(home.app_db, audit_id, "wang", -1, example, correction="出险后十日内拨打 95500-88 报案 [1]。")
    fast = {"max_steps": 3, "eval_steps": 3}
    # a bar nobody can pass (loss must drop to zero): trained, evaluated, kept inactive
    res = retrain(home, "claims", overrides=fast, tolerance=-1.0)
    assert res.candidate == "claims@v2" and res.active == "claims@v1" and not res.promoted
    assert registry.get(home, "claims").ref == "claims@v1"
    meta = registry.get(home, "claims@v2").meta
    assert meta["metrics"]["retrain"]["compared_with"] == "claims@v1"
    assert meta["metrics"]["retrain"]["feedback"]["corrections"] == 1
    assert res.candidate_eval["eval_tokens"] == res.active_eval["eval_tokens"] > 0  # the same held-out set
    train_rows = (res.workdir / "train.jsonl").read_text(encoding="utf-8").splitlines()
    eval_rows = (res.workdir / "eval.jsonl").read_text(encoding="utf-8").splitlines()
    assert not set(train_rows) & set(eval_rows)
    feedback_line = (res.workdir / "feedback.jsonl").read_text(encoding="utf-8").splitlines()[0]
    assert train_rows.count(feedback_line) == 2  # fewer than 5 feedback rows: none held out; weight 2
    # the usual bar: promoted exactly when its held-out loss is not above the active version's
    res = retrain(home, "claims", overrides=fast)
    assert res.promoted == (res.candidate_eval["eval_loss"] <= res.active_eval["eval_loss"])
    assert registry.get(home, "claims").ref == (res.candidate if res.promoted else "claims@v1")
    # a retrained version's base set is the original one, not its own feedback-mixed file
    assert registry.get(home, res.candidate).meta["metrics"]["retrain"]["base_data"] == [str(chain_env["data"])]


def test_background_job_retrains_and_a_fresh_page_follows_it(home: Settings, chain_env: dict,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    audit_id, example = _turn(chain_env, Q_TOOL)
    add_feedback(home.app_db, audit_id, "wang", 1, example)
    job = background.start_retrain(home, "claims", ["--max-steps", "2", "--eval-steps", "1"])
    with pytest.raises(AssistantError, match="already running"):
        background.start_retrain(home, "claims")
    deadline = time.time() + 240
    while job.status == "running" and time.time() < deadline:
        time.sleep(1)
    assert job.status == "done", job.log_tail()
    state = job.state
    assert state["result"]["candidate"] == "claims@v2" and Path(state["run"]).is_dir()
    assert [e["step"] for e in job.metrics() if e["event"] == "step"] == [1, 2]
    # a page opened afterwards (another session) shows the job, its loss chart and its verdict
    ensure_demo_users(home.app_db)
    for k, v in {"ASSISTANT_HOME": str(home.home), "ASSISTANT_MODEL": str(chain_env["tiny"])}.items():
        monkeypatch.setenv(k, v)
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.text_input(key="login_name").input("admin")
    at.text_input(key="login_password").input(next(p for n, p, _, _ in DEMO_USERS if n == "admin"))
    at.button(key="login").click().run()
    at.sidebar.radio(key="page").set_value("🧩 Adapters").run()
    assert not at.exception, at.exception
    assert any(f"job `{job.id}` — **done**" in m.value for m in at.markdown)
    assert at.success and "claims@v2: held-out loss" in at.success[0].value
    assert "claims@v2" in list(at.dataframe[0].value["version"])
