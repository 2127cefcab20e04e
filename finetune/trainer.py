"""LoRA supervised fine-tuning: our loop over peft, with assistant-only loss, length-grouped dynamic
padding, gradient accumulation, evaluation, best-checkpoint keeping and resumable runs.

The loss is computed with the LM head applied only at label positions (assistant tokens): on a 150k
vocabulary that head is a large share of a small model's compute and of its activation memory.
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import time
import uuid
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from core.errors import AssistantError
from core.files import atomic_write_text, fsync_dir
from core.models import LoadedModel, base_fingerprint, load_model
from core.settings import Settings
from finetune.batching import collate, plan_batches
from finetune.data import Dataset
from finetune.recipe import Recipe
from finetune.render import IGNORE, Example, render

Event = dict[str, Any]
# transformers 5 renamed an attribute peft still reads; the notice is not actionable for users
warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)


@dataclass
class Prepared:
    train: list[Example]
    eval: list[Example]
    truncated: list[str] = field(default_factory=list)  # sources of truncated examples
    dropped: list[str] = field(default_factory=list)  # truncated until no assistant token was left


@dataclass
class TrainResult:
    run_dir: Path
    adapter_dir: Path  # the best checkpoint's adapter
    metrics: dict[str, Any]
    base_spec: str
    base_fingerprint: str
    data: list[dict[str, Any]]
    recipe: Recipe


def split_conversations(datasets: Sequence[Dataset], eval_ratio: float, seed: int) -> tuple[list, list]:
    convs = [c for d in datasets for c in d.conversations]
    order = list(range(len(convs)))
    random.Random(seed).shuffle(order)
    n_eval = round(len(convs) * eval_ratio) if eval_ratio > 0 and len(convs) >= 5 else 0
    held = set(order[:n_eval])
    return [c for i, c in enumerate(convs) if i not in held], [c for i, c in enumerate(convs) if i in held]


def prepare(tokenizer: Any, datasets: Sequence[Dataset], recipe: Recipe,
            eval_datasets: Sequence[Dataset] | None = None) -> Prepared:
    if eval_datasets:
        train_c = [c for d in datasets for c in d.conversations]
        eval_c = [c for d in eval_datasets for c in d.conversations]
    else:
        train_c, eval_c = split_conversations(datasets, recipe.eval_ratio, recipe.seed)
    out = Prepared([], [])
    for convs, bucket in ((train_c, out.train), (eval_c, out.eval)):
        for conv in convs:
            ex = render(tokenizer, conv, recipe.max_length)
            if ex.truncated:
                out.truncated.append(ex.source)
            if ex.n_labels == 0:
                out.dropped.append(ex.source)
                continue
            bucket.append(ex)
    if not out.train:
        raise AssistantError("no trainable examples (all were empty or truncated away); raise max_length")
    return out


def _lm_parts(model: Any) -> tuple[Any, Any]:
    """(decoder stack, lm_head) of a causal LM, through a peft wrapper if present."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return base.model, base.lm_head


def batch_loss(model: Any, batch: dict[str, torch.Tensor], device: str) -> tuple[torch.Tensor, int, int]:
    """Summed cross-entropy over label tokens, the number of those tokens and how many were predicted right."""
    decoder, head = _lm_parts(model)
    ids = batch["input_ids"].to(device)
    hidden = decoder(input_ids=ids, attention_mask=batch["attention_mask"].to(device)).last_hidden_state
    targets = batch["labels"][:, 1:].to(device)
    keep = targets != IGNORE
    logits = head(hidden[:, :-1][keep]).float()
    gold = targets[keep]
    loss = F.cross_entropy(logits, gold, reduction="sum")
    correct = int((logits.argmax(-1) == gold).sum())
    return loss, int(keep.sum()), correct


@torch.no_grad()
def evaluate_examples(model: Any, examples: Sequence[Example], batch_size: int, pad_id: int, device: str) -> dict:
    if not examples:
        return {}
    was_training = model.training
    model.eval()
    total, n, right = 0.0, 0, 0
    for batch_ids in plan_batches(examples, batch_size, seed=0, epoch=0):
        loss, k, c = batch_loss(model, collate([examples[i] for i in batch_ids], pad_id), device)
        total, n, right = total + float(loss), n + k, right + c
    if was_training:
        model.train()
    return {"eval_loss": total / max(n, 1), "eval_token_acc": right / max(n, 1), "eval_tokens": n}


def pad_id_of(tokenizer: Any) -> int:
    pad = tokenizer.pad_token_id
    return pad if pad is not None else tokenizer.eos_token_id


