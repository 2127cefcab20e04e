"""The audit log is tamper-evident (issue 29): `INSERT OR REPLACE` on an existing id is refused, and edits made
around the triggers (dropped, then UPDATE, DELETE or REPLACE) are found by `assistant audit verify`, which names
the first broken link. Every attack runs on a real audit.db through a plain sqlite3 connection, as anyone with
the file would; the CLI is the real one."""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path

import pytest
from typer.testing import CliRunner

from assistant.cli import app
from core import audit_chain
from core.audit import AuditLog, list_events, record_event

runner = CliRunner()

# the schema of the release before the chain (no hash column, no marker, no INSERT trigger)
OLD_SCHEMA = """
CREATE TABLE turns (id INTEGER PRIMARY KEY AUTOINCREMENT, ts TEXT NOT NULL, user TEXT NOT NULL, role TEXT,
    department TEXT, conversation_id TEXT, question TEXT NOT NULL, kb TEXT, retrieved TEXT NOT NULL, model TEXT,
    adapter TEXT, thinking_mode INTEGER, tool_calls TEXT NOT NULL, answer TEXT, thinking TEXT, cited TEXT,
    latency_s REAL, retrieval_ms REAL, prefill_s REAL, tokens_per_s REAL, error TEXT, status TEXT,
    malformed_calls TEXT, guard TEXT);
CREATE TRIGGER turns_no_update BEFORE UPDATE ON turns BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
CREATE TRIGGER turns_no_delete BEFORE DELETE ON turns BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
CREATE TABLE events (id INTEGER PRIMARY KEY AUTOINCREMENT, ts TEXT NOT NULL, event TEXT NOT NULL,
    user TEXT NOT NULL, detail TEXT NOT NULL);
CREATE TRIGGER events_no_update BEFORE UPDATE ON events BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
CREATE TRIGGER events_no_delete BEFORE DELETE ON events BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
"""


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A data home whose audit log holds three turns (with the kinds of values a turn records) and two events."""
    home = tmp_path / "home"
    log = AuditLog(home / "audit.db")
    for i in range(3):
        log.record(user="li", role="claims", department="claims", question=f"第{i}个问题", answer="出险后十日内报案。",
                   retrieved=[{"chunk_id": "c:1:0", "score": 0.91}], tool_calls=[], latency_s=3, thinking_mode=False,
                   retrieval_ms=float("nan"), tokens_per_s=12.5, status="complete")
    record_event(log, "login", "li", address="10.0.0.7")
    record_event(log, "adapter_promoted", "admin", version="claims@v2")
    return home


def _attacker(home: Path) -> sqlite3.Connection:
    """What anyone with write access to the file has: a plain connection, default pragmas."""
    return sqlite3.connect(home / "audit.db", isolation_level=None)


def _verify(home: Path) -> tuple[int, str]:
    r = runner.invoke(app, ["audit", "verify", "--home", str(home)])
    return r.exit_code, r.output


def test_an_intact_log_verifies(home: Path) -> None:
    code, output = _verify(home)
    assert code == 0 and "intact" in output and "turns: 3 rows chained, head #3" in output, output


@pytest.mark.sqlite_only
def test_replace_on_an_existing_id_is_refused(home: Path) -> None:
    """Before: REPLACE rewrote turn 1's question and answer (it deletes without firing the DELETE trigger)."""
    conn = _attacker(home)
    for sql in ("INSERT OR REPLACE INTO turns (id, ts, user, question, retrieved, tool_calls, answer) "
                "VALUES (1, 'x', 'li', '改过的问题', '[]', '[]', '改过的答案')",
                "REPLACE INTO events (id, ts, event, user, detail) VALUES (1, 'x', 'nothing', 'li', '{}')",
                "INSERT INTO turns (id, ts, user, question, retrieved, tool_calls) VALUES (2, 'x', 'li', 'q', '[]', '[]')"
                " ON CONFLICT (id) DO UPDATE SET question = 'edited'"):
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            conn.execute(sql)
    conn.close()
    assert AuditLog(home / "audit.db").get(1)["question"] == "第0个问题"
    assert list_events(home / "audit.db")[-1]["event"] == "login"
    assert _verify(home)[0] == 0


@pytest.mark.sqlite_only
@pytest.mark.parametrize("attack, broken", [
    (["DROP TRIGGER turns_no_reuse", "DROP TRIGGER turns_no_delete",
      "REPLACE INTO turns (id, ts, user, question, retrieved, tool_calls) VALUES (2, 'x', 'li', '改过', '[]', '[]')"],
     "turns #2 has no hash"),
    (["DROP TRIGGER turns_no_update", "UPDATE turns SET answer = '无需报案。' WHERE id = 2"],
     "turns #2: its content"),
    (["DROP TRIGGER turns_no_delete", "DELETE FROM turns WHERE id = 2"], "turns #2 missing before #3"),
    (["DROP TRIGGER turns_no_delete", "DELETE FROM turns WHERE id = 3"], "turns #3-#3 missing at the end"),
    (["DROP TRIGGER events_no_update", "UPDATE events SET event = 'nothing' WHERE id = 1"], "events #1: its content"),
])
def test_edits_around_the_triggers_break_the_chain(home: Path, attack: list[str], broken: str) -> None:
    conn = _attacker(home)
    for sql in attack:
        conn.execute(sql)
    conn.close()
    code, output = _verify(home)
    assert code == 1 and broken in output and "triggers dropped" in output, output


