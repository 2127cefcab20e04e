"""Adapters (admin): training a new adapter (the first one included) from the demo domain set or an uploaded
dataset, the registry's versions and metrics, promote / roll back, the review of staff corrections, and retraining
from staff feedback; training and retraining run as background jobs with a live loss chart (the job outlives the
page: state is on disk). Promotions, roll-backs, reviews and training starts are audited."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from assistant.app.users import Account
from core import registry
from core.audit import record_event
from core.errors import AssistantError
from core.feedback import correction_problem, pending_corrections, review_correction
from core.settings import Settings
from finetune import background
from finetune.retrain import feedback_dataset


def _versions_table(settings: Settings, name: str) -> list[registry.AdapterVersion]:
    versions = registry.list_versions(settings, name)
    rows = []
    for v in versions:
        m = v.meta.get("metrics", {})
        rt = m.get("retrain") or {}
        rows.append({"version": v.ref, "active": "yes" if v.active else "", "eval loss": m.get("eval_loss"),
                     "token acc": m.get("eval_token_acc"), "base eval loss": m.get("base_eval_loss"),
                     "examples": m.get("train_examples"), "steps": m.get("steps"),
                     "retrain": (f"vs {rt['compared_with']}: {rt['candidate_eval_loss']:.4f} / "
                                 f"{rt['active_eval_loss']:.4f}" if rt else ""),
                     "created": v.meta.get("created", "")})
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
    return versions


def _loss_chart(job: background.Job) -> None:
    events = job.metrics()
    steps = [e for e in events if e["event"] == "step"]
    evals = [e for e in events if e["event"] == "eval" and "eval_loss" in e]
    start = next((e for e in reversed(events) if e["event"] == "start"), None)
    if start:
        done = steps[-1]["step"] if steps else start["step"]
        st.progress(min(done / max(start["total_steps"], 1), 1.0),
                    text=f"step {done} / {start['total_steps']} · {start['train_examples']} training examples")
    if steps or evals:
        frame = pd.DataFrame(
            [{"step": e["step"], "train loss": e["loss"]} for e in steps]
            + [{"step": e["step"], "held-out loss": e["eval_loss"]} for e in evals]).groupby("step").first()
        st.line_chart(frame)


def _job_panel(settings: Settings, name: str) -> None:
    jobs = background.list_jobs(settings, name)
    if not jobs:
        st.caption("no training job yet")
        return
    job = jobs[0]
    state: dict[str, Any] = job.state
    status = job.status
    icon = {"running": ":material/hourglass_top:", "done": ":material/check_circle:",
            "failed": ":material/error:", "cancelled": ":material/stop_circle:"}[status]
    st.markdown(f"{icon} job `{job.id}` — **{status}** · phase {state.get('phase', 'starting')} · "
                f"started {job.started}")
    _loss_chart(job)
    if status == "done" and "result" in state and job.kind == "train":
        r = state["result"]
        st.success(f"{r['adapter']} trained: held-out loss {r['base_eval_loss'] or float('nan'):.4f} (base) → "
                   f"{r['eval_loss'] or float('nan'):.4f}; " + ("active: the chat uses it from the next question"
                                                                if r["active"] else "not activated"))
        if name not in registry.list_names(settings):  # the page was drawn before it existed
            st.rerun(scope="app")
    elif status == "done" and "result" in state:
        r = state["result"]
        verdict = "promoted" if r["promoted"] else f"kept inactive ({r.get('reason') or 'worse than the active one'})"
        st.success(f"{r['candidate']}: held-out loss {r['candidate_eval']['eval_loss']:.4f} vs "
                   f"{r['active']} {r['active_eval']['eval_loss']:.4f} → {verdict}")
    if status == "failed":
        st.error(state.get("error") or "the job stopped without saying why; see its log")
    if status == "running" and st.button("Cancel the job", key=f"cancel_{job.id}"):
        background.cancel(job, settings)
        st.rerun()
    with st.expander("Job log"):
        st.code(job.log_tail() or "(empty)")


def _review(settings: Settings, account: Account) -> None:
    """Corrected answers are trained on only after an admin approved them: staff text becomes model behaviour."""
    pending = pending_corrections(settings.app_db)
    st.subheader(f"Corrections to review ({len(pending)})")
    if not pending:
        st.caption("no corrected answer waits for review")
        return
    for row in pending[:20]:
        question = next((m["content"] for m in reversed(row["example"]["messages"]) if m["role"] == "user"), "")
        answer = row["example"]["messages"][-1].get("content", "")
        with st.container(border=True):
            st.text(f"#{row['id']} by {row['user']} · {row['created']}")
            st.text(f"Question: {question}")
            st.text(f"Model's answer: {answer}")
            st.text(f"Correction: {row['correction']}")
            problem = correction_problem(row["correction"])
            if problem:
                st.warning(f"Cannot be approved: {problem}")
            c1, c2, _ = st.columns([1, 1, 4])
            for col, approve, label in ((c1, True, "Approve"), (c2, False, "Reject")):
                if col.button(label, key=f"{'approve' if approve else 'reject'}_{row['id']}",
                              disabled=approve and problem is not None):
                    try:
                        review_correction(settings.app_db, row["id"], approve, account.name)
                    except AssistantError as exc:
                        st.error(str(exc))
                        continue
                    record_event(settings.audit_db, "correction_approved" if approve else "correction_rejected",
                                 account.name, feedback_id=row["id"], author=row["user"])
                    st.rerun()


_REPO = Path(__file__).resolve().parents[2]  # the checkout the UI runs from, whatever the working directory
DEMO_SET = _REPO / "data" / "sft"  # the demo domain set
RECIPES = _REPO / "recipes"


def _dataset(settings: Settings) -> list[Path] | None:
    """The training data the admin picked: the demo domain set, or an uploaded file saved under the home."""
    choices = (["the demo domain set (data/sft)"] if DEMO_SET.is_dir() else []) + ["a file I upload"]
    pick = st.radio("Training data", choices, key="train_data", horizontal=True)
    if pick != "a file I upload":
        return [DEMO_SET]
    up = st.file_uploader("JSONL/JSON: OpenAI `messages` (with `tools`), ShareGPT, alpaca or question/answer rows",
                          type=["jsonl", "json"], key="train_upload")
    if up is None:
        return None
    saved: dict[str, str] = st.session_state.setdefault("train_uploads", {})
    if up.file_id not in saved:  # once per upload, not on every rerun of the page
        folder = settings.home / "datasets" / uuid.uuid4().hex[:12]  # never over another upload of the same name
        folder.mkdir(parents=True)
        target = folder / Path(up.name).name
        target.write_bytes(up.getvalue())
        saved[up.file_id] = str(target)
    return [Path(saved[up.file_id])]


def _train_form(settings: Settings, account: Account, names: list[str]) -> str | None:
    """Start training a new adapter (or a fresh version of one) as a background job; the name it trains."""
    from finetune.data import load_datasets
    from finetune.recipe import load_recipe

    first = not names
    c1, c2 = st.columns(2)
    name = c1.text_input("Adapter name (a department gets its own: claims, hr, …)",
                         settings.default_adapter if first else "", key="train_name").strip().lower()
    recipes = sorted(RECIPES.glob("*.yaml")) if RECIPES.is_dir() else []
    cpu = [r for r in recipes if "cpu" in r.name]
    recipe = c2.selectbox("Recipe", recipes, index=recipes.index(cpu[0]) if cpu else 0, format_func=lambda r: r.stem,
                          key="train_recipe") if recipes else None
    steps = st.number_input("Optimizer steps (0: the recipe's epochs)", 0, 100_000, 0, key="train_steps")
    data = _dataset(settings)
    if not data or not name:
        return None
    try:
        sets = load_datasets(data)
        plan = load_recipe(recipe, {})
    except (AssistantError, ValueError) as exc:  # DataError names the file, line and field
        st.error(f"cannot train on this: {exc}")
        return None
    examples = sum(len(d.conversations) for d in sets)
    epochs = steps * plan.batch_size * plan.grad_accum / max(1, examples) if steps else plan.epochs
    seconds, basis = background.estimate_seconds(settings, examples, epochs)
    st.caption(f"{examples} examples · {epochs:.2g} epochs · about {seconds / 60:.0f} min on this machine ({basis}); "
               "the chat keeps answering meanwhile" + ("; it becomes the active adapter when done" if first else ""))
    if st.button("Start training", key="train_start", type="primary"):
        try:
            # on the model the chat serves: an adapter trained on another base is refused there
            extra = ["--base", settings.model] + (["--max-steps", str(int(steps))] if steps else [])
            job = background.start_training(settings, name, data, recipe, extra)
            record_event(settings.audit_db, "adapter_training_started", account.name, adapter=name, job=job.id,
                         data=[str(d) for d in data], recipe=str(recipe) if recipe else None)
            st.toast(f"training started (job {job.id})")
        except AssistantError as exc:
            st.error(str(exc))
    return name


def _live_jobs(settings: Settings, name: str) -> None:
    # refreshes itself while a job runs; the rest of the page stays interactive
    running = any(j.status == "running" for j in background.list_jobs(settings, name))
    st.fragment(lambda: _job_panel(settings, name), run_every=3 if running else None)()


def render(settings: Settings, account: Account) -> None:
    st.header("Adapters")
    names = registry.list_names(settings)
    if not names:
        st.info("No adapter yet: the chat runs on the base model alone. Train the first one here (or with "
                "`finetune train data/sft --name claims`).")
        trained = _train_form(settings, account, names)
        jobs = background.list_jobs(settings)
        if jobs or trained:
            _live_jobs(settings, jobs[0].name if jobs else str(trained))
        return
    name = st.selectbox("Adapter", names, key="adapter_name",
                        index=names.index(settings.default_adapter) if settings.default_adapter in names else 0)
    versions = _versions_table(settings, name)
    c1, c2 = st.columns([3, 1])
    target = c1.selectbox("Make this version active (promote or roll back)", [v.ref for v in versions],
                          index=next((i for i, v in enumerate(versions) if v.active), 0), key="promote_ref")
    if c2.button("Activate", key="promote"):
        try:
            before = registry.active_ref(settings, name)
            registry.promote(settings, target)
            record_event(settings.audit_db, registry.promotion_event(before, target), account.name, adapter=name,
                         version=target, previous=before)
            st.success(f"{target} is active; the chat uses it from the next question")
            st.rerun()
        except AssistantError as exc:
            st.error(str(exc))

    _review(settings, account)
    st.subheader("Retrain from staff feedback")
    fb = feedback_dataset(settings, name)
    st.markdown(f"usable feedback for **{name}**: **{fb.positives}** helpful answers, **{fb.corrections}** approved "
                f"corrections ({fb.pending_review} corrections waiting for review, {fb.rejected} rejected, "
                f"{fb.skipped_negative} thumbs-down without a correction, {fb.duplicates} duplicates merged; "
                f"left out: {fb.other_departments} from departments this adapter does not serve, {fb.restricted} "
                f"holding department-only text, {len(fb.refused)} refused as training data); mixed with the "
                "adapter's base training set; the new version is "
                "promoted only if its held-out loss is not worse than the active version's and that version is "
                "still active when it finishes.")
    for reason in fb.refused[:10]:
        st.caption(f":material/block: {reason}")
    c1, c2 = st.columns(2)
    max_steps = c1.number_input("Optimizer steps (0: the active version's recipe)", 0, 10_000, 0, key="rt_steps")
    lr = c2.number_input("Learning rate (0: the recipe's)", 0.0, 1.0, 0.0, format="%.5f", key="rt_lr")
    if st.button("Start retraining", key="retrain", type="primary", disabled=not fb.rows):
        extra = (["--max-steps", str(int(max_steps))] if max_steps else []) + (["--lr", str(lr)] if lr else [])
        try:
            job = background.start_retrain(settings, name, extra, requested_by=account.name)
            record_event(settings.audit_db, "adapter_retrain_started", account.name, adapter=name, job=job.id)
            st.toast(f"retraining started (job {job.id})")
        except AssistantError as exc:
            st.error(str(exc))

    _live_jobs(settings, name)
    with st.expander("Train a new adapter or a fresh version from a dataset"):
        _train_form(settings, account, names)
