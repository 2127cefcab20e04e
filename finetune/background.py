"""Training and retraining jobs that outlive the page that started them, so any page, after a reload, from another
browser or from another app server, sees the same job, its phase and its live loss curve.

Where a job runs (one rule, no setting): while some `finetune worker` heartbeats in the database (any node), a
new job is queued there for the workers (finetune/queue.py, finetune/worker.py); with no worker seen, this process
starts it as a detached local process, its state in `$ASSISTANT_HOME/jobs/ID/` (job.json when started, state.json
as it goes, log.txt) — the one-command setup trains without running anything beside the app. `list_jobs` shows
both kinds, newest first."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from core import db
from core.errors import AssistantError
from core.files import atomic_write_text
from core.settings import Settings
from finetune import queue


@dataclass
class Job:
    id: str
    dir: Path
    name: str
    pid: int
    started: str
    args: list[str]

    @property
    def kind(self) -> str:
        """'train' (a first or fresh adapter from a dataset) or 'retrain' (from staff feedback)."""
        return self.args[0] if self.args else "retrain"

    @property
    def state(self) -> dict[str, Any]:
        try:
            return json.loads((self.dir / "state.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {"phase": "starting"}

    @property
    def alive(self) -> bool:
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        # a finished child of this process stays a zombie until reaped
        try:
            return Path(f"/proc/{self.pid}/stat").read_text().split(") ")[-1][0] != "Z"
        except OSError:
            return True

    @property
    def status(self) -> str:
        """running | done | failed | cancelled."""
        phase = self.state.get("phase", "starting")
        if phase in ("done", "failed", "cancelled"):
            return phase
        return "running" if self.alive else "failed"  # died without saying so (killed, out of memory)

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return (self.dir / "log.txt").read_text(encoding="utf-8", errors="replace")[-chars:]
        except OSError:
            return ""

    def metrics(self) -> list[dict[str, Any]]:
        """The training run's events (start, step, eval, done) so far."""
        run = self.state.get("run")
        path = Path(run) / "metrics.jsonl" if run else None
        if not path or not path.is_file():
            return []
        rows = []
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                rows.append(json.loads(line))
            except ValueError:
                break  # the line being written
        return rows


class JobState:
    """What the job process writes as it goes (atomic, so a reader never sees half a file)."""

    def __init__(self, job_dir: Path) -> None:
        self.path = job_dir / "state.json"
        self.data: dict[str, Any] = {}

    def update(self, **fields: Any) -> None:
        self.data.update(fields, updated=datetime.now(UTC).isoformat(timespec="seconds"))
        atomic_write_text(self.path, json.dumps(self.data, ensure_ascii=False, default=str))


class JobReporter:
    """The job protocol the Adapters page reads from `state.json`: `starting`, then each phase with its info and
    the run's id, then `done` with the result or `failed` with the error, whatever ended the process. Without a
    job directory (a run from the terminal) it records nothing."""

    def __init__(self, job_dir: Path | None) -> None:
        self.state = JobState(job_dir) if job_dir else None

    def on_event(self, ev: dict[str, Any]) -> None:
        if self.state and ev["event"] == "start":
            self.state.update(run=ev["run"])

    def on_phase(self, phase: str, info: dict[str, Any]) -> None:
        if self.state:
            self.state.update(phase=phase, **{f"{phase}_info": info})

    @contextmanager
    def running(self) -> Iterator[None]:
        if self.state:
            self.state.update(phase="starting")
        try:
            yield
        except AssistantError as exc:
            if self.state:
                self.state.update(phase="failed", error=str(exc))
            raise
        except BaseException as exc:  # the job page must learn the job died, whatever killed it
            if self.state:
                self.state.update(phase="failed", error=f"{type(exc).__name__}: {exc}")
            raise

    def done(self, result: dict[str, Any]) -> None:
        if self.state:
            self.state.update(phase="done", result=result)


