"""App state on PostgreSQL (issue 31) on a real server, and the job queue on both databases: the audit refuses
tampering through SQL and keeps one chain under two appending processes; two workers never claim the same job;
a dead worker's job is queued again once, then failed; a bad database setting is a clear error."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest

from core import audit_chain, db
from core.audit import AuditLog, record_event
from core.errors import AssistantError
from core.settings import Settings
from finetune import background, queue
from finetune.worker import Worker

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def pg_home(tmp_path: Path, postgres_url: str) -> Iterator[Settings]:
    settings = Settings(home=tmp_path / "home", database_url=postgres_url)
    db.use_settings(settings)
    yield settings
    db.use(settings.home, None)


@pytest.fixture(params=["sqlite", "postgres"])
def any_home(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Settings]:
    if request.param == "sqlite":
        yield Settings(home=tmp_path / "home")
        return
    yield request.getfixturevalue("pg_home")


def _audit_with_rows(settings: Settings) -> AuditLog:
    log = AuditLog(settings.audit_db)
    for i in range(3):
        log.record(user="li", role="claims", question=f"第{i}个问题", answer="出险后十日内报案。", latency_s=3,
                   retrieval_ms=float("nan"), tokens_per_s=12.5, thinking_mode=False, status="complete")
    record_event(log, "login", "li", address="10.0.0.7")
    return log


@pytest.mark.parametrize("attack", [
    "UPDATE turns SET answer = 'nothing to report' WHERE id = 2",
    "DELETE FROM turns WHERE id = 3",
    "TRUNCATE turns",
    "UPDATE events SET detail = '{}'",
    "DELETE FROM audit_chain",
    "INSERT INTO turns (id, ts, \"user\", question, retrieved, tool_calls) VALUES (2, 'x', 'x', 'x', '[]', '[]') "
    "ON CONFLICT (id) DO UPDATE SET question = 'forged'",
])
def test_tampering_through_sql_is_refused(pg_home: Settings, attack: str) -> None:
    _audit_with_rows(pg_home)
    with psycopg.connect(pg_home.database_url) as conn:  # as anyone with the database's password
        conn.execute("SET search_path TO audit")
        with pytest.raises(psycopg.Error, match="append-only"):
            conn.execute(attack.encode())
    assert audit_chain.verify(pg_home.audit_db).intact


def test_edits_around_the_triggers_are_found_by_verify(pg_home: Settings) -> None:
    _audit_with_rows(pg_home)
    with psycopg.connect(pg_home.database_url, autocommit=True) as conn:
        conn.execute("SET search_path TO audit")
        conn.execute("ALTER TABLE turns DISABLE TRIGGER turns_no_update")
        conn.execute("UPDATE turns SET answer = 'nothing to report' WHERE id = 2")
    verdict = audit_chain.verify(pg_home.audit_db)
    assert not verdict.intact
    assert any("turns_no_update" in p for p in verdict.problems)
    assert any(p.startswith("turns #2:") for p in verdict.problems)


def test_verify_cli_reads_postgresql(pg_home: Settings) -> None:
    _audit_with_rows(pg_home)
    from typer.testing import CliRunner

    from assistant.cli import app

    r = CliRunner().invoke(app, ["audit", "verify", "--home", str(pg_home.home)],
                           env={"ASSISTANT_DATABASE_URL": pg_home.database_url})
    assert r.exit_code == 0 and "turns: 3 rows chained, head #3" in r.output, r.output


APPENDER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from core import db
    from core.audit import AuditLog, record_event
    db.use(Path(sys.argv[1]), sys.argv[2])
    log = AuditLog(Path(sys.argv[1]) / "audit.db")
    for i in range(int(sys.argv[3])):
        if i % 2:
            record_event(log, "login", sys.argv[4], n=i)
        else:
            log.record(user=sys.argv[4], question=f"q{i}", latency_s=i)
""")


def test_two_processes_appending_at_once_keep_one_chain(pg_home: Settings) -> None:
    AuditLog(pg_home.audit_db)  # the schema exists: both processes start appending at once
    procs = [subprocess.Popen([sys.executable, "-c", APPENDER, str(pg_home.home), str(pg_home.database_url), "60",
                               who], cwd=ROOT) for who in ("a", "b")]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    verdict = audit_chain.verify(pg_home.audit_db)
    assert verdict.intact, verdict.problems
    assert verdict.rows == {"turns": 60, "events": 60}


