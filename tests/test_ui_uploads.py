"""Uploads through the real Knowledge-base page (AppTest, real ingest): a second department's file of the same
name must neither overwrite the first one's bytes nor replace its document unless the admin says so, and
ingests and removals land in the audit log (issue 10)."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from assistant.app.users import add_user
from core.audit import list_events
from core.settings import Settings
from ingest import pipeline

APP = str(Path(__file__).resolve().parent.parent / "ui" / "app.py")
PASSWORD = "Quiet-Harbour-Lantern-2026"
HR = "# 员工手册\n\n## 薪酬\n\n年终奖为三个月工资，HR-HANDBOOK-SECRET。\n".encode()
SALES = "# 员工手册\n\n## 销售\n\n销售手册，公开给销售部。\n".encode()


def upload(at: AppTest, dept: str, data: bytes, replace: bool = False) -> AppTest:
    at.text_input(key="kb_dept").input(dept)
    at.checkbox(key="kb_replace").set_value(replace)
    at.file_uploader(key="kb_files").set_value([("handbook.md", data, "text/markdown")]).run()
    at.button(key="kb_ingest").click().run()
    assert not at.exception, at.exception
    return at


def test_same_name_upload_is_refused_unless_replaced_and_everything_is_audited(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings(home=tmp_path / "home")
    monkeypatch.setenv("ASSISTANT_HOME", str(settings.home))
    add_user(settings.app_db, "root", PASSWORD, "admin", "operations")
    at = AppTest.from_file(APP, default_timeout=120).run()
    at.text_input(key="login_name").input("root")
    at.text_input(key="login_password").input(PASSWORD)
    at.button(key="login").click().run()
    at.sidebar.radio(key="page").set_value("Knowledge base").run()
    at.text_input(key="kb_new").input("team").run()

    upload(at, "hr", HR)
    [hr_doc] = pipeline.list_documents(settings, "team")
    assert hr_doc["department"] == "hr"

    upload(at, "sales", SALES)  # before: stored over the HR file and re-ingested as sales: HR text to sales
    assert any("already in 'team'" in e.value and "handbook.md" in e.value for e in at.error)
    [doc] = pipeline.list_documents(settings, "team")
    assert doc["doc_id"] == hr_doc["doc_id"] and doc["department"] == "hr"
    assert Path(hr_doc["path"]).read_bytes() == HR  # the HR file was not touched

    upload(at, "sales", SALES, replace=True)  # explicit: the new file replaces the old document
    [new] = pipeline.list_documents(settings, "team")
    assert new["department"] == "sales" and new["doc_id"] != hr_doc["doc_id"] and new["path"] != hr_doc["path"]
    assert Path(new["path"]).read_bytes() == SALES and Path(hr_doc["path"]).read_bytes() == HR
    assert any("replaced the earlier document" in i.value for i in at.info)

    at.selectbox(key="kb_remove_doc").set_value(new["doc_id"]).run()
    at.button(key="kb_remove").click().run()
    ingests = list_events(settings.audit_db, "document_ingest")
    assert [e["user"] for e in ingests] == ["root"] * 3
    assert ingests[1]["detail"]["refused"] and not ingests[1]["detail"]["files"]
    assert ingests[0]["detail"]["replaced"][0]["doc_id"] == hr_doc["doc_id"]
    assert ingests[2]["detail"]["files"][0] | {"reason": None} == {"file": "handbook.md", "status": "added",
                                                                   "doc_id": hr_doc["doc_id"], "reason": None}
    [removed] = list_events(settings.audit_db, "document_remove")
    assert removed["user"] == "root" and removed["detail"]["doc_id"] == new["doc_id"]
