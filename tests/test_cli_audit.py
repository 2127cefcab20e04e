"""Documents added or removed from the terminal are audited like those added in the UI."""

from __future__ import annotations

import getpass
from pathlib import Path

from typer.testing import CliRunner

from core.audit import list_events
from core.settings import Settings
from ingest.cli import app


def test_ingest_add_and_remove_from_the_cli_are_audit_events(settings: Settings, docs_dir: Path) -> None:
    (docs_dir / "handbook.md").write_text("# 报案\n\n## 第一条\n\n出险后十日内报案。\n", encoding="utf-8")
    home = ["--home", str(settings.home)]
    runner = CliRunner()
    assert runner.invoke(app, ["add", str(docs_dir / "handbook.md"), "--department", "Claims", *home]).exit_code == 0
    assert runner.invoke(app, ["remove", "handbook.md", *home]).exit_code == 0
    added, = list_events(settings.audit_db, "document_ingest")
    removed, = list_events(settings.audit_db, "document_remove")
    assert added["user"] == removed["user"] == f"cli:{getpass.getuser()}"
    assert added["detail"]["department"] == "claims"
    assert added["detail"]["files"][0]["file"] == "handbook.md" and added["detail"]["files"][0]["status"] == "added"
    assert removed["detail"]["source"] == "handbook.md" and removed["detail"]["doc_id"]