@pytest.mark.sqlite_only
def test_recomputing_the_edited_rows_hash_breaks_the_next_link(home: Path) -> None:
    conn = _attacker(home)
    conn.row_factory = sqlite3.Row
    conn.execute("DROP TRIGGER turns_no_update")
    row = dict(conn.execute("SELECT * FROM turns WHERE id = 2").fetchone()) | {"answer": "无需报案。"}
    prev = conn.execute("SELECT hash FROM turns WHERE id = 1").fetchone()[0]
    conn.execute("UPDATE turns SET answer = ?, hash = ? WHERE id = 2", (row["answer"], audit_chain.row_hash(
        prev, "turns", row)))
    conn.executescript(";".join(audit_chain.guard_statements("turns")))  # and the trigger put back
    conn.close()
    code, output = _verify(home)
    assert code == 1 and "turns #3: its content or its link to #2" in output and "triggers" not in output, output


@pytest.mark.sqlite_only
def test_a_log_from_before_the_chain_is_chained_once_on_open(tmp_path: Path) -> None:
    path = tmp_path / "home" / "audit.db"
    path.parent.mkdir()
    conn = sqlite3.connect(path)
    conn.executescript(OLD_SCHEMA)
    with conn:
        conn.execute("INSERT INTO turns (ts, user, question, retrieved, tool_calls, latency_s) "
                     "VALUES ('2026-01-01', 'li', '旧问题', '[]', '[]', 2)")
        conn.execute("INSERT INTO events (ts, event, user, detail) VALUES ('2026-01-01', 'login', 'li', '{}')")
    conn.close()
    assert audit_chain.needs_migration(path)
    log = AuditLog(path)
    hashes = {(r["table"], r["id"]): r["hash"] for r in audit_chain.export(path)}
    assert len(hashes) == 2 and all(hashes.values()) and not audit_chain.needs_migration(path)
    log.record(user="wang", question="新问题")
    AuditLog(path)  # a second open hashes nothing again
    assert {(r["table"], r["id"]): r["hash"] for r in audit_chain.export(path) if r["id"] == 1} == hashes
    code, output = _verify(tmp_path / "home")
    assert code == 0 and "turns: 2 rows chained" in output, output
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        _attacker(tmp_path / "home").execute("REPLACE INTO events (id, ts, event, user, detail) "
                                             "VALUES (1, 'x', 'nothing', 'li', '{}')")


@pytest.mark.sqlite_only
def test_dropping_the_marker_does_not_get_edits_rehashed(home: Path) -> None:
    conn = _attacker(home)
    conn.executescript("DROP TRIGGER audit_chain_no_delete; DELETE FROM audit_chain; DROP TRIGGER turns_no_update;"
                       "UPDATE turns SET answer = '无需报案。' WHERE id = 1;")
    conn.close()
    AuditLog(home / "audit.db")  # an open would migrate a log from before the chain; this one is not
    code, output = _verify(home)
    assert code == 1 and "turns #1: its content" in output, output


def test_concurrent_writers_keep_one_chain(home: Path) -> None:
    def write(k: int) -> None:
        for i in range(15):
            record_event(home / "audit.db", "login", f"user{k}", attempt=i)

    threads = [threading.Thread(target=write, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    verdict = audit_chain.verify(home / "audit.db")
    assert verdict.intact and verdict.rows["events"] == 2 + 60, verdict.problems


def test_export_ships_new_rows_as_json_lines_that_verify_elsewhere(home: Path, tmp_path: Path) -> None:
    state = tmp_path / "export-state.json"
    args = ["audit", "export", "--state", str(state), "--home", str(home)]
    first = [json.loads(line) for line in runner.invoke(app, args).output.splitlines()]
    assert [(r["table"], r["id"]) for r in first] == [("turns", 1), ("turns", 2), ("turns", 3), ("events", 1),
                                                       ("events", 2)]
    for table in audit_chain.TABLES:  # the shipped copy carries its own proof
        prev = ""
        for row in (r for r in first if r["table"] == table):
            assert audit_chain.row_hash(prev, table, {k: v for k, v in row.items() if k != "table"}) == row["hash"]
            prev = row["hash"]
    record_event(home / "audit.db", "logout", "li")
    second = [json.loads(line) for line in runner.invoke(app, args).output.splitlines()]
    assert [(r["table"], r["id"], r["event"]) for r in second] == [("events", 3, "logout")]
    assert runner.invoke(app, args).output == ""
