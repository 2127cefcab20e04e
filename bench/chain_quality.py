"""Answer quality of the whole chain (retrieval + model + citations) on the shared evaluation data.

    .venv/bin/python bench/chain_quality.py rgb --lang zh --limit 20 [--adapters none,claims]
    .venv/bin/python bench/chain_quality.py financebench --docs 3

Each adapter in `--adapters` (default: the base model and the active `claims` version) answers the same
questions over the same knowledge base in the same run; the base model is the baseline.

RGB (the RGB protocol, per language): the questions' passages are pooled into a fresh knowledge base
and each question goes through the chain; accuracy = the answer contains an acceptable answer.
Negative rejection: a second knowledge base holds only the questions' negative passages; the chain must
say the documents do not answer. FinanceBench: the N smallest filings are ingested; accuracy = the answer
contains the reference's key figure; citation accuracy = a cited chunk lies on an evidence page.
"""

from __future__ import annotations

import json
import re
import tempfile
import time
from pathlib import Path
from typing import Any

from common import parser, print_table, shared_dir


def _flat(answers: Any) -> list[str]:
    if isinstance(answers, list):
        return [a for x in answers for a in _flat(x)]
    return [str(answers)]


def _contains(answer: str, wanted: list[str]) -> bool:
    norm = "".join(answer.lower().split())
    return any("".join(w.lower().split()) in norm for w in wanted if w.strip())


def _write_passages(folder: Path, texts: list[str]) -> None:
    folder.mkdir(parents=True)
    for i, t in enumerate(texts):
        (folder / f"p{i:05d}.txt").write_text(t, encoding="utf-8")


_RUNTIME: list[Any] = []


def _assistant(home: Path, adapter: str) -> tuple[Any, str]:
    """The chain over the bench's own knowledge base and audit log, with the user's model and adapters
    (the model is loaded once and shared by every adapter compared)."""
    from assistant.backends.runtime import ModelRuntime
    from assistant.chain import build_assistant
    from core import registry
    from core.settings import load_settings

    user_settings = load_settings()
    if not _RUNTIME:
        _RUNTIME.append(ModelRuntime.load(user_settings.model, user_settings))
    ref = None if adapter == "none" else registry.get(user_settings, adapter).ref  # the user's registry
    settings = load_settings(home=home, max_new_tokens=96, adapter=ref)
    return build_assistant(settings, runtime=_RUNTIME[0]), ref or "base model"


def rgb(args: Any) -> None:
    from core.identity import User
    from ingest import pipeline

    data = shared_dir(args.shared) / "rgb" / ("zh_refine.jsonl" if args.lang == "zh" else "en_fact.jsonl")
    rows = [json.loads(x) for x in data.read_text(encoding="utf-8").splitlines()][: args.limit]
    home = Path(tempfile.mkdtemp())
    pos = list(dict.fromkeys(t for r in rows for t in r["positive"][:3] + r["negative"][:2]))
    neg = list(dict.fromkeys(t for r in rows for t in r["negative"][:3]))
    _write_passages(home / "docs_mixed", pos)
    _write_passages(home / "docs_neg", neg)
    from core.settings import load_settings

    t0 = time.perf_counter()
    pipeline.add_paths(load_settings(home=home), [home / "docs_mixed"], kb_name="mixed")
    pipeline.add_paths(load_settings(home=home), [home / "docs_neg"], kb_name="negative")
    print(f"RGB {args.lang}: {len(rows)} questions; {len(pos)} passages (positive+noise), {len(neg)} negative-only;"
          f" ingest {time.perf_counter() - t0:.0f} s")
    user = User("bench", "admin")
    table = []
    for adapter in args.adapters.split(","):
        a, label = _assistant(home, adapter)
        acc = rej = 0
        lat: list[float] = []
        out = []
        for i, r in enumerate(rows, 1):
            wanted = _flat(r["answer"])
            ans = a.ask(r["query"], user, kb="mixed")
            ok = _contains(ans.answer, wanted)
            neg_ans = a.ask(r["query"], user, kb="negative")
            rejected = neg_ans.outcome == "refusal"
            acc += ok
            rej += rejected
            lat.append(ans.latency_s)
            out.append({"q": r["query"], "answer": ans.answer, "ok": ok, "negative_answer": neg_ans.answer,
                        "rejected": rejected})
            print(f"{label} {i}/{len(rows)} ok={ok} rejected={rejected} {ans.latency_s:.1f}s", flush=True)
        table.append({"model": label, "questions": len(rows), "answer_accuracy": round(acc / len(rows), 3),
                      "negative_rejection": round(rej / len(rows), 3), "mean_latency_s": round(sum(lat) / len(lat), 1)})
        Path("bench/results").mkdir(exist_ok=True)
        Path(f"bench/results/chain_rgb_{args.lang}_{adapter}.json").write_text(
            json.dumps(out, ensure_ascii=False, indent=1), encoding="utf-8")
    print_table(f"chain on RGB {args.lang}", table, list(table[0]))