def attach_lora(lm: LoadedModel, recipe: Recipe) -> Any:
    from peft import LoraConfig, get_peft_model

    model = lm.model
    if recipe.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    config = LoraConfig(r=recipe.rank, lora_alpha=recipe.alpha, lora_dropout=recipe.dropout,
                        target_modules=recipe.target_modules, task_type="CAUSAL_LM")
    return get_peft_model(model, config)


def load_for_training(recipe: Recipe, settings: Settings) -> LoadedModel:
    if recipe.qlora and not torch.cuda.is_available():
        raise AssistantError(
            "QLoRA needs a CUDA GPU (bitsandbytes 4-bit kernels); none is available here. "
            "Train plain LoRA instead (drop --qlora), or run on a GPU machine with `pip install -e '.[gpu]'`."
        )
    return load_model(recipe.base, settings, for_training=True, quantize_4bit=recipe.qlora)


# ---- runs: a folder per training run, resumable from its last checkpoint ----

def runs_dir(settings: Settings, name: str) -> Path:
    return settings.home / "runs" / name


def _run_key(recipe: Recipe, datasets: Sequence[Dataset]) -> dict[str, Any]:
    return {"recipe": recipe.model_dump(mode="json"), "data": sorted(d.sha256 for d in datasets)}


def find_resumable(settings: Settings, name: str, recipe: Recipe, datasets: Sequence[Dataset]) -> Path | None:
    """The newest unfinished run of `name` with the same recipe and data that has a checkpoint."""
    root = runs_dir(settings, name)
    if not root.is_dir():
        return None
    key = _run_key(recipe, datasets)
    for run in sorted(root.iterdir(), reverse=True):
        try:
            state = json.loads((run / "run.json").read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue
        if state.get("status") != "done" and state.get("key") == key and (run / "last" / "trainer.pt").exists():
            return run
    return None


def _save_checkpoint(run: Path, label: str, model: Any, extra: dict[str, Any] | None) -> None:
    """Write `run/label` atomically: a complete new folder replaces the old one by rename."""
    tmp = run / f".{label}-{uuid.uuid4().hex[:6]}"
    model.save_pretrained(str(tmp))
    if extra is not None:
        torch.save(extra, tmp / "trainer.pt")
    final, old = run / label, run / f".{label}-old"
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    fsync_dir(run)
    shutil.rmtree(old, ignore_errors=True)


def _log(run: Path, event: Event, on_event: Callable[[Event], None] | None) -> None:
    with open(run / "metrics.jsonl", "a", encoding="utf-8") as fh:
        fh.write(json.dumps(event, ensure_ascii=False) + "\n")
    if on_event:
        on_event(event)


def train(
    name: str,
    datasets: Sequence[Dataset],
    recipe: Recipe,
    settings: Settings,
    eval_datasets: Sequence[Dataset] | None = None,
    on_event: Callable[[Event], None] | None = None,
    resume: bool | Path = False,
    lm: LoadedModel | None = None,
) -> TrainResult:
    """Train a LoRA adapter; returns where its best checkpoint is. `resume`: True finds the run to continue."""
    torch.manual_seed(recipe.seed)
    random.seed(recipe.seed)
    lm = lm or load_for_training(recipe, settings)
    fingerprint = base_fingerprint(lm.model)
    prepared = prepare(lm.tokenizer, datasets, recipe, eval_datasets)
    pad_id = pad_id_of(lm.tokenizer)
    model = attach_lora(lm, recipe)
    model.train()

    run: Path | None = None
    if isinstance(resume, Path):
        run = resume
    elif resume:
        run = find_resumable(settings, name, recipe, datasets)
    state: dict[str, Any] = {}
    if run is not None:
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        state = torch.load(run / "last" / "trainer.pt", weights_only=False)
        set_peft_model_state_dict(model, load_file(str(run / "last" / "adapter_model.safetensors")))
    else:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        run = runs_dir(settings, name) / f"{stamp}-{uuid.uuid4().hex[:4]}"
        run.mkdir(parents=True)
    run_meta = {
        "name": name, "status": "running", "key": _run_key(recipe, datasets), "base": lm.spec,
        "base_fingerprint": fingerprint, "pid": os.getpid(),
        "data": [{"path": str(d.path), "sha256": d.sha256, "examples": len(d.conversations), "formats": d.formats}
                 for d in datasets],
    }
    atomic_write_text(run / "run.json", json.dumps(run_meta, ensure_ascii=False, indent=1))

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=recipe.lr, weight_decay=recipe.weight_decay)
    n_batches = math.ceil(len(prepared.train) / recipe.batch_size)
    steps_per_epoch = max(1, math.ceil(n_batches / recipe.grad_accum))
    total = recipe.max_steps or max(1, math.ceil(recipe.epochs * steps_per_epoch))
    from transformers import get_scheduler

    scheduler = get_scheduler(recipe.scheduler, optimizer, num_warmup_steps=int(recipe.warmup_ratio * total),
                              num_training_steps=total)
    step, best, tokens_seen, elapsed = 0, math.inf, 0, 0.0
    history: list[dict] = []
    if state:
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        step, best, tokens_seen, elapsed = state["step"], state["best"], state["tokens"], state["elapsed"]
        history = state.get("history", [])
        torch.set_rng_state(state["torch_rng"])

    trainable = sum(p.numel() for p in params)
    _log(run, {"event": "start", "step": step, "total_steps": total, "train_examples": len(prepared.train),
               "eval_examples": len(prepared.eval), "truncated": len(prepared.truncated),
               "dropped": len(prepared.dropped), "trainable_params": trainable, "resumed": bool(state),
               "model": lm.describe(), "run": str(run)}, on_event)
    if not state:  # the base model's eval loss: the reference the adapter must beat
        base_metrics = evaluate_examples(model, prepared.eval, recipe.batch_size, pad_id, lm.device)
        if base_metrics:
            history.append({"step": 0, "train_loss": None, "base": True, **base_metrics})
            _log(run, {"event": "eval", "step": 0, "best": False, **base_metrics}, on_event)
    t0 = time.perf_counter() - elapsed
    last_loss = math.nan
    while step < total:
        epoch, k = divmod(step, steps_per_epoch)
        batches = plan_batches(prepared.train, recipe.batch_size, recipe.seed, epoch)
        groups = [batches[i * recipe.grad_accum : (i + 1) * recipe.grad_accum] for i in range(steps_per_epoch)]
        for group in groups[k:]:
            if not group:
                continue
            exs = [[prepared.train[i] for i in b] for b in group]
            n_tok = sum(e.n_labels for b in exs for e in b)
            loss_sum = 0.0
            for b in exs:
                loss, _, _ = batch_loss(model, collate(b, pad_id), lm.device)
                (loss / n_tok).backward()
                loss_sum += float(loss.detach())
                tokens_seen += sum(len(e.input_ids) for e in b)
            torch.nn.utils.clip_grad_norm_(params, recipe.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            last_loss = loss_sum / n_tok
            secs = time.perf_counter() - t0
            _log(run, {"event": "step", "step": step, "total_steps": total, "epoch": epoch + 1, "loss": last_loss,
                       "lr": scheduler.get_last_lr()[0], "tokens": tokens_seen, "elapsed_s": secs,
                       "tokens_per_s": tokens_seen / max(secs, 1e-9)}, on_event)
            if step % recipe.eval_steps == 0 or step == total:
                metrics = evaluate_examples(model, prepared.eval, recipe.batch_size, pad_id, lm.device)
                score = metrics.get("eval_loss", last_loss)
                is_best = score < best
                if is_best:
                    best = score
                    _save_checkpoint(run, "best", model, None)
                history.append({"step": step, "train_loss": last_loss, **metrics})
                _log(run, {"event": "eval", "step": step, "train_loss": last_loss, "best": is_best, **metrics},
                     on_event)
                _save_checkpoint(run, "last", model, {
                    "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "step": step,
                    "best": best, "tokens": tokens_seen, "elapsed": time.perf_counter() - t0,
                    "history": history, "torch_rng": torch.get_rng_state()})
            if step >= total:
                break

    seconds = time.perf_counter() - t0
    trained = [h for h in history if not h.get("base")]
    best_row = min(trained, key=lambda h: h.get("eval_loss", h["train_loss"])) if trained else {}
    first = history[0] if history and history[0].get("base") else {}
    metrics = {
        "train_loss": last_loss, "best_step": best_row.get("step"), "eval_loss": best_row.get("eval_loss"),
        "eval_token_acc": best_row.get("eval_token_acc"), "steps": step, "train_examples": len(prepared.train),
        "eval_examples": len(prepared.eval), "truncated": len(prepared.truncated), "dropped": len(prepared.dropped),
        "tokens": tokens_seen, "seconds": round(seconds, 1), "tokens_per_s": tokens_seen / max(seconds, 1e-9),
        "trainable_params": trainable, "base_eval_loss": first.get("eval_loss"),
        "base_eval_token_acc": first.get("eval_token_acc"), "history": history,
    }
    run_meta.update(status="done", metrics={k: v for k, v in metrics.items() if k != "history"})
    atomic_write_text(run / "run.json", json.dumps(run_meta, ensure_ascii=False, indent=1))
    _log(run, {"event": "done", **{k: v for k, v in metrics.items() if k != "history"}}, on_event)
    return TrainResult(run, run / "best", metrics, lm.spec, fingerprint, run_meta["data"], recipe)
