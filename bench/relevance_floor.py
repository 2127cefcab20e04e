"""Calibrate the relevance floor (issue 12 §3): how often does the chain refuse a question the documents answer
(false refusal), and let through one they do not (false answer), per rule and threshold?

    cd bench && PYTHONPATH=.. ../.venv/bin/python relevance_floor.py [--home DIR] [--negatives 100]

Knowledge base: corpus/ (built in a temp home unless --home has one). Answerable: the demo corpus questions
(bench/data/corpus_questions.jsonl, domain_zh_questions.jsonl) and dev_eval.py's facts. Not answerable: dev_eval.py's
refusal questions and RGB's zh and en news questions (../shared/data/rgb), which an insurer's documents cannot
answer. Rules compared: the best dense cosine alone (the old floor, 0.83), and cosine AND the IDF-weighted share
of the question's terms found in the two best passages (assistant/chain/retrieval.py `coverage`).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from common import ROOT, parser, print_table, shared_dir


def load_questions(shared: Path, negatives: int) -> tuple[list[str], list[str]]:
    from dev_eval import QUESTIONS

    pos = [q.q for q in QUESTIONS if q.cat == "fact"]
    for name in ("corpus_questions.jsonl", "domain_zh_questions.jsonl"):
        pos += [json.loads(line)["question"] for line in (ROOT / "bench" / "data" / name).open(encoding="utf-8")]
    neg = [q.q for q in QUESTIONS if q.cat == "refuse"]
    for name in ("zh_refine.jsonl", "en_fact.jsonl"):
        rows = [json.loads(line) for line in (shared / "rgb" / name).open(encoding="utf-8")]
        neg += [r["query"] for r in rows[:negatives]]
    return pos, neg


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--home", help="a home with the corpus ingested (default: a fresh temp one)")
    p.add_argument("--negatives", type=int, default=100, help="RGB questions per language")
    args = p.parse_args()
    from assistant.chain.retrieval import HybridRetriever
    from core.settings import load_settings
    from ingest import pipeline

    home = Path(args.home) if args.home else Path(tempfile.mkdtemp(prefix="floor-"))
    settings = load_settings(home=home)
    if not (home / "kb").exists():
        pipeline.add_paths(settings, [ROOT / "corpus"])
    pos, neg = load_questions(shared_dir(args.shared), args.negatives)
    r = HybridRetriever(settings)
    feats = {}
    for q in pos + neg:
        res = r.retrieve(q, settings.retrieval_k)
        feats[q] = (res.best_dense or 0.0, res.coverage or 0.0)
    rules = [("dense >= 0.83 (old)", 0.83, 0.0, 2.0)] + [
        (f"dense >= {d} and coverage >= {c}", d, c, 2.0) for d in (0.78, 0.80, 0.82) for c in (0.4, 0.5, 0.6)] + [
        (f"dense >= {hi}, or dense >= 0.8 and coverage >= {c}", 0.80, c, hi) for hi in (0.88, 0.90, 0.92)
        for c in (0.4, 0.5)]
    rows = []
    default = (settings.min_relevance, settings.min_coverage, settings.sure_relevance)
    for name, d, c, hi in rules:
        def ok(q: str, d: float = d, c: float = c, hi: float = hi) -> bool:
            return feats[q][0] >= hi or (feats[q][0] >= d and feats[q][1] >= c)

        rows.append({"rule": name + ("  <- default" if (d, c, hi) == default else ""),
                     "false refusals": f"{sum(not ok(q) for q in pos)}/{len(pos)}",
                     "false answers": f"{sum(ok(q) for q in neg)}/{len(neg)}"})
    print_table(f"relevance floor on corpus/ ({len(pos)} answerable, {len(neg)} not)", rows, list(rows[0]))
    missed = [q for q in pos if not (feats[q][0] >= settings.sure_relevance
                                     or feats[q][0] >= settings.min_relevance and feats[q][1] >= settings.min_coverage)]
    print("refused by the default although answerable:", [(q, [round(x, 3) for x in feats[q]]) for q in missed])


if __name__ == "__main__":
    main()