def financebench(args: Any) -> None:
    from core.identity import User
    from core.settings import load_settings
    from ingest import pipeline

    data = shared_dir(args.shared) / "financebench"
    pdfs = sorted((data / "pdfs").glob("*.pdf"), key=lambda f: f.stat().st_size)[: args.docs]
    names = {f.stem for f in pdfs}
    qs = [q for q in map(json.loads, (data / "questions.jsonl").read_text().splitlines()) if q["doc_name"] in names]
    home = Path(tempfile.mkdtemp())
    t0 = time.perf_counter()
    pipeline.add_paths(load_settings(home=home), pdfs)
    print(f"FinanceBench: {len(pdfs)} filings, {len(qs)} questions; ingest {time.perf_counter() - t0:.0f} s")
    user = User("bench", "admin")
    table = []
    for adapter in args.adapters.split(","):
        a, label = _assistant(home, adapter)
        acc = cite = 0
        out = []
        for i, q in enumerate(qs, 1):
            ans = a.ask(q["question"], user)
            figures = re.findall(r"\$?-?\d[\d,]*\.?\d*%?", q["answer"])
            key = [f.replace("$", "").replace(",", "") for f in figures[:1]] or [q["answer"][:40]]
            ok = _contains(ans.answer.replace(",", "").replace("$", ""), key)
            pages = {e["evidence_page_num"] for e in q["evidence"]}
            cited_ok = any(s["source"] == f"{q['doc_name']}.pdf" and s["page"] in pages for s in ans.sources)
            acc += ok
            cite += cited_ok
            out.append({"q": q["question"], "reference": q["answer"], "answer": ans.answer, "ok": ok,
                        "cited": [(s["source"], s["page"]) for s in ans.sources], "citation_ok": cited_ok})
            print(f"{label} {i}/{len(qs)} ok={ok} citation={cited_ok} {ans.latency_s:.1f}s", flush=True)
        table.append({"model": label, "questions": len(qs), "answer_accuracy": round(acc / len(qs), 3),
                      "page_correct_citation": round(cite / len(qs), 3)})
        Path("bench/results").mkdir(exist_ok=True)
        Path(f"bench/results/chain_financebench_{adapter}.json").write_text(
            json.dumps(out, ensure_ascii=False, indent=1), encoding="utf-8")
    print_table(f"chain on FinanceBench, {len(pdfs)} filings", table, list(table[0]))


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("dataset", choices=["rgb", "financebench"])
    p.add_argument("--lang", choices=["zh", "en"], default="zh")
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--docs", type=int, default=3)
    p.add_argument("--adapters", default="none,claims", help="comma-separated: NAME, NAME@vN or 'none' (base)")
    args = p.parse_args()
    rgb(args) if args.dataset == "rgb" else financebench(args)


if __name__ == "__main__":
    main()
