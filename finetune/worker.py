"""`finetune worker`: claims queued training jobs from the database (finetune/queue.py) and runs each as today's
detached job would run (`finetune ARGS --job-dir DIR`, a child process writing state.json and log.txt), copying
its phase, metrics and log tail into the queue at every heartbeat so every app server can show the job.

Invariants: one job at a time per worker; a job whose row this worker no longer holds (recovered by another
after a stall, or cancelled) has its child stopped at the next heartbeat; the child runs in its own process group
so a stop reaches everything it started.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from core import db
from core.settings import Settings
from finetune import queue
from finetune.background import Job

Command = Callable[[list[str]], list[str]]  # a job's args -> the command line that runs it


def finetune_command(args: list[str]) -> list[str]:
    return [sys.executable, "-m", "finetune.cli", *args]


class Worker:
    def __init__(self, settings: Settings, heartbeat_s: float = 5.0, poll_s: float = 2.0,
                 command: Command = finetune_command, name: str | None = None) -> None:
        self.settings = settings
        self.heartbeat_s = heartbeat_s
        self.poll_s = poll_s
        self.command = command
        self.id = name or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.stopping = False

    def run(self, once: bool = False, max_jobs: int | None = None) -> int:
        """Claim and run jobs until stopped (SIGTERM/SIGINT finish the current heartbeat), or, with `once`, until
        the queue is empty. Returns the number of jobs run."""
        done = 0
        try:
            while not self.stopping and (max_jobs is None or done < max_jobs):
                queue.worker_alive(self.settings, self.id, None)
                queue.recover(self.settings)
                job = queue.claim(self.settings, self.id)
                if job is None:
                    if once:
                        break
                    time.sleep(self.poll_s)
                    continue
                self.run_job(job)
                done += 1
        finally:
            queue.worker_gone(self.settings, self.id)
        return done

    def run_job(self, job: queue.QueuedJob) -> str:
        """Run one claimed job to its end; its final status."""
        job_dir = self.settings.jobs_dir / job.id
        job_dir.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, ASSISTANT_HOME=str(self.settings.home), ASSISTANT_MODEL=self.settings.model)
        if url := db.database_url(self.settings.app_db):  # the job uses the database this worker's queue is in
            env["ASSISTANT_DATABASE_URL"] = url
        with open(job_dir / "log.txt", "wb") as log:
            proc = subprocess.Popen(self.command([*job.args, "--job-dir", str(job_dir)]), stdout=log,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                    start_new_session=True)
        local = Job(job.id, job_dir, job.name, proc.pid, job.started, job.args)  # reads state.json and the log
        status = "running"
        while status == "running":
            try:
                proc.wait(timeout=self.heartbeat_s)
            except subprocess.TimeoutExpired:
                pass
            if proc.poll() is None:
                queue.worker_alive(self.settings, self.id, job.id)
                held, cancelled = queue.heartbeat(self.settings, job.id, self.id, local.state, local.metrics(),
                                                  local.log_tail(8000))
                if not held or cancelled or self.stopping:
                    _stop(proc)
                    status = "cancelled" if (cancelled or self.stopping) and held else "lost"
                continue
            phase = local.state.get("phase")
            status = "done" if proc.returncode == 0 and phase == "done" else "failed"
        state = local.state
        if status == "failed" and state.get("phase") != "failed":
            state = {**state, "phase": "failed",
                     "error": state.get("error") or f"the job exited with code {proc.returncode}; see its log"}
        if status == "cancelled":
            state = {**state, "phase": "cancelled"}
        if status != "lost":
            queue.finish(self.settings, job.id, self.id, status, state, local.metrics(), local.log_tail(8000))
        return status


def _stop(proc: subprocess.Popen[Any], grace_s: float = 10.0) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=grace_s)
    except ProcessLookupError:
        return
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def serve(settings: Settings, once: bool = False) -> int:
    """The CLI's loop: SIGTERM or Ctrl-C stop it after the current job's child is stopped and recorded."""
    worker = Worker(settings)

    def stop(*_: Any) -> None:
        worker.stopping = True

    before = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    print(json.dumps({"worker": worker.id, "home": str(Path(settings.home))}), flush=True)
    try:
        return worker.run(once=once)
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)
