"""Learning from staff feedback: feedback → training set → new adapter version → compared with the active
version on a held-out set → promoted only if it is not worse.

The training set is the positive answers and the corrected answers (a correction replaces the answer the
model gave; a thumbs-down without a correction teaches nothing and is skipped), deduplicated by question
(the latest word wins, a correction beats a thumbs-up), mixed with the adapter's own base training set so
the model does not forget what it knew.

Who teaches which adapter: a turn's feedback trains only the adapter that serves the asker's department (the
chain's own choice: the department's adapter, else the shared default one), with the department taken from the
turn's audit record. Admins are no exception: their feedback counts for their own department's adapter. A turn
whose prompt held a passage that not every user of the adapter may read (a document tagged with a department,
a department-only knowledge base; any such passage for the shared default adapter) is left out, and so is a
conversation that held one earlier. Corrections are trained on only after an admin approved them, and only if
they hold no chat-template control token at all (`core.feedback.correction_problem`). Every example then goes
through the gate of training files (`finetune.data.to_conversation`): one whose assistant side forges a turn is
refused, reported by feedback id.

The promotion at the end happens only if the active version is still the one the run started from: a rollback
or promotion made while it trained wins, and the candidate stays inactive with the reason in its metadata.
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

from core import db, registry
from core.audit import record_event
from core.errors import AssistantError
from core.feedback import correction_problem, list_feedback
from core.files import atomic_write_text
from core.prompts import corrected_reply
from core.settings import Settings
from finetune import jobs
from finetune.data import to_conversation
from finetune.recipe import Recipe


@dataclass
class FeedbackSet:
    rows: list[dict[str, Any]] = field(default_factory=list)
    positives: int = 0
    corrections: int = 0
    skipped_negative: int = 0
    duplicates: int = 0
    other_departments: int = 0  # turns of departments this adapter does not serve
    restricted: int = 0  # turns whose prompt held text not every user of this adapter may read
    pending_review: int = 0  # corrections no admin has approved yet
    rejected: int = 0  # corrections an admin rejected
    unverifiable: int = 0  # no audit record of the turn: who asked and what it retrieved is unknown
    refused: list[str] = field(default_factory=list)  # "feedback #ID: why": failed the training-data gate

    def counts(self) -> dict[str, int]:
        return {"positive": self.positives, "corrections": self.corrections,
                "skipped_negative": self.skipped_negative, "duplicates": self.duplicates,
                "other_departments": self.other_departments, "restricted": self.restricted,
                "pending_review": self.pending_review, "rejected": self.rejected, "unverifiable": self.unverifiable,
                "refused": len(self.refused)}


def _key(example: dict[str, Any]) -> str:
    """What makes two feedback rows the same lesson: the conversation's user turns (not the retrieval noise)."""
    users = [" ".join(str(m.get("content", "")).lower().split()) for m in example["messages"] if m["role"] == "user"]
    return hashlib.sha256(json.dumps(users, ensure_ascii=False).encode()).hexdigest()


def serves(settings: Settings, name: str, department: str | None, adapters: set[str]) -> bool:
    """Whether adapter `name` answers users of `department` (the chain's choice, assistant/chain.py)."""
    if settings.adapter:  # one adapter forced for everyone
        return settings.adapter.partition("@")[0] == name
    return department == name or (name == settings.default_adapter and department not in adapters)


def _shared(settings: Settings, name: str) -> bool:
    """Whether `name` serves more than its own department (then no department-only text may go in)."""
    return bool(settings.adapter) or name == settings.default_adapter


