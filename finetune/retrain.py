"""Learning from staff feedback: feedback → training set → new adapter version → compared with the active
version on a held-out set → promoted only if it is not worse.

The training set is the positive answers and the corrected answers (a correction replaces the answer the
model gave; a thumbs-down without a correction teaches nothing and is skipped), deduplicated by question
(the latest word wins, a correction beats a thumbs-up), mixed with the adapter's own base training set so
the model does not forget what it knew.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from assistant.app.feedback import list_feedback
from core import registry
from core.errors import AssistantError
from core.files import atomic_write_text
from core.settings import Settings
from finetune import jobs
from finetune.recipe import Recipe


@dataclass
class FeedbackSet:
    rows: list[dict[str, Any]] = field(default_factory=list)
    positives: int = 0
    corrections: int = 0
    skipped_negative: int = 0
    duplicates: int = 0


def _key(example: dict[str, Any]) -> str:
    """What makes two feedback rows the same lesson: the conversation's user turns (not the retrieval noise)."""
    users = [" ".join(str(m.get("content", "")).lower().split()) for m in example["messages"] if m["role"] == "user"]
    return hashlib.sha256(json.dumps(users, ensure_ascii=False).encode()).hexdigest()


def feedback_dataset(settings: Settings) -> FeedbackSet:
    out = FeedbackSet()
    chosen: dict[str, tuple[bool, dict[str, Any]]] = {}  # key -> (is_correction, example)
    for row in list_feedback(settings.app_db):  # oldest first: later feedback replaces earlier
        example = json.loads(json.dumps(row["example"]))
        if row["correction"]:
            final = example["messages"][-1]
            final["content"] = row["correction"]
            final.pop("reasoning_content", None)  # the trace led to the wrong answer
            is_correction = True
        elif row["rating"] == 1:
            is_correction = False
        else:
            out.skipped_negative += 1
            continue
        key = _key(example)
        if key in chosen:
            out.duplicates += 1
            if chosen[key][0] and not is_correction:
                continue  # a thumbs-up never overrides a correction
        chosen[key] = (is_correction, example)
    for is_correction, example in chosen.values():
        out.corrections += is_correction
        out.positives += not is_correction
        out.rows.append(example)
    return out


@dataclass
class RetrainResult:
    candidate: str
    active: str
    candidate_eval: dict[str, Any]
    active_eval: dict[str, Any]
    promoted: bool
    feedback: dict[str, int]
    workdir: Path

    def to_dict(self) -> dict[str, Any]:
        return {"candidate": self.candidate, "active": self.active, "promoted": self.promoted,
                "candidate_eval": self.candidate_eval, "active_eval": self.active_eval,
                "feedback": self.feedback, "workdir": str(self.workdir)}


def _base_data(av: registry.AdapterVersion) -> list[Path]:
    # a retrained version's own training file already holds feedback: go back to its base set
    retrained = av.meta.get("metrics", {}).get("retrain", {}).get("base_data")
    return [Path(p) for p in retrained] if retrained else [Path(d["path"]) for d in av.meta.get("data", [])]


def _lines(paths: list[Path]) -> list[str]:
    lines = []
    for p in paths:
        if not p.is_file():
            raise AssistantError(f"base training file {p} is missing; pass the base set with --data PATH")
        lines += [ln for ln in p.read_text(encoding="utf-8").splitlines() if ln.strip()]
    return lines


def retrain(
    settings: Settings,
    name: str,
    data: list[Path] | None = None,
    overrides: dict[str, Any] | None = None,
    eval_ratio: float = 0.1,
    feedback_weight: int = 2,
    tolerance: float = 0.0,
    on_event: Callable[[dict[str, Any]], None] | None = None,
    on_phase: Callable[[str, dict[str, Any]], None] | None = None,
) -> RetrainResult:
    """Train `name`'s next version on feedback + its base set; promote it if its held-out loss is not worse
    than the active version's (by more than `tolerance`, relative)."""
    phase = on_phase or (lambda p, info: None)
    active = registry.get(settings, name)  # the active version; a clear error when there is none
    base_files = data or _base_data(active)
    fb = feedback_dataset(settings)
    counts = {"positive": fb.positives, "corrections": fb.corrections, "skipped_negative": fb.skipped_negative,
              "duplicates": fb.duplicates}
    if not fb.rows:
        raise AssistantError("no usable feedback yet: give answers a thumbs-up or a corrected answer in the chat")
    phase("preparing", {"feedback": counts, "base_data": [str(p) for p in base_files]})

    # held-out set: a slice of the base set and of the feedback, never trained on by the candidate, the same for
    # both versions (the active one may have trained on those base rows: the comparison leans towards keeping it)
    rng = random.Random(42)
    base = _lines(base_files)
    rng.shuffle(base)
    feedback = [json.dumps(r, ensure_ascii=False) for r in fb.rows]
    rng.shuffle(feedback)
    n_base = max(1, round(len(base) * eval_ratio))
    n_fb = round(len(feedback) * eval_ratio) if len(feedback) >= 5 else 0
    train_rows = base[n_base:] + feedback[n_fb:] * max(1, feedback_weight)
    eval_rows = base[:n_base] + feedback[:n_fb]
    work = settings.home / "retrain" / name / datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    work.mkdir(parents=True, exist_ok=True)
    train_file, eval_file = work / "train.jsonl", work / "eval.jsonl"
    atomic_write_text(train_file, "\n".join(train_rows) + "\n")
    atomic_write_text(eval_file, "\n".join(eval_rows) + "\n")
    atomic_write_text(work / "feedback.jsonl", "\n".join(feedback) + "\n")

    recipe = Recipe(**(active.meta["recipe"] | (overrides or {})))
    phase("training", {"train_rows": len(train_rows), "eval_rows": len(eval_rows), "workdir": str(work)})
    candidate = jobs.train_adapter(name, [train_file], recipe, settings, eval_data=[eval_file],
                                   on_event=on_event, activate=False)
    phase("evaluating", {"candidate": candidate.ref, "active": active.ref})
    cand_eval = jobs.evaluate_adapter(candidate.ref, [eval_file], settings, generate=False)
    act_eval = jobs.evaluate_adapter(active.ref, [eval_file], settings, generate=False)
    promoted = cand_eval["eval_loss"] <= act_eval["eval_loss"] * (1 + tolerance)
    result = RetrainResult(candidate.ref, active.ref, cand_eval, act_eval, promoted, counts, work)
    registry.update_metrics(settings, candidate.ref, {"retrain": {
        "base_data": [str(p) for p in base_files], "compared_with": active.ref, "promoted": promoted,
        "candidate_eval_loss": cand_eval["eval_loss"], "active_eval_loss": act_eval["eval_loss"],
        "feedback": counts, "workdir": str(work)}})
    if promoted:
        registry.promote(settings, candidate.ref)
    phase("done", result.to_dict())
    return result