def _read(job_dir: Path) -> Job | None:
    try:
        meta = json.loads((job_dir / "job.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return Job(meta["id"], job_dir, meta["name"], meta["pid"], meta["started"], meta["args"])


AnyJob = Job | queue.QueuedJob


def list_jobs(settings: Settings, name: str | None = None) -> list[AnyJob]:
    """Local jobs and the database queue's (a worker's local files are not read: its row is the job), newest
    first."""
    root = settings.jobs_dir
    queued = queue.list_jobs(settings, name)
    held = {j.id for j in queued}
    local: list[AnyJob] = [j for d in sorted(root.iterdir(), reverse=True)
                           if d.is_dir() and d.name not in held and (j := _read(d))] if root.is_dir() else []
    jobs = sorted([*local, *queued], key=lambda j: j.id, reverse=True)
    return [j for j in jobs if name is None or j.name == name]


def _start(settings: Settings, name: str, args: list[str]) -> AnyJob:
    """Queue `finetune ARGS` for a worker, or with none seen run `finetune ARGS --job-dir DIR` detached; one
    running job per adapter name."""
    running = [j for j in list_jobs(settings, name) if j.status == "running"]
    if running:
        raise AssistantError(f"a {running[0].kind} job for '{name}' is already running (job {running[0].id})")
    job_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:4]
    if queue.workers_seen(settings):
        return queue.enqueue(settings, job_id, name, args)
    job_dir = settings.jobs_dir / job_id
    job_dir.mkdir(parents=True)
    args = [*args, "--job-dir", str(job_dir)]
    env = dict(os.environ, ASSISTANT_HOME=str(settings.home), ASSISTANT_MODEL=settings.model)
    if url := db.database_url(settings.app_db):  # the job reads and writes the database this process uses
        env["ASSISTANT_DATABASE_URL"] = url
    with open(job_dir / "log.txt", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "finetune.cli", *args], stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=env, start_new_session=True)
    meta = {"id": job_id, "name": name, "pid": proc.pid, "started": datetime.now(UTC).isoformat(timespec="seconds"),
            "args": args}
    atomic_write_text(job_dir / "job.json", json.dumps(meta))
    return Job(job_id, job_dir, name, proc.pid, meta["started"], args)


def start_retrain(settings: Settings, name: str, extra_args: list[str] | None = None,
                  requested_by: str | None = None) -> AnyJob:
    """Start `finetune retrain NAME` detached. `requested_by` goes to the audit log."""
    return _start(settings, name, ["retrain", name, *(["--by", requested_by] if requested_by else []),
                                   *(extra_args or [])])


def start_training(settings: Settings, name: str, data: list[Path], recipe: Path | None = None,
                   extra_args: list[str] | None = None) -> AnyJob:
    """Start `finetune train DATA --name NAME [--config RECIPE]` detached: the first adapter of a name (it becomes
    active when done) or a fresh version from a dataset."""
    return _start(settings, name, ["train", *(str(d) for d in data), "--name", name,
                                   *(["--config", str(recipe)] if recipe else []), *(extra_args or [])])


def estimate_seconds(settings: Settings, examples: int, epochs: float) -> tuple[float, str]:
    """How long training `examples` for `epochs` takes here: at the pace of the fastest earlier run on this machine
    (seconds per example seen, from the registry), else at the demo set's measured hour on 2 CPU cores."""
    from core import registry

    paces = []
    for name in registry.list_names(settings):
        for v in registry.list_versions(settings, name):
            m, r = v.meta.get("metrics", {}), v.meta.get("recipe", {})
            seen = m.get("steps", 0) * r.get("batch_size", 0) * r.get("grad_accum", 0)
            if m.get("seconds") and seen:
                paces.append(float(m["seconds"]) / seen)
    if paces:
        return examples * epochs * min(paces), "at the pace of this machine's earlier training"
    per_example = 3600 / 241 * (2 / max(1, os.cpu_count() or 1))  # data/sft: 241 examples, ~1 h on 2 cores
    return examples * epochs * per_example, "rough: the demo set takes about an hour on 2 CPU cores"


def cancel(job: AnyJob, settings: Settings | None = None) -> None:
    if job.status != "running":
        return
    if isinstance(job, queue.QueuedJob):
        if settings is None:
            raise AssistantError("cancelling a queued job needs the settings (its database)")
        queue.cancel(settings, job.id)
        return
    try:
        os.killpg(job.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    state = JobState(job.dir)
    state.data = job.state
    state.update(phase="cancelled")
