"""The API under load: Locust (headless) against a real `assistant serve` over the demo corpus, with the traffic mix of
bench/data/load_mix.json, at several numbers of concurrent clients, answer cache off and on; and, in the same run,
the engine alone (the chain called in-process by as many threads as the engine has slots, the same questions, no
HTTP, no cache) as the baseline the API's uncached throughput is compared with.

    .venv/bin/python bench/load.py                       # levels 1,4,16,64; 60 s each; results in bench/results/load-*
    .venv/bin/python bench/load.py --levels 4 --seconds 20 --skip-engine   # a quick look

Prints, per phase: QPS of answered requests, latency p50/p95/p99, time to the first answer text of streamed requests,
errors, 429 and 503 rates (counted apart from errors), the cache's hit rate; then the cached answers alone (p95,
QPS) and the uncached throughput against the engine's. Keeps Locust's CSV files and every request's record.
Traffic goes to 127.0.0.1 only and every phase stops by itself.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
MIX = json.loads((ROOT / "bench" / "data" / "load_mix.json").read_text(encoding="utf-8"))
BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prepare(home: Path) -> list[str]:
    """The demo corpus ingested, the demo accounts, and one key per staff account (limits out of the way)."""
    from assistant.app import api_keys
    from assistant.app.users import ensure_demo_users
    from core.settings import Settings
    from ingest import pipeline
    from ingest.store import KnowledgeBase

    settings = Settings(home=home)
    models = Settings().home / "models"  # the model the setup prepared, shared rather than assembled again
    if not (home / "models").exists() and models.is_dir():
        home.mkdir(parents=True, exist_ok=True)
        (home / "models").symlink_to(models.resolve(), target_is_directory=True)
    if not KnowledgeBase(settings).exists():
        pipeline.add_paths(settings, [ROOT / "corpus"])
    ensure_demo_users(settings.app_db, random_passwords=True)
    keys = []
    for user in ("li.claims", "wang.staff"):
        _, token = api_keys.create_key(settings.app_db, user, rpm=10**9, daily_tokens=10**12, label="bench/load.py")
        keys.append(token)
    return keys


def _questions(rng: random.Random, n: int) -> list[tuple[str, str]]:
    kinds, weights = zip(*MIX["weights"].items(), strict=True)
    out = []
    for _ in range(n):
        kind = rng.choices(kinds, weights)[0]
        out.append((kind, rng.choice(MIX[kind])))
    return out


def engine_alone(home: Path, threads: int, seconds: float) -> dict:
    """The chain in-process, `threads` at once, the same mix, no cache: answers per second."""
    from assistant.app.users import get_user
    from assistant.chain import build_assistant
    from core.settings import Settings

    settings = Settings(home=home)
    assistant = build_assistant(settings)
    users = [get_user(settings.app_db, n).user for n in ("li.claims", "wang.staff")]
    for u in users:
        assistant.warm(u)
    for kind in MIX["weights"]:  # each question once, as the API had answered them before its timed phases
        for q in MIX[kind]:
            assistant.ask(q, users[0], use_cache=False, channel="api")
    done: list[tuple[float, float]] = []
    end = time.perf_counter() + seconds

    def run(i: int) -> None:
        rng = random.Random(i)
        while time.perf_counter() < end:
            _, q = _questions(rng, 1)[0]
            t = time.perf_counter()
            assistant.ask(q, users[i % 2], use_cache=False, channel="api")
            done.append((time.perf_counter(), time.perf_counter() - t))

    t0 = time.perf_counter()
    workers = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    within = [lat for t, lat in done if t <= t0 + seconds]
    return {"threads": threads, "answers": len(within), "qps": len(within) / seconds,
            "p50": float(np.percentile(within, 50)) if within else None,
            "p95": float(np.percentile(within, 95)) if within else None}


def _serve(home: Path, port: int, log: Path) -> subprocess.Popen:
    env = dict(os.environ, ASSISTANT_HOME=str(home), ASSISTANT_CACHE="true")
    proc = subprocess.Popen([str(BIN / "assistant"), "serve", "--port", str(port)], env=env,
                            stdout=log.open("w"), stderr=subprocess.STDOUT)
    import httpx

    deadline = time.time() + 300
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"assistant serve exited ({proc.returncode}); see {log}")
        try:
            r = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2)
            if r.status_code == 200 and not r.json().get("warming"):  # prefixes prefilled, as in the baseline
                return proc
            if r.json().get("reason") not in (None, "loading"):
                proc.kill()
                raise SystemExit(f"assistant serve is not ready: {r.json()['reason']}")
        except httpx.HTTPError:
            pass
        time.sleep(1)
    proc.kill()
    raise SystemExit(f"assistant serve was not ready after 300 s; see {log}")


def _phase(url: str, keys: list[str], users: int, seconds: int, cache: bool, out: Path, name: str,
           kinds: dict | None = None, pacing: float = 0.0, feedback: float = 0.0) -> Path:
    records = out / f"records-{name}.jsonl"
    records.unlink(missing_ok=True)
    env = dict(os.environ, LOAD_KEYS=",".join(keys), LOAD_CACHE="on" if cache else "off", LOAD_RECORDS=str(records),
               LOAD_PACING_S=str(pacing), LOAD_FEEDBACK_SHARE=str(feedback))
    if kinds:
        env["LOAD_WEIGHTS"] = json.dumps(kinds)
    (out / f"start-{name}").write_text(str(time.time()))
    subprocess.run([str(BIN / "locust"), "-f", str(ROOT / "bench" / "load_locustfile.py"), "--headless",
                    "-u", str(users), "-r", str(users), "-t", f"{seconds}s", "--host", url, "--stop-timeout", "300",
                    "--csv", str(out / name), "--only-summary", "--loglevel", "WARNING"],
                   env=env, check=False, timeout=seconds + 420, stdout=subprocess.DEVNULL)
    return records


def _pct(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def summarise(records: Path, seconds: float) -> dict:
    """QPS counts the answers finished within the phase (after it, the users only finish what they had asked);
    latencies, errors and rates count every request of the phase."""
    every = [json.loads(line) for line in records.read_text(encoding="utf-8").splitlines()] if records.exists() else []
    rows = [r for r in every if r["kind"] != "feedback"]  # answers; the ratings clients sent are counted apart
    rated = [r for r in every if r["kind"] == "feedback"]
    start_file = records.parent / f"start-{records.stem.removeprefix('records-')}"
    start = float(start_file.read_text()) if start_file.exists() else min((r["t"] for r in rows), default=0.0)
    ok = [r for r in rows if r["status"] == 200 and not r["error"]]
    within = [r for r in ok if r["t"] <= start + seconds + 3]  # Locust starts its users within ~3 s
    inside = {id(r) for r in within}
    cached = [r for r in ok if r["cached"]]
    fresh = [r for r in ok if not r["cached"]]
    streamed = [r for r in ok if r["stream"] and r["first"] is not None]
    n = len(rows) or 1
    return {
        "requests": len(rows), "answered": len(ok), "qps": len(within) / seconds,
        "p50": _pct([r["latency"] for r in ok], 50), "p95": _pct([r["latency"] for r in ok], 95),
        "p99": _pct([r["latency"] for r in ok], 99),
        "ttft_p50": _pct([r["first"] for r in streamed], 50), "ttft_p95": _pct([r["first"] for r in streamed], 95),
        "errors": sum(1 for r in rows if (r["status"] not in (200, 429, 503)) or r["error"]),
        "rate_429": sum(r["status"] == 429 for r in rows) / n, "rate_503": sum(r["status"] == 503 for r in rows) / n,
        "hit_rate": len(cached) / len(ok) if ok else 0.0,
        "cached_qps": sum(id(r) in inside for r in cached) / seconds,
        "cached_p50": _pct([r["latency"] for r in cached], 50), "cached_p95": _pct([r["latency"] for r in cached], 95),
        "fresh_qps": sum(id(r) in inside for r in fresh) / seconds,
        "fresh_p95": _pct([r["latency"] for r in fresh], 95),
        "feedback_sent": len(rated), "feedback_ok": sum(r["status"] == 200 for r in rated),
    }


def _f(v: float | None, digits: int = 2) -> str:
    return "–" if v is None else f"{v:.{digits}f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--levels", default="1,4,16,64", help="concurrent clients per phase")
    ap.add_argument("--seconds", type=int, default=60, help="length of each phase")
    ap.add_argument("--home", type=Path, default=None, help="data home (default: a fresh one under --out)")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--skip-engine", action="store_true", help="no engine-alone baseline")
    ap.add_argument("--only-cached", action="store_true", help="only the phases of cached answers")
    ap.add_argument("--engine-alone", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--threads", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    out = args.out or ROOT / "bench" / "results" / f"load-{time.strftime('%Y%m%d-%H%M%S')}"
    out.mkdir(parents=True, exist_ok=True)
    home = (args.home or out / "home").resolve()
    if args.engine_alone:  # the child process of the baseline: prints its figures as JSON
        print(json.dumps(engine_alone(home, args.threads, args.seconds)))
        return
    from core.settings import Settings

    keys = prepare(home)
    slots = Settings(home=home).api_concurrency or Settings(home=home).llamacpp_contexts
    levels = [int(x) for x in args.levels.split(",")]
    summary: dict = {"levels": levels, "seconds": args.seconds, "slots": slots, "phases": {}}
    if not args.skip_engine and not args.only_cached:  # alone on the machine: no server running meanwhile
        print(f"== engine alone: {slots} threads, {args.seconds} s", flush=True)
        res = subprocess.run([sys.executable, __file__, "--engine-alone", "--home", str(home), "--threads",
                              str(slots), "--seconds", str(args.seconds), "--out", str(out)],
                             capture_output=True, text=True, check=True)
        summary["engine"] = json.loads(res.stdout.strip().splitlines()[-1])
        print(f"   {summary['engine']['qps']:.3f} answers/s", flush=True)
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    server = _serve(home, port, out / "serve.log")
    try:
        from core.answer_cache import AnswerCache

        cache_db = Settings(home=home).cache_db
        for cache in () if args.only_cached else (False, True):
            for level in levels:
                name = f"cache-{'on' if cache else 'off'}-{level}"
                AnswerCache(cache_db).clear()  # each phase earns its own hits
                print(f"== {name}", flush=True)
                rec = _phase(url, keys, level, args.seconds, cache, out, name)
                summary["phases"][name] = summarise(rec, args.seconds)
        # the cache's own capacity: the popular questions only, already cached, the most clients
        name = f"cached-only-{max(levels)}"
        print(f"== {name}", flush=True)
        import httpx

        for key in keys:  # each popular question answered once per access scope (cached where it may be)
            for q in MIX["repeated"]:
                httpx.post(f"{url}/v1/chat/completions", timeout=600, headers={"Authorization": f"Bearer {key}"},
                           json={"model": "default", "messages": [{"role": "user", "content": q}]})
        rec = _phase(url, keys, max(levels), args.seconds, True, out, name, {"repeated": 1.0})
        summary["phases"][name] = summarise(rec, args.seconds)
        # the same clients as staff applications send: each one question a second (back to back above)
        name = f"cached-paced-{max(levels)}"
        print(f"== {name}", flush=True)
        rec = _phase(url, keys, max(levels), args.seconds, True, out, name, {"repeated": 1.0}, pacing=1.0)
        summary["phases"][name] = summarise(rec, args.seconds)
    finally:
        server.terminate()
        server.wait(30)
    (out / "summary.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")
    print()
    print("| phase | clients | answered | QPS | p50 s | p95 s | p99 s | first text p50 / p95 s | errors | 429 | 503 "
          "| cache hits | cached p95 s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name, s in summary["phases"].items():
        print(f"| {name} | {name.rsplit('-', 1)[1]} | {s['answered']} | {s['qps']:.2f} | {_f(s['p50'])} | "
              f"{_f(s['p95'])} | {_f(s['p99'])} | {_f(s['ttft_p50'])} / {_f(s['ttft_p95'])} | {s['errors']} | "
              f"{s['rate_429']:.1%} | {s['rate_503']:.1%} | {s['hit_rate']:.0%} | {_f(s['cached_p95'], 3)} |")
    if "engine" in summary:
        e = summary["engine"]
        best = max((s["fresh_qps"], n) for n, s in summary["phases"].items() if n.startswith("cache-off"))
        print(f"\nengine alone ({e['threads']} threads, same mix, no cache): {e['qps']:.3f} answers/s, p50 "
              f"{_f(e['p50'])} s; the API without cache at its best ({best[1]}): {best[0]:.3f} answers/s "
              f"(x{best[0] / e['qps']:.2f} of the engine)" if e["qps"] else "")
    print(f"\nraw records and Locust CSVs: {out}")


if __name__ == "__main__":
    main()