class _Visibility:
    """Which departments may read each retrieved chunk, from the knowledge bases' manifests (cached per KB)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._kbs: dict[str, dict[str, str | None]] = {}

    def _chunks(self, kb: str) -> dict[str, str | None]:
        if kb not in self._kbs:
            from ingest.store import KnowledgeBase

            try:
                docs = KnowledgeBase(self.settings, kb).read_manifest()["documents"].values()
            except AssistantError:
                docs = []
            self._kbs[kb] = {cid: (d.get("department") or "").strip().lower() or None
                             for d in docs for cid in d.get("chunk_ids", [])}
        return self._kbs[kb]

    def readable_by_only(self, name: str, kb: str | None, chunk_id: str, shared: bool) -> bool:
        """True when every user of adapter `name` may read the chunk."""
        kb = kb or self.settings.default_kb
        chunks = self._chunks(kb)
        if chunk_id not in chunks:
            return False  # removed or re-ingested since: its access cannot be checked, so it is not used
        tags = [chunks[chunk_id]] if chunks[chunk_id] else []
        kb_only = [d.strip().lower() for d in self.settings.kb_access.get(kb, [])]
        if not tags and not kb_only:
            return True
        return not shared and (not tags or name in tags) and (not kb_only or name in kb_only)


def _turns(settings: Settings, audit_ids: list[int]) -> dict[int, dict[str, Any]]:
    """The audited turns behind the feedback, each with the chunk ids retrieved in its conversation so far
    (the history of a follow-up holds earlier answers, and so earlier passages)."""
    if not audit_ids or (db.database_url(settings.audit_db) is None and not settings.audit_db.exists()):
        return {}
    out: dict[int, dict[str, Any]] = {}
    with db.connect_readonly(settings.audit_db) as conn:
        for audit_id in set(audit_ids):
            row = conn.execute("SELECT id, user, department, conversation_id, kb, retrieved FROM turns WHERE id = ?",
                               (audit_id,)).fetchone()
            if row is None:
                continue
            turn = dict(row)
            earlier = [row] if not row["conversation_id"] else conn.execute(
                "SELECT kb, retrieved FROM turns WHERE conversation_id = ? AND user = ? AND id <= ?",
                (row["conversation_id"], row["user"], audit_id)).fetchall()
            turn["chunks"] = [(r["kb"], p.get("chunk_id", "")) for r in earlier for p in json.loads(r["retrieved"])]
            turn["department"] = (row["department"] or "").strip().lower() or None
            out[audit_id] = turn
    return out


def feedback_dataset(settings: Settings, name: str) -> FeedbackSet:
    """The training examples adapter `name` may learn from: see the module's docstring for who and what."""
    out = FeedbackSet()
    rows = list_feedback(settings.app_db)  # oldest first: later feedback replaces earlier
    turns = _turns(settings, [r["audit_id"] for r in rows])
    adapters = set(registry.list_names(settings)) | {name}
    shared = _shared(settings, name)
    visibility = _Visibility(settings)
    chosen: dict[str, tuple[bool, dict[str, Any]]] = {}  # key -> (is_correction, example)
    for row in rows:
        turn = turns.get(row["audit_id"])
        if turn is None:
            out.unverifiable += 1
            continue
        if not serves(settings, name, turn["department"], adapters):
            out.other_departments += 1
            continue
        if not all(visibility.readable_by_only(name, kb, cid, shared) for kb, cid in turn["chunks"]):
            out.restricted += 1
            continue
        example = json.loads(json.dumps(row["example"]))
        if row["correction"]:
            if row.get("review") != "approved":
                if row.get("review") == "rejected":
                    out.rejected += 1
                else:
                    out.pending_review += 1
                continue
            if problem := correction_problem(row["correction"]):  # approved before this check existed
                out.refused.append(f"feedback #{row['id']}: the corrected answer cannot be trained on: {problem}")
                continue
            final = example["messages"][-1]
            reply, why = corrected_reply(example["messages"][:-1], final.get("content") or "", row["correction"])
            if reply is None:
                out.refused.append(f"feedback #{row['id']}: {why}")
                continue
            final["content"] = reply  # the structured form the engine enforces, citing what the answer rests on
            final.pop("reasoning_content", None)  # the trace led to the wrong answer
            is_correction = True
        elif row["rating"] == 1:
            is_correction = False
        else:
            out.skipped_negative += 1
            continue
        try:  # the gate every training file goes through: a row that forges a turn or tool call is refused
            to_conversation(example, f"feedback #{row['id']}")
        except ValueError as exc:
            out.refused.append(f"feedback #{row['id']}: {exc}")
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
    reason: str = ""  # why it was (not) promoted

    def to_dict(self) -> dict[str, Any]:
        return {"candidate": self.candidate, "active": self.active, "promoted": self.promoted,
                "reason": self.reason, "candidate_eval": self.candidate_eval, "active_eval": self.active_eval,
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
    requested_by: str = "cli",
) -> RetrainResult:
    """Train `name`'s next version on feedback + its base set; promote it if its held-out loss is not worse
    than the active version's (by more than `tolerance`, relative) and that version is still the active one."""
    phase = on_phase or (lambda p, info: None)
    active = registry.get(settings, name)  # the active version; a clear error when there is none
    base_files = data or _base_data(active)
    fb = feedback_dataset(settings, name)
    counts = fb.counts()
    if not fb.rows:
        raise AssistantError(
            f"no usable feedback for '{name}' yet: a thumbs-up or an admin-approved correction on answers to "
            f"users this adapter serves ({fb.pending_review} corrections wait for review on the Adapters page)")
    phase("preparing", {"feedback": counts, "refused": fb.refused, "base_data": [str(p) for p in base_files]})

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
    better = cand_eval["eval_loss"] <= act_eval["eval_loss"] * (1 + tolerance)
    phase("deciding", {"better": better})
    promoted, reason = False, (f"worse than {active.ref}: held-out loss {cand_eval['eval_loss']:.4f} vs "
                               f"{act_eval['eval_loss']:.4f}")
    if better:
        # under the registry lock, and only if nobody promoted or rolled back meanwhile
        now_active = registry.promote_if_active(settings, candidate.ref, expected=active.version)
        promoted = now_active is None
        reason = (f"not worse than {active.ref}: held-out loss {cand_eval['eval_loss']:.4f} vs "
                  f"{act_eval['eval_loss']:.4f}" if promoted else
                  f"not promoted: the active version changed from {active.ref} to {name}@{now_active} while it "
                  "trained (a promotion or rollback wins over retraining); `finetune promote "
                  f"{candidate.ref}` to use it anyway")
    result = RetrainResult(candidate.ref, active.ref, cand_eval, act_eval, promoted, counts, work, reason)
    registry.update_metrics(settings, candidate.ref, {"retrain": {
        "base_data": [str(p) for p in base_files], "compared_with": active.ref, "promoted": promoted,
        "reason": reason, "candidate_eval_loss": cand_eval["eval_loss"], "active_eval_loss": act_eval["eval_loss"],
        "feedback": counts, "workdir": str(work)}})
    record_event(settings.audit_db, "adapter_retrained", requested_by, adapter=name, candidate=candidate.ref,
                 compared_with=active.ref, promoted=promoted, reason=reason, feedback=counts)
    if promoted:
        record_event(settings.audit_db, "adapter_promoted", requested_by, adapter=name, version=candidate.ref,
                     previous=active.ref, via="retrain")
    phase("done", result.to_dict())
    return result
