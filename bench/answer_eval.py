"""Answer-level evaluation of the chat on domains nobody tuned it on (issue 28): runs each question through the real
chain (retrieval, tools, the model, verification) as the asking user and writes one record per scored question;
`bench/answer_scoring.py`, which imports nothing from the product, grades them.

    .venv/bin/python bench/answer_eval.py                                  # dev split, demo+bank+hospital, 0.5B
    .venv/bin/python bench/answer_eval.py --split final --domains demo,bank,hospital,rgb-zh,rgb-en
    .venv/bin/python bench/answer_eval.py --model offline-1.5b --verify both --split dev
    .venv/bin/python bench/answer_eval.py --evidence-only                  # no model: is the answer in the evidence?

Domains: `bench/domains/{demo,bank,hospital}` (documents, a tool plug-in, frozen questions with a dev and a final
split) and RGB zh/en (`../shared/data/rgb`: --rgb N questions with a single answer, their passages pooled). Each
domain's knowledge base is ingested once into `bench/results/homes/` (unchanged files are skipped later). Every
conversation's earlier user turns are asked first, in order, and the scored question last.

`--verify both` runs each question with and without verification; `--baseline REF` also runs them through the chain
of commit REF in the same run (latency against today's chain: bench/baseline_chain.py); `--evidence-only` measures
only how often an accepted answer stands in the units the model would be shown, and how many characters they take.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

from common import ROOT, shared_dir

BENCH = ROOT / "bench"
sys.path.insert(0, str(BENCH))
import answer_scoring  # noqa: E402  (the grader: standard library only)

DOMAINS = ("demo", "bank", "hospital")


def _rgb_rows(shared: Path, lang: str, n: int, seed: int = 7) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """n RGB questions with one answer (alternatives allowed) and their pooled passages as documents."""
    name = "zh_refine.jsonl" if lang == "zh" else "en_fact.jsonl"
    rows = [json.loads(line) for line in (shared / "rgb" / name).read_text(encoding="utf-8").splitlines() if line]
    single = []
    for r in rows:
        answer = r["answer"] if isinstance(r["answer"], list) else [r["answer"]]
        if len(answer) == 1:
            accept = answer[0] if isinstance(answer[0], list) else [answer[0]]
            single.append((r, [str(a) for a in accept]))
    picked = random.Random(seed).sample(single, min(n, len(single)))
    docs: dict[str, str] = {}
    out = []
    for i, (r, accept) in enumerate(picked):
        for text in r["positive"][:3] + r["negative"][:3]:
            key = f"rgb{lang}_{len(docs):04d}.txt"
            if text not in docs.values():
                docs[key] = text
        out.append({"id": f"rgb-{lang}-{r['id']}", "split": "final" if i % 3 == 2 else "dev", "kind": "fact",
                    "history": [], "question": r["query"], "accept": accept, "source": None, "tool": None,
                    "user": {"name": "eval", "role": "staff", "department": "sales"}})
    return out, docs


def _domain(name: str, args: argparse.Namespace) -> tuple[list[dict[str, Any]], Path, list[str] | None]:
    """(question rows, documents folder, tool plug-ins) of a domain."""
    if name.startswith("rgb-"):
        lang = name.split("-")[1]
        rows, docs = _rgb_rows(shared_dir(args.shared), lang, args.rgb)
        folder = BENCH / "results" / "docs" / name
        folder.mkdir(parents=True, exist_ok=True)
        for key, text in docs.items():
            (folder / key).write_text(text, encoding="utf-8")
        return rows, folder, []
    meta = json.loads((BENCH / "domains" / name / "domain.json").read_text(encoding="utf-8"))
    rows = [json.loads(line) for line in (ROOT / meta["questions"]).read_text(encoding="utf-8").splitlines() if line]
    return rows, ROOT / meta["docs"], None if meta["tools"] == "demo" else [meta["tools"]]


def _assistant(name: str, folder: Path, plugins: list[str] | None, args: argparse.Namespace, verify: bool) -> Any:
    from assistant.chain import build_assistant
    from assistant.tools.calculator import calculator_tool
    from assistant.tools.plugins import load_tools
    from core.settings import Settings
    from ingest import pipeline

    home = BENCH / "results" / "homes" / name
    home.mkdir(parents=True, exist_ok=True)
    models = home / "models"
    if not models.exists():
        models.symlink_to(ROOT / ".assistant" / "models")
    settings = Settings(home=home, model=args.model, verify=verify, adapter="none")
    pipeline.add_paths(settings, [folder])
    tools = None
    if plugins is not None:
        tools = load_tools(settings.model_copy(update={"tools": plugins}))
        tools.add(calculator_tool())
    return build_assistant(settings, tools=tools)


def _record(row: dict[str, Any], domain: str, ans: Any) -> dict[str, Any]:
    d = ans.to_dict()
    return {**{k: row.get(k) for k in ("id", "split", "kind", "question", "accept", "source", "tool", "history")},
            "domain": domain, "answer": d["answer"], "outcome": d["outcome"], "model_answer": d["model_answer"],
            "verified": d["verified"], "sources": [{k: s.get(k) for k in ("source", "page", "clause", "text")}
                                                   for s in d["sources"]],
            "tool_calls": [{k: t.get(k) for k in ("name", "arguments", "ok", "result", "error")}
                           for t in d["tool_calls"]],
            "latency_s": d["latency_s"], "first_token_s": d["first_token_s"], "error": d["error"],
            "standalone": d["standalone"], "reply": d["reply"], "verification": d["verification"],
            "timings": d.get("timings"), "units": len(d["units"]), "prefill_s": d.get("prefill_s"),
            "tokens_per_s": d.get("tokens_per_s"), "prompt_tokens": ans.prompt_tokens, "new_tokens": ans.new_tokens}


def _evidence_only(a: Any, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Without the model: is an accepted answer in the units the model would be shown, and at what size?"""
    from core.identity import User

    found, sizes, total = 0, [], 0
    for row in rows:
        if row["kind"] not in ("fact", "calc", "followup") or row["history"]:
            continue
        user = User(row["user"]["name"], row["user"]["role"], row["user"]["department"])
        _, _, ans = a.prompt_for(row["question"], user)
        text = "\n".join(u.text for u in ans.units)
        total += 1
        sizes.append(len(text))
        hit = answer_scoring.any_accepted(row["accept"], text) is not None
        found += hit
    sizes.sort()
    return {"questions": total, "answer in evidence": f"{found}/{total}",
            "chars p50": sizes[len(sizes) // 2] if sizes else 0, "chars max": sizes[-1] if sizes else 0}


def _baseline(name: str, rows: list[dict[str, Any]], folder: Path, plugins: list[str] | None,
              args: argparse.Namespace, out_dir: Path) -> list[dict[str, Any]]:
    """The same questions through the chain of commit `args.baseline` (a git worktree of it, its own code first on
    the path, this environment's packages and models), in this run."""
    import os
    import subprocess

    tree = BENCH / "results" / "baseline" / args.baseline
    if not (tree / ".git").exists():
        tree.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--force", "--detach", str(tree), args.baseline],
                       check=True, capture_output=True)
    home = BENCH / "results" / "homes" / f"baseline-{args.baseline}-{name}"
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "models").exists():
        (home / "models").symlink_to(ROOT / ".assistant" / "models")
    job = {"home": str(home), "docs": str(folder), "model": args.model, "plugins": plugins, "rows": rows}
    # the commit's own packages first; this checkout after it, so a domain's tool plug-in (bench.domains.*, a
    # namespace package) is found
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tree), str(ROOT)]))
    done = subprocess.run([sys.executable, str(BENCH / "baseline_chain.py")], input=json.dumps(job), text=True,
                          capture_output=True, env=env, cwd=str(tree))
    if done.returncode != 0:
        print(f"the baseline chain ({args.baseline}) failed on {name}; its questions are left out:\n"
              f"{done.stderr[-3000:]}", file=sys.stderr)
        return []
    records = [json.loads(line) | {"domain": name, "model": f"{args.model}@{args.baseline}", "verify": None,
                                   "setup": f"{args.model}, chain of {args.baseline}"}
               for line in done.stdout.splitlines() if line.startswith("{")]
    path = out_dir / f"{name}-{args.model}-baseline_{args.baseline}.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    print(f"wrote {path}")
    return records


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    from core.identity import User

    out_dir = Path(args.out) if args.out else BENCH / "results" / f"answer_eval-{time.strftime('%Y%m%d-%H%M%S')}"
    out_dir.mkdir(parents=True, exist_ok=True)
    records: list[dict[str, Any]] = []
    modes = {"on": [True], "off": [False], "both": [True, False]}[args.verify]
    for name in args.domains.split(","):
        rows, folder, plugins = _domain(name, args)
        rows = [r for r in rows if args.split == "all" or r["split"] == args.split]
        if args.only:
            rows = [r for r in rows if r["kind"] in args.only.split(",") or r["id"] in args.only.split(",")]
        rows = rows[: args.limit] if args.limit else rows
        if args.baseline:
            records += _baseline(name, rows, folder, plugins, args, out_dir)
        for verify in modes:
            a = _assistant(name, folder, plugins, args, verify)
            if args.evidence_only:
                print(name, _evidence_only(a, rows))
                break
            path = out_dir / f"{name}-{args.model}-verify_{'on' if verify else 'off'}.jsonl"
            with path.open("w", encoding="utf-8") as fh:
                for row in rows:
                    user = User(row["user"]["name"], row["user"]["role"], row["user"]["department"])
                    history: list[dict[str, str]] = []
                    for earlier in row.get("history") or []:
                        prev = a.ask(earlier, user, history, use_cache=False)
                        history += [{"role": "user", "content": earlier}, {"role": "assistant", "content": prev.answer}]
                    ans = a.ask(row["question"], user, history, use_cache=False)
                    rec = _record(row, name, ans) | {"model": args.model, "verify": verify,
                                                     "setup": f"{args.model}, verify {'on' if verify else 'off'}"}
                    records.append(rec)
                    fh.write(json.dumps(rec, ensure_ascii=False, default=str) + "\n")
                    fh.flush()
                    if args.verbose:
                        verdict = answer_scoring.judge(rec)
                        print(f"{'✓' if verdict['right'] else '✗'} {row['id']} [{rec['outcome']}] "
                              f"{row['question'][:50]} -> {rec['answer'][:90]!r} ({rec['latency_s']:.1f}s)")
            print(f"wrote {path}")
    return records


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--domains", default=",".join(DOMAINS))
    p.add_argument("--split", default="dev", choices=["dev", "final", "all"])
    p.add_argument("--model", default="offline")
    p.add_argument("--verify", default="on", choices=["on", "off", "both"])
    p.add_argument("--limit", type=int, default=0)
    p.add_argument("--only", default="", help="kinds (fact,calc,...) or question ids, comma-separated")
    p.add_argument("--rgb", type=int, default=30, help="questions per RGB language")
    p.add_argument("--shared", default=None)
    p.add_argument("--out", default=None)
    p.add_argument("--evidence-only", action="store_true")
    p.add_argument("--baseline", default="", help="a commit whose chain answers the same questions in this run "
                   "(e.g. aced604, the chain before the answer path was rebuilt)")
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args()
    records = run(args)
    if records:
        summary = answer_scoring.score_records(records)
        print(answer_scoring.format_table(summary))
        for setup, cells in answer_scoring.verification_matrix(summary["verdicts"]).items():
            print(f"verification of the model's own fact answers, {setup}: {cells}")


if __name__ == "__main__":
    main()
