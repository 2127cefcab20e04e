"""The job queue in the app database (SQLite's app.db, or the schema `app` on PostgreSQL): training and
retraining jobs enqueued by any app server, claimed by whichever node runs `finetune worker`.

Semantics:
- a job is claimed by exactly one worker: on PostgreSQL `SELECT ... FOR UPDATE SKIP LOCKED` (workers never
  wait on each other's row), on SQLite one atomic UPDATE (its single writer does the rest);
- the worker heartbeats the job (and itself) every few seconds with the job's phase, state, metrics and log tail,
  so every app server shows the same job page;
- a running job whose heartbeat is older than `STALE_S` lost its worker (killed, node down): it is queued again
  once (`MAX_ATTEMPTS` claims in all: training starts afresh on the next worker), then marked failed;
- a cancel is a flag the job's worker reads at its next heartbeat (a queued job is cancelled at once).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from core import db
from core.settings import Settings

STALE_S = 60.0  # a job (or worker) silent this long has lost its worker
MAX_ATTEMPTS = 2  # claims of one job: the first, and one more after its worker died
WORKER_SEEN_S = 30.0  # a worker that heartbeated this recently takes new jobs (else the app runs them itself)

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,             -- time-ordered: 20261207T101500-ab12
    name TEXT NOT NULL,              -- the adapter it trains
    args TEXT NOT NULL,              -- JSON list: the `finetune` command line (without --job-dir)
    status TEXT NOT NULL,            -- queued | running | done | failed | cancelled
    state TEXT,                      -- JSON: the job's own progress record (phase, run, result, error)
    metrics TEXT,                    -- JSON list: the training run's events so far
    log_tail TEXT,
    worker TEXT,                     -- who holds it (host:pid:nonce), NULL while queued
    heartbeat REAL,                  -- unix time of the holder's last sign of life
    attempts INTEGER NOT NULL DEFAULT 0,
    cancel INTEGER NOT NULL DEFAULT 0,
    created TEXT NOT NULL,
    started TEXT,
    finished TEXT
);
CREATE INDEX IF NOT EXISTS jobs_queued ON jobs(status, id);
CREATE TABLE IF NOT EXISTS workers (
    id TEXT PRIMARY KEY,
    heartbeat REAL NOT NULL,
    job TEXT
);
"""


@contextmanager
def connect(settings: Settings) -> Iterator[Any]:
    with db.connect(settings.app_db, SCHEMA, synchronous="NORMAL") as conn:
        yield conn


@dataclass
class QueuedJob:
    """A job of the queue, read the way the Adapters page reads a local job (`finetune.background.Job`)."""

    id: str
    name: str
    args: list[str]
    row_status: str
    data: dict[str, Any]
    metrics_rows: list[dict[str, Any]]
    tail: str
    worker: str | None
    created: str
    started_at: str | None

    @property
    def kind(self) -> str:
        return self.args[0] if self.args else "retrain"

    @property
    def started(self) -> str:
        return self.started_at or self.created

    @property
    def state(self) -> dict[str, Any]:
        if self.row_status == "queued":
            return {"phase": "queued"}
        return self.data or {"phase": "starting"}

    @property
    def status(self) -> str:
        """running (queued counts: it will run) | done | failed | cancelled."""
        return "running" if self.row_status in ("queued", "running") else self.row_status

    @property
    def alive(self) -> bool:
        return self.row_status in ("queued", "running")

    def log_tail(self, chars: int = 3000) -> str:
        return self.tail[-chars:]

    def metrics(self) -> list[dict[str, Any]]:
        return self.metrics_rows


def _job(row: Any) -> QueuedJob:
    return QueuedJob(row["id"], row["name"], json.loads(row["args"]), row["status"], json.loads(row["state"] or "{}"),
                     json.loads(row["metrics"] or "[]"), row["log_tail"] or "", row["worker"], row["created"],
                     row["started"])


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def enqueue(settings: Settings, job_id: str, name: str, args: list[str]) -> QueuedJob:
    with connect(settings) as conn:
        conn.execute("INSERT INTO jobs (id, name, args, status, created) VALUES (?, ?, ?, 'queued', ?)",
                     (job_id, name, json.dumps(args), _now_iso()))
        return _job(conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone())


def list_jobs(settings: Settings, name: str | None = None) -> list[QueuedJob]:
    """Newest first."""
    with connect(settings) as conn:
        rows = conn.execute("SELECT * FROM jobs" + (" WHERE name = ?" if name else "") + " ORDER BY id DESC",
                            (name,) if name else ()).fetchall()
    return [_job(r) for r in rows]


def get(settings: Settings, job_id: str) -> QueuedJob | None:
    with connect(settings) as conn:
        row = conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
    return _job(row) if row else None


