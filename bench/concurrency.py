"""Latency for 1, 2 and 4 staff asking at once (issue 12): the whole chain, llama.cpp engine, p50/p95 of the
time to the first token and to the whole answer; the transformers engine alone as today's baseline, same run.

    cd bench && PYTHONPATH=.. ../.venv/bin/python concurrency.py [--model offline] [--users 1,2,4] [--think 0,20]
                                                                 [--no-baseline]

Each simulated user asks the same 8 questions (dev_eval.py's mix: facts zh/en, look-ups, a refusal) in its own
thread, all users starting together; the knowledge base is corpus/ in a fresh home; each user's prompt prefixes
are warmed first, as the chat does at login. `--think S`: between answers a user reads and types for a random
time of mean S seconds (exponential, seeded); 0 is the stress case of every user asking again the moment an
answer ends. Timings on a shared machine are indicative: compare rows of one run.

With 0 s of thinking the load is limited by throughput alone (Little's law: N users / answers per second), so the
4-user p50 is at least 4 × (the time one core needs for an answer) / 2 cores; a single user gets both cores but
prefills only ~1.45× as fast with 2 threads as with 1 (llama.cpp's per-layer barrier), so on 2 cores that bound
is ~2.6-2.9× the single-user figure whatever the scheduling. Real staff read the answer before asking again.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import threading
import time
from pathlib import Path

from common import ROOT, print_table

QUESTIONS = [
    ("出险后几天内报案？", ("wang", "staff", "sales")),
    ("Who must approve a claim above CNY 300,000?", ("wang", "staff", "sales")),
    ("帮我查一下保单 POL-2024-0003 的状态", ("wang", "staff", "sales")),
    ("拒赔案件的申诉多久内答复？", ("wang", "staff", "sales")),
    ("How long are paid claim files kept?", ("wang", "staff", "sales")),
    ("查一下理赔案件 CLM-2024-0002 的进度", ("li", "claims", "claims")),
    ("公司今年的年终奖发放标准是什么？", ("wang", "staff", "sales")),
    ("What fee does Evergreen pay the provider per registered claim?", ("wang", "staff", "sales")),
]


def _pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return round(xs[min(len(xs) - 1, int(p * len(xs)))], 2) if xs else 0.0


def run(engine: str, home: Path, model: str, users: int, think_s: float = 0.0) -> dict:
    from assistant.chain import build_assistant
    from core.identity import User
    from core.settings import load_settings

    a = build_assistant(load_settings(home=home, model=model, engine=engine))
    for who in dict.fromkeys(w for _, w in QUESTIONS):  # as at login: the constant prompt prefixes, not measured
        a.warm(User(*who))
    totals: list[float] = []
    ttfts: list[float] = []
    lock = threading.Lock()

    def user(i: int) -> None:
        rng = random.Random(i)
        for n, (q, who) in enumerate(QUESTIONS[i % len(QUESTIONS):] + QUESTIONS[:i % len(QUESTIONS)]):  # not in step
            if think_s and n:
                time.sleep(rng.expovariate(1 / think_s))
            t0 = time.perf_counter()
            first: list[float] = []

            def on_event(kind: str, _: object, t0: float = t0, first: list[float] = first) -> None:
                if kind == "token" and not first:
                    first.append(time.perf_counter() - t0)

            ans = a.ask(q, User(*who), on_event=on_event)
            with lock:
                totals.append(ans.latency_s)
                ttfts.append(first[0] if first else ans.latency_s)  # no token streamed: the whole answer

    t0 = time.perf_counter()
    threads = [threading.Thread(target=user, args=(i,)) for i in range(users)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    return {"engine": engine, "users": users, "think_s": think_s, "answers": len(totals),
            "ttft_p50_s": _pct(ttfts, 0.5), "ttft_p95_s": _pct(ttfts, 0.95), "total_p50_s": _pct(totals, 0.5),
            "total_p95_s": _pct(totals, 0.95),
            "answers_per_min": round(60 * len(totals) / wall, 1), "mean_s": round(statistics.mean(totals), 2)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="offline")
    p.add_argument("--users", default="1,2,4")
    p.add_argument("--think", default="0", help="mean seconds between a user's questions, comma-separated runs; "
                                                 "each runs the users above except 1 (the same alone)")
    p.add_argument("--no-baseline", action="store_true", help="skip the transformers engine")
    args = p.parse_args()
    from core.settings import load_settings
    from ingest import pipeline

    home = Path(tempfile.mkdtemp(prefix="concurrency-"))
    user_home = load_settings().home
    (home / "models").symlink_to(user_home / "models")  # the prepared models are shared, not copied
    pipeline.add_paths(load_settings(home=home), [ROOT / "corpus"])
    thinks = [float(t) for t in args.think.split(",")]
    counts = [int(n) for n in args.users.split(",")]
    rows = [run("llamacpp", home, args.model, n, t) for t in thinks for n in counts if not (n == 1 and t != thinks[0])]
    if not args.no_baseline:
        rows.append(run("transformers", home, args.model, 1))
    single, single_ttft = rows[0]["total_p50_s"], rows[0]["ttft_p50_s"]
    for r in rows:
        r["p50_vs_single"] = round(r["total_p50_s"] / single, 2) if single else None
        r["ttft_vs_single"] = round(r["ttft_p50_s"] / single_ttft, 2) if single_ttft else None
    print_table(f"concurrent users, model {args.model} (whole chain; p50/p95 seconds)", rows, list(rows[0]))


if __name__ == "__main__":
    main()
