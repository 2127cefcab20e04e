"""`assistant eval`: run a question set through the chain and score it.

Each JSONL row: `question` plus any of `expected_answer` (string or list of acceptable strings),
`expected_sources` (file names, or {source, page} with 0-based pages), `expected_tool` ({name, arguments}),
`unanswerable` (true: the right outcome is the refusal, `Answer.outcome == "refusal"`: the documents do not say).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from core.errors import DataError
from core.identity import User


def _norm(s: str) -> str:
    return "".join(s.lower().split()).replace(",", "")


def _source_match(want: Any, got: dict[str, Any]) -> bool:
    if isinstance(want, str):
        return got["source"] == want
    return got["source"] == want.get("source") and ("page" not in want or got.get("page") == want["page"])


def load_questions(path: Path) -> list[dict[str, Any]]:
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(path, n, f"invalid JSON ({exc.msg})") from None
        if not isinstance(row, dict) or not isinstance(row.get("question"), str):
            raise DataError(path, n, "each row needs a string field 'question'")
        rows.append(row)
    if not rows:
        raise DataError(path, 1, "no questions in file")
    return rows


def score(row: dict[str, Any], result: dict[str, Any]) -> dict[str, bool | None]:
    s: dict[str, bool | None] = {}
    answer = result["answer"]
    if "expected_answer" in row:
        wanted = row["expected_answer"] if isinstance(row["expected_answer"], list) else [row["expected_answer"]]
        s["answer_contains"] = any(_norm(str(w)) in _norm(answer) for w in wanted)
        s["answer_exact"] = any(_norm(str(w)) == _norm(answer) for w in wanted)
    if row.get("expected_sources"):
        retrieved = result.get("retrieved", [])
        s["retrieval_hit"] = any(_source_match(w, r) for w in row["expected_sources"] for r in retrieved)
        cited = result["sources"]
        s["citation_correct"] = bool(cited) and all(
            any(_source_match(w, c) for w in row["expected_sources"]) for c in cited)
    if "expected_tool" in row:
        want = row["expected_tool"]
        s["tool_call_acc"] = any(
            t["name"] == want["name"] and all(str(t["arguments"].get(k, "")).lower() == str(v).lower()
                                              for k, v in want.get("arguments", {}).items())
            for t in result["tool_calls"])
    if row.get("unanswerable"):
        s["negative_rejection"] = result.get("outcome") == "refusal" and not result["sources"]
    return s


def evaluate_file(assistant: Any, path: Path, user: User, kb: str | None = None, adapter: str | None = None,
                  limit: int | None = None,
                  on_item: Callable[[int, int, dict[str, Any]], None] | None = None) -> dict[str, Any]:
    rows = load_questions(path)[:limit]
    results = []
    for i, row in enumerate(rows, 1):
        if on_item:
            on_item(i, len(rows), row)
        ans = assistant.ask(row["question"], user, kb=kb, adapter=adapter, channel="cli",
                            use_cache=False).to_dict()
        results.append({"question": row["question"], "answer": ans["answer"], "scores": score(row, ans),
                        "sources": ans["sources"], "tool_calls": ans["tool_calls"], "latency_s": ans["latency_s"]})
    metrics: dict[str, dict[str, Any]] = {}
    for key in ("retrieval_hit", "answer_contains", "answer_exact", "citation_correct", "tool_call_acc",
                "negative_rejection"):
        vals = [r["scores"][key] for r in results if r["scores"].get(key) is not None]
        metrics[key] = {"value": sum(vals) / len(vals) if vals else None, "n": len(vals)}
    lat = [r["latency_s"] for r in results]
    metrics["mean_latency_s"] = {"value": sum(lat) / len(lat), "n": len(lat)}
    return {"metrics": metrics, "rows": results}