def test_a_bad_database_setting_is_a_clear_error(tmp_path: Path, postgres_server: object) -> None:
    with pytest.raises(AssistantError, match="ASSISTANT_DATABASE_URL must look like postgresql://"):
        db.use(tmp_path, "mysql://x@y/z")
    url = "postgresql://nobody:secret@127.0.0.1:1/nothing"
    db.use(tmp_path, url)
    try:
        with pytest.raises(AssistantError, match="cannot use the database ASSISTANT_DATABASE_URL") as err:
            AuditLog(tmp_path / "audit.db")
        assert "secret" not in str(err.value)
    finally:
        db.use(tmp_path, None)
    from typer.testing import CliRunner

    from assistant.cli import app

    r = CliRunner().invoke(app, ["audit", "verify", "--home", str(tmp_path)], env={"ASSISTANT_DATABASE_URL": url})
    assert r.exit_code == 2 and "cannot use the database" in r.output and "Traceback" not in r.output, r.output


# the job queue: both databases


def _enqueue(settings: Settings, n: int, name: str = "claims") -> list[str]:
    ids = [f"20261207T1000{i:02d}-{i:04x}" for i in range(n)]
    for job_id in ids:
        queue.enqueue(settings, job_id, name, ["retrain", name])
    return ids


def test_two_workers_never_claim_the_same_job(any_home: Settings) -> None:
    ids = _enqueue(any_home, 24)

    def drain(worker: str) -> list[str]:
        got = []
        while job := queue.claim(any_home, worker):
            got.append(job.id)
        return got

    with ThreadPoolExecutor(4) as pool:
        claimed = list(pool.map(drain, ["w1", "w2", "w3", "w4"]))
    flat = [j for c in claimed for j in c]
    assert sorted(flat) == ids  # every job once, none twice
    assert {j.row_status for j in queue.list_jobs(any_home)} == {"running"}


CLAIMER = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    from core import db
    from core.settings import Settings
    from finetune import queue
    settings = Settings(home=Path(sys.argv[1]), database_url=sys.argv[2])
    db.use_settings(settings)
    got = []
    while job := queue.claim(settings, sys.argv[3]):
        got.append(job.id)
    print(json.dumps(got))
""")


def test_two_worker_processes_never_claim_the_same_job_on_postgresql(pg_home: Settings) -> None:
    ids = _enqueue(pg_home, 40)
    procs = [subprocess.Popen([sys.executable, "-c", CLAIMER, str(pg_home.home), str(pg_home.database_url), w],
                              cwd=ROOT, stdout=subprocess.PIPE, text=True) for w in ("p1", "p2")]
    claimed = [json.loads(p.communicate(timeout=120)[0]) for p in procs]
    assert sorted(claimed[0] + claimed[1]) == ids


def test_a_dead_workers_job_is_queued_again_once_then_failed(any_home: Settings) -> None:
    [job_id] = _enqueue(any_home, 1)
    t0 = time.time()
    assert queue.claim(any_home, "dead-1", now=t0 - 500).id == job_id  # claimed, then never heard of again
    assert queue.recover(any_home, now=t0) == [job_id]
    job = queue.get(any_home, job_id)
    assert job.row_status == "queued" and job.worker is None
    assert queue.claim(any_home, "dead-2", now=t0 - 400).id == job_id
    assert queue.heartbeat(any_home, job_id, "dead-1", {}, [], "", now=t0 - 399) == (False, False)  # not its job
    assert queue.recover(any_home, now=t0) == [job_id]
    job = queue.get(any_home, job_id)
    assert job.row_status == "failed" and "no heartbeat" in job.state["error"] and job.status == "failed"
    assert queue.claim(any_home, "w") is None


JOB_SCRIPT = textwrap.dedent("""
    import json, sys, time
    from pathlib import Path
    job_dir = Path(sys.argv[sys.argv.index("--job-dir") + 1])
    seconds, outcome = sys.argv[1:sys.argv.index("--job-dir")][-2:]
    run = job_dir / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text(json.dumps({"event": "start", "step": 0, "total_steps": 2,
                                                   "train_examples": 4}) + "\\n")
    (job_dir / "state.json").write_text(json.dumps({"phase": "training", "run": str(run)}))
    print("training", flush=True)
    time.sleep(float(seconds))
    if outcome == "ok":
        (job_dir / "state.json").write_text(json.dumps({"phase": "done", "run": str(run), "result": {"x": 1}}))
    sys.exit(0 if outcome == "ok" else 3)