def claim(settings: Settings, worker: str, now: float | None = None) -> QueuedJob | None:
    """The oldest queued job, now held by `worker`; None when nothing waits. Never the same job to two workers."""
    now = time.time() if now is None else now
    with connect(settings) as conn:
        # PostgreSQL: lock the chosen row, skipping rows other workers are claiming; SQLite: one writer at a time
        lock = " FOR UPDATE SKIP LOCKED" if db.dialect(conn) == "postgres" else ""
        row = conn.execute(
            "UPDATE jobs SET status = 'running', worker = ?, heartbeat = ?, attempts = attempts + 1, started = ?, "
            "state = NULL, metrics = NULL, log_tail = NULL WHERE id = (SELECT id FROM jobs WHERE status = 'queued' "
            f"AND cancel = 0 ORDER BY id LIMIT 1{lock}) AND status = 'queued' RETURNING *",
            (worker, now, _now_iso())).fetchone()
    return _job(row) if row else None


def heartbeat(settings: Settings, job_id: str, worker: str, state: dict[str, Any], metrics: list[dict[str, Any]],
              log_tail: str, now: float | None = None) -> tuple[bool, bool]:
    """Record a running job's progress; (still held by `worker`, cancel requested). Not held: it was taken back
    (its heartbeat went stale) and the worker must stop it."""
    now = time.time() if now is None else now
    with connect(settings) as conn:
        row = conn.execute(
            "UPDATE jobs SET heartbeat = ?, state = ?, metrics = ?, log_tail = ? WHERE id = ? AND worker = ? AND "
            "status = 'running' RETURNING cancel",
            (now, json.dumps(state, default=str), json.dumps(metrics[-2000:], default=str), log_tail[-8000:],
             job_id, worker)).fetchone()
    return row is not None, bool(row and row["cancel"])


def finish(settings: Settings, job_id: str, worker: str, status: str, state: dict[str, Any],
           metrics: list[dict[str, Any]], log_tail: str) -> bool:
    """The job's end (done | failed | cancelled), if `worker` still holds it."""
    with connect(settings) as conn:
        return conn.execute(
            "UPDATE jobs SET status = ?, state = ?, metrics = ?, log_tail = ?, finished = ?, heartbeat = ? "
            "WHERE id = ? AND worker = ? AND status = 'running'",
            (status, json.dumps(state, default=str), json.dumps(metrics[-2000:], default=str), log_tail[-8000:],
             _now_iso(), time.time(), job_id, worker)).rowcount == 1


def cancel(settings: Settings, job_id: str) -> None:
    """A queued job is cancelled now; a running one when its worker next heartbeats."""
    with connect(settings) as conn:
        conn.execute("UPDATE jobs SET status = 'cancelled', finished = ? WHERE id = ? AND status = 'queued'",
                     (_now_iso(), job_id))
        conn.execute("UPDATE jobs SET cancel = 1 WHERE id = ? AND status = 'running'", (job_id,))


def recover(settings: Settings, now: float | None = None, stale_s: float = STALE_S) -> list[str]:
    """Jobs whose worker went silent: queued again while attempts remain, else failed. Returns their ids. Each
    row is re-checked under its row lock, so two workers recovering at once change it once."""
    now = time.time() if now is None else now
    with connect(settings) as conn:
        again = conn.execute(
            "UPDATE jobs SET status = 'queued', worker = NULL WHERE status = 'running' AND heartbeat < ? "
            "AND attempts < ? AND cancel = 0 RETURNING id", (now - stale_s, MAX_ATTEMPTS)).fetchall()
        lost = {"phase": "failed", "error": f"its worker stopped (no heartbeat for {stale_s:.0f} s) "
                f"{MAX_ATTEMPTS} times" if MAX_ATTEMPTS > 1 else "its worker stopped"}
        failed = conn.execute(
            "UPDATE jobs SET status = CASE WHEN cancel = 1 THEN 'cancelled' ELSE 'failed' END, state = ?, "
            "finished = ? WHERE status = 'running' AND heartbeat < ? RETURNING id",
            (json.dumps(lost), _now_iso(), now - stale_s)).fetchall()
    return [r["id"] for r in again] + [r["id"] for r in failed]


def worker_alive(settings: Settings, worker: str, job: str | None, now: float | None = None) -> None:
    """A worker's own heartbeat: app servers hand jobs to the queue only while some worker is seen."""
    now = time.time() if now is None else now
    with connect(settings) as conn:
        conn.execute("INSERT INTO workers (id, heartbeat, job) VALUES (?, ?, ?) ON CONFLICT (id) DO UPDATE SET "
                     "heartbeat = excluded.heartbeat, job = excluded.job", (worker, now, job))
        conn.execute("DELETE FROM workers WHERE heartbeat < ?", (now - 24 * 3600,))  # long gone


def worker_gone(settings: Settings, worker: str) -> None:
    with connect(settings) as conn:
        conn.execute("DELETE FROM workers WHERE id = ?", (worker,))


def workers_seen(settings: Settings, now: float | None = None) -> int:
    now = time.time() if now is None else now
    with connect(settings) as conn:
        return int(conn.execute("SELECT COUNT(*) FROM workers WHERE heartbeat >= ?",
                                (now - WORKER_SEEN_S,)).fetchone()[0])
