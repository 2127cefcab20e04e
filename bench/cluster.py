"""Past one machine, on one machine: PostgreSQL (app state and audit), a Milvus server (Milvus Lite's gRPC server,
the knowledge base shared by every app process), two llama.cpp engine servers (`assistant engine`: the offline GGUF
behind an OpenAI-compatible API, what `llama-server` does) and three `assistant serve` processes behind a
round-robin TCP balancer, plus the staff UI as a fourth app process; driven by the API load test
(bench/load_locustfile.py, the traffic mix of bench/data/load_mix.json).

Phases, each --seconds long: one app process behind the balancer, three app processes, then three with faults: one
app process and one engine are killed (SIGKILL) mid-run. Prints per phase QPS, p50/p95, errors; then checks that no
acknowledged write was lost: every answer the clients received (its audit id) has its turn row in the audit, and
the audit's hash chain verifies. Everything binds to 127.0.0.1 and stops by itself.

    .venv/bin/python bench/cluster.py                     # 60 s per phase, 8 clients
    .venv/bin/python bench/cluster.py --seconds 30 --clients 4

The same services, as containers: deploy/compose.yaml (see the README's deployment guide).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
sys.path.insert(0, str(ROOT))

from bench.load import _f, _phase, summarise  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(what: str, check, proc: subprocess.Popen | None, log: Path, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise SystemExit(f"{what} exited ({proc.returncode}); see {log}")
        try:
            if check():
                return
        except Exception:  # not answering yet
            pass
        time.sleep(0.5)
    raise SystemExit(f"{what} did not come up in {timeout:.0f} s; see {log}")


class Balancer:
    """Round-robin TCP balancer (what nginx or HAProxy does in front of the app servers): a client connection goes
    to the next backend that accepts it; a backend that refuses is skipped. Connections are not moved once open:
    a request in flight on a killed backend fails, as it would behind a real balancer."""

    def __init__(self, port: int, backends: list[int]) -> None:
        self.port, self.backends = port, list(backends)
        self._rr = itertools.count()
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()
        self.ready.wait(10)

    def set_backends(self, backends: list[int]) -> None:
        self.backends = list(backends)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)

        async def start() -> None:
            await asyncio.start_server(self._client, "127.0.0.1", self.port)
            self.ready.set()

        self.loop.run_until_complete(start())
        self.loop.run_forever()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        backends = list(self.backends)
        start = next(self._rr)
        for i in range(len(backends)):
            port = backends[(start + i) % len(backends)]
            try:
                up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port)
                break
            except OSError:
                continue
        else:
            writer.close()
            return

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                try:
                    dst.close()
                except Exception:
                    pass

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


def start_engines(out: Path, n: int, model: str, env: dict[str, str]) -> tuple[list[subprocess.Popen], list[str], str]:
    """`n` engine servers (`assistant engine`: llama.cpp, OpenAI-compatible, adapters per request by version from
    the shared adapters folder), each with one thread and two contexts: the machine has two cores."""
    import httpx

    procs, urls = [], []
    engine_env = dict(env, ASSISTANT_N_THREADS="1", ASSISTANT_LLAMACPP_CONTEXTS="2")
    for i in range(n):
        port = _free_port()
        log = out / f"engine-{i}.log"
        procs.append(subprocess.Popen([str(BIN / "assistant"), "engine", "--port", str(port), "--model", model,
                                       "--name", "base"], env=engine_env, stdout=log.open("w"),
                                      stderr=subprocess.STDOUT))
        urls.append(f"http://127.0.0.1:{port}/v1")
    for proc, url, i in zip(procs, urls, range(n), strict=True):
        _wait(f"engine {i}", lambda url=url: httpx.get(f"{url}/models", timeout=2).status_code == 200, proc,
              out / f"engine-{i}.log")
    return procs, urls, "base"


def start_milvus(out: Path) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    log = out / "milvus.log"
    proc = subprocess.Popen([str(BIN / "milvus-lite"), "server", "--data-dir", str(out / "milvus"), "--host",
                             "127.0.0.1", "--port", str(port)], stdout=log.open("w"), stderr=subprocess.STDOUT)

    def up() -> bool:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True

    _wait("milvus", up, proc, log, 120)
    return proc, f"http://127.0.0.1:{port}"


def app_env(base: dict[str, str]) -> dict[str, str]:
    return dict(os.environ, **base)


def start_app(env: dict[str, str], port: int, log: Path) -> subprocess.Popen:
    import httpx

    proc = subprocess.Popen([str(BIN / "assistant"), "serve", "--host", "127.0.0.1", "--port", str(port)], env=env,
                            stdout=log.open("w"), stderr=subprocess.STDOUT)
    _wait(f"app :{port}", lambda: httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200,
          proc, log)
    return proc


def start_ui(env: dict[str, str], port: int, log: Path) -> subprocess.Popen:
    import httpx

    proc = subprocess.Popen([str(BIN / "streamlit"), "run", str(ROOT / "ui" / "app.py"), "--server.headless", "true",
                             "--server.address", "127.0.0.1", "--server.port", str(port)], env=env,
                            stdout=log.open("w"), stderr=subprocess.STDOUT)
    _wait("ui", lambda: httpx.get(f"http://127.0.0.1:{port}/_stcore/health", timeout=2).status_code == 200,
          proc, log)
    return proc


def _audit_ids(records: Path) -> list[int]:
    rows = [json.loads(line) for line in records.read_text(encoding="utf-8").splitlines()] if records.exists() else []
    return [r["audit_id"] for r in rows if r["status"] == 200 and not r["error"] and r.get("audit_id")]


def _feedback_ids(records: Path) -> list[int]:
    rows = [json.loads(line) for line in records.read_text(encoding="utf-8").splitlines()] if records.exists() else []
    return [r["feedback_id"] for r in rows if r["kind"] == "feedback" and r["status"] == 200]


def check_losses(settings, records: list[Path]) -> dict:
    """Every answer a client received has its audit turn, every rating acknowledged its feedback row (and its
    `api_feedback` audit event); the audit chain verifies."""
    from core.audit import AuditLog, list_events
    from core.audit_chain import verify
    from core.feedback import list_feedback

    audit = AuditLog(settings.audit_db)
    ids = sorted({i for r in records for i in _audit_ids(r)})
    missing = [i for i in ids if audit.get(i) is None]
    rated = sorted({i for r in records for i in _feedback_ids(r)})
    stored = {f["id"] for f in list_feedback(settings.app_db)}
    events = {e["detail"].get("feedback_id") for e in list_events(settings.audit_db, "api_feedback", 10**6)}
    verdict = verify(settings.audit_db)
    return {"answers_acknowledged": len(ids), "turns_missing": len(missing), "missing_ids": missing[:20],
            "feedback_acknowledged": len(rated), "feedback_missing": len([i for i in rated if i not in stored]),
            "feedback_events_missing": len([i for i in rated if i not in events]),
            "audit_chain": "intact" if verdict.intact else "; ".join(verdict.problems), "audit_rows": verdict.rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=int, default=60, help="length of each phase")
    ap.add_argument("--clients", type=int, default=8, help="concurrent Locust users")
    ap.add_argument("--model", default="offline-0.5b", help="the offline GGUF the engines serve")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    out = (args.out or ROOT / "bench" / "results" / f"cluster-{time.strftime('%Y%m%d-%H%M%S')}").resolve()
    out.mkdir(parents=True, exist_ok=True)
    home = out / "home"
    procs: list[subprocess.Popen] = []
    pg = None
    try:
        from core import pg_server

        print("== PostgreSQL", flush=True)
        pg = pg_server.start(out / "pg")
        print("== Milvus server", flush=True)
        milvus, milvus_uri = start_milvus(out)
        procs.append(milvus)
        models = Path(".assistant").resolve() / "models"  # the offline model the setup prepared, shared
        home.mkdir(parents=True, exist_ok=True)
        if models.is_dir() and not (home / "models").exists():
            (home / "models").symlink_to(models, target_is_directory=True)
        print("== two engines", flush=True)
        engines, urls, served = start_engines(out, 2, args.model, app_env({"ASSISTANT_HOME": str(home)}))
        procs += engines
        base = {"ASSISTANT_HOME": str(home), "ASSISTANT_DATABASE_URL": pg.url, "ASSISTANT_VECTOR_STORE": "milvus",
                "ASSISTANT_MILVUS_URI": milvus_uri, "ASSISTANT_BACKEND": "openai",
                "ASSISTANT_OPENAI_BASE_URLS": json.dumps(urls), "ASSISTANT_OPENAI_MODEL": served,
                "ASSISTANT_MODEL": args.model,
                "ASSISTANT_ADAPTER": "none", "ASSISTANT_CACHE": "true", "ASSISTANT_MAX_NEW_TOKENS": "160"}
        env = app_env(base)
        os.environ.update(base)  # this process reads and prepares the same state
        print("== knowledge base and keys", flush=True)
        subprocess.run([str(BIN / "ingest"), "add", str(ROOT / "corpus")], env=env, check=True,
                       stdout=(out / "ingest.log").open("w"), stderr=subprocess.STDOUT)
        from assistant.app import api_keys
        from assistant.app.users import ensure_demo_users
        from core import db
        from core.settings import load_settings

        settings = load_settings()
        db.use_settings(settings)
        ensure_demo_users(settings.app_db, random_passwords=True)
        keys = [api_keys.create_key(settings.app_db, u, rpm=10**9, daily_tokens=10**12, label="bench/cluster.py")[1]
                for u in ("li.claims", "wang.staff")]
        print("== three app processes and the UI", flush=True)
        ports = [_free_port() for _ in range(3)]
        apps = [start_app(env, p, out / f"app-{i}.log") for i, p in enumerate(ports)]
        procs += apps
        ui_port = _free_port()
        procs.append(start_ui(env, ui_port, out / "ui.log"))
        lb_port = _free_port()
        lb = Balancer(lb_port, ports[:1])
        url = f"http://127.0.0.1:{lb_port}"
        summary: dict = {"seconds": args.seconds, "clients": args.clients, "engines": urls, "phases": {}}
        records = []
        import httpx

        from bench.load import MIX
        from core.answer_cache import AnswerCache

        cache = AnswerCache(settings.cache_db)
        for key in keys:  # the popular questions answered once per access scope: the cached phases serve them
            for q in MIX["repeated"]:
                httpx.post(f"{url}/v1/chat/completions", timeout=900, headers={"Authorization": f"Bearer {key}"},
                           json={"model": "default", "messages": [{"role": "user", "content": q}]})
        phases = [("cached-one-app", ports[:1], {"repeated": 1.0}), ("cached-three-apps", ports, {"repeated": 1.0}),
                  ("mix-one-app", ports[:1], None), ("mix-three-apps", ports, None)]
        for name, backends, kinds in phases:
            lb.set_backends(backends)
            if kinds is None:
                cache.clear()  # each mixed phase earns its own hits
            print(f"== {name}", flush=True)
            rec = _phase(url, keys, args.clients, args.seconds, True, out, name, kinds, feedback=0.25)
            records.append(rec)
            summary["phases"][name] = summarise(rec, args.seconds)
        cache.clear()
        name = "mix-three-apps-kills"
        print(f"== {name}: app 2 killed at {args.seconds // 3} s, engine 1 at {args.seconds // 2} s", flush=True)

        def faults() -> None:
            time.sleep(args.seconds / 3)
            apps[1].send_signal(signal.SIGKILL)
            summary["killed_app"] = {"port": ports[1], "at_s": round(args.seconds / 3)}
            time.sleep(args.seconds / 2 - args.seconds / 3)
            engines[0].send_signal(signal.SIGKILL)
            summary["killed_engine"] = {"url": urls[0], "at_s": round(args.seconds / 2)}

        threading.Thread(target=faults, daemon=True).start()
        rec = _phase(url, keys, args.clients, args.seconds, True, out, name, feedback=1.0)
        records.append(rec)
        summary["phases"][name] = summarise(rec, args.seconds)
        summary["losses"] = check_losses(settings, records)
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
        if pg is not None:
            pg.stop()
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=str), encoding="utf-8")
    print()
    print("| phase | app processes | answered | QPS | p50 s | p95 s | errors | 503 | cache hits |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, s in summary["phases"].items():
        n = "1" if name.endswith("one-app") else "3" if name.endswith("three-apps") else "3 → 2, engines 2 → 1"
        print(f"| {name} | {n} | {s['answered']} | {s['qps']:.2f} | {_f(s['p50'])} | {_f(s['p95'])} | "
              f"{s['errors']} | {s['rate_503']:.1%} | {s['hit_rate']:.0%} |")
    loss = summary["losses"]
    print(f"\nanswers acknowledged: {loss['answers_acknowledged']}; their audit turns missing: "
          f"{loss['turns_missing']}; ratings acknowledged: {loss['feedback_acknowledged']}; their feedback rows "
          f"missing: {loss['feedback_missing']}, their audit events missing: {loss['feedback_events_missing']}; "
          f"audit chain: {loss['audit_chain']}")
    for kind in ("cached", "mix"):
        one, three = (summary["phases"][f"{kind}-{n}"]["qps"] for n in ("one-app", "three-apps"))
        print(f"{kind}: three app processes x{three / one:.2f} the QPS of one" if one else f"{kind}: no answers")
    print(f"\nlogs and records: {out}")


if __name__ == "__main__":
    main()