""")


def _script_worker(settings: Settings, name: str = "w") -> Worker:
    return Worker(settings, heartbeat_s=0.2, poll_s=0.1, name=name,
                  command=lambda args: [sys.executable, "-c", JOB_SCRIPT, *args])


def test_a_worker_runs_queued_jobs_and_the_page_follows_them(any_home: Settings) -> None:
    assert queue.workers_seen(any_home) == 0
    local = background.list_jobs(any_home)
    assert local == []
    queue.worker_alive(any_home, "w", None)  # a worker is seen: new jobs go to the queue, not a local process
    first = background.start_retrain(any_home, "claims", ["0.6", "ok"])
    assert isinstance(first, queue.QueuedJob) and first.status == "running" and first.state["phase"] == "queued"
    with pytest.raises(AssistantError, match="already running"):
        background.start_retrain(any_home, "claims")
    queue.enqueue(any_home, "20991231T000000-ffff", "billing", ["0.1", "fail"])
    assert _script_worker(any_home).run(once=True) == 2
    done, failed = (queue.get(any_home, first.id), queue.get(any_home, "20991231T000000-ffff"))
    assert done.status == "done" and done.state["result"] == {"x": 1} and "training" in done.log_tail()
    assert done.metrics()[0]["total_steps"] == 2
    assert failed.status == "failed" and "exited with code 3" in failed.state["error"]
    assert [j.id for j in background.list_jobs(any_home)] == [failed.id, first.id]
    assert queue.workers_seen(any_home) == 0  # the worker said goodbye


def test_a_running_job_is_cancelled_through_the_queue(any_home: Settings) -> None:
    job_id = queue.enqueue(any_home, "20261207T100000-0001", "claims", ["60", "ok"]).id
    worker = _script_worker(any_home)
    job = queue.claim(any_home, worker.id)
    queue.cancel(any_home, job_id)  # the flag: read at the worker's next heartbeat
    t0 = time.monotonic()
    assert worker.run_job(job) == "cancelled" and time.monotonic() - t0 < 8
    assert queue.get(any_home, job_id).status == "cancelled"


def test_the_worker_command_drains_the_queue_and_says_so(any_home: Settings) -> None:
    from typer.testing import CliRunner

    from finetune.cli import app

    env = {"ASSISTANT_DATABASE_URL": any_home.database_url} if any_home.database_url else {}
    r = CliRunner().invoke(app, ["worker", "--once", "--home", str(any_home.home)], env=env)
    assert r.exit_code == 0 and "0 job(s) run" in r.output, r.output
    assert queue.workers_seen(any_home) == 0


def test_concurrent_requests_never_pass_a_keys_rate_limit(any_home: Settings) -> None:
    from assistant.app import api_keys
    from assistant.app.users import add_user

    add_user(any_home.app_db, "li", "claims-pass-1", "claims", "claims")
    key, token = api_keys.create_key(any_home.app_db, "li", rpm=10)
    now = (time.time() // 60) * 60 + 1  # early in a minute: the previous minute weighs nothing

    def attempt(_: int) -> bool:
        try:
            api_keys.admit(any_home.app_db, key, now=now)
            return True
        except api_keys.LimitExceeded:
            return False

    with ThreadPoolExecutor(8) as pool:
        admitted = list(pool.map(attempt, range(30)))
    assert sum(admitted) == 10
    [row] = api_keys.usage(any_home.app_db, 1)
    assert (row["requests"], row["refused"]) == (10, 20)
    # the tokens of answered requests add up the same way, from threads at once (cached answers counted apart)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: api_keys.record_tokens(any_home.app_db, key, 100, cached=i % 2 == 0), range(10)))
    [row] = api_keys.usage(any_home.app_db, 1)
    assert (row["tokens"], row["cached"]) == (1000, 5)
    assert api_keys.authenticate(any_home.app_db, token, "chat")[0].id == key.id


def test_a_kept_api_turn_is_rated_by_its_user_only_and_expires(any_home: Settings) -> None:
    from core import feedback

    example = {"messages": [{"role": "user", "content": "出险后几天内报案？"},
                            {"role": "assistant", "content": "十日内报案。"}]}
    feedback.keep_turn(any_home.app_db, 41, "li", example, "claims@v1", keep_days=30)
    feedback.keep_turn(any_home.app_db, 41, "li", {"messages": []}, None, keep_days=30)  # kept once: first wins
    with pytest.raises(AssistantError, match="no answered turn 41 of user 'wang'"):
        feedback.feedback_on_kept_turn(any_home.app_db, 41, "wang", -1, "not mine")
    fid = feedback.feedback_on_kept_turn(any_home.app_db, 41, "li", -1, "号码错了", "十日内拨打 95500-88 报案。")
    again = feedback.feedback_on_kept_turn(any_home.app_db, 41, "li", 1)  # the latest word of a user counts
    rows = feedback.list_feedback(any_home.app_db, "li")
    assert again == fid and len(rows) == 1 and rows[0]["rating"] == 1 and rows[0]["example"] == example
    assert rows[0]["adapter"] == "claims@v1" and rows[0]["correction"] is None
    with feedback.connect(any_home.app_db) as conn:  # a turn past the keep period is dropped by the next write
        conn.execute("UPDATE turn_examples SET created = ? WHERE audit_id = ?", ("2020-01-01T00:00:00+00:00", 41))
    feedback.keep_turn(any_home.app_db, 42, "li", example, None, keep_days=30)
    with pytest.raises(AssistantError, match="no answered turn 41"):
        feedback.feedback_on_kept_turn(any_home.app_db, 41, "li", 1)
