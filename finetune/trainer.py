"""Supervised fine-tuning (LoRA over peft, or every weight): assistant-only loss, padding-free packed
micro-batches, gradient accumulation, evaluation, best-checkpoint keeping and resumable runs.

Read top to bottom: data -> model pieces -> run folders -> `_setup` -> `_fit` (the loop, `_train_step`,
`_checkpoint`) -> `_finish`; `train` strings them together.

Fast by construction on a GPU, and the same code on a CPU: bf16 autocast on CUDA, a micro-batch packed
into one row (no padding; attention kept within each example), the LM head and loss only at label
positions and in chunks (on a 150k vocabulary the head is a large share of a small model's compute and
memory), memory-lean norms and SwiGLU, fused AdamW, gradient checkpointing only where memory needs it.
"""

from __future__ import annotations

import contextlib
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

from core.errors import AssistantError
from core.files import atomic_write_text, fsync_dir
from core.models import LoadedModel, base_fingerprint, load_model
from core.settings import Settings
from finetune.batching import collate, plan_batches
from finetune.data import Dataset
from finetune.lean import make_lean
from finetune.loss import label_cross_entropy
from finetune.packing import SEQ_LENS, enable_packed_attention, pack, packed_call
from finetune.recipe import Recipe
from finetune.render import IGNORE, Example, render
from finetune.tracking import open_trackers

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
    adapter_dir: Path  # the best checkpoint: an adapter, or a whole model folder (method=full)
    metrics: dict[str, Any]
    base_spec: str
    base_fingerprint: str
    data: list[dict[str, Any]]
    recipe: Recipe
    method: str = "lora"
    tracking: dict[str, str] = field(default_factory=dict)  # tracker -> where its run is


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


# ---- the model: forward, loss, evaluation, adapters ----

def _lm_parts(model: Any) -> tuple[Any, Any]:
    """(decoder stack, lm_head) of a causal LM, through a peft wrapper if present."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return base.model, base.lm_head


def autocast(device: str) -> Any:
    """bf16 matmuls on CUDA (LoRA weights and fp32 master weights included); CPU keeps its fp32 arithmetic."""
    if device == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def micro_batch(examples: Sequence[Example], pad_id: int, packed: bool) -> dict[str, Any]:
    return pack(examples) if packed else collate(examples, pad_id)


def batch_loss(model: Any, batch: dict[str, Any], device: str) -> tuple[torch.Tensor, int, torch.Tensor]:
    """Summed cross-entropy over label tokens, the number of those tokens and how many were predicted right
    (a tensor: reading it waits for the device). `batch`: from `collate` (padded) or `pack` (one row)."""
    decoder, head = _lm_parts(model)
    targets = batch["labels"][:, 1:]
    keep = targets != IGNORE
    n = int(keep.sum())
    kwargs: dict[str, Any] = {"use_cache": False}
    if "position_ids" in batch:  # packed: no mask, positions restart per example
        kwargs["position_ids"] = batch["position_ids"].to(device, non_blocking=True)
        kwargs[SEQ_LENS] = batch[SEQ_LENS]
    else:
        kwargs["attention_mask"] = batch["attention_mask"].to(device, non_blocking=True)
    with autocast(device), packed_call() if SEQ_LENS in kwargs else contextlib.nullcontext():
        hidden = decoder(input_ids=batch["input_ids"].to(device, non_blocking=True), **kwargs).last_hidden_state
    dtype = torch.bfloat16 if device == "cuda" else None
    # token accuracy is an evaluation figure: training skips the argmax over the vocabulary
    loss, correct = label_cross_entropy(hidden[:, :-1][keep.to(device)], head, targets[keep].to(device), dtype,
                                        count_correct=not torch.is_grad_enabled())
    return loss, n, correct


@torch.no_grad()
def evaluate_examples(model: Any, examples: Sequence[Example], batch_size: int, pad_id: int, device: str,
                      packed: bool = True) -> dict:
    if not examples:
        return {}
    was_training = model.training
    model.eval()
    total, n, right = 0.0, 0, 0
    for batch_ids in plan_batches(examples, batch_size, seed=0, epoch=0):
        loss, k, c = batch_loss(model, micro_batch([examples[i] for i in batch_ids], pad_id, packed), device)
        total, n, right = total + float(loss), n + k, right + int(c)
    if was_training:
        model.train()
    return {"eval_loss": total / max(n, 1), "eval_token_acc": right / max(n, 1), "eval_tokens": n}


def pad_id_of(tokenizer: Any) -> int:
    pad = tokenizer.pad_token_id
    return pad if pad is not None else tokenizer.eos_token_id


def use_checkpointing(recipe: Recipe, model: Any, device: str) -> bool:
    """The recipe's choice; by default on for models above ~4B parameters on a GPU whose free memory would
    not hold a full micro-batch's activations (recomputing them costs about a third more time)."""
    if recipe.gradient_checkpointing is not None:
        return recipe.gradient_checkpointing
    if device != "cuda":
        return False
    cfg = model.config
    if sum(p.numel() for p in model.parameters()) * (4 if recipe.qlora else 1) < 4e9:
        return False
    free, _ = torch.cuda.mem_get_info()
    per_token = 48 * cfg.hidden_size * cfg.num_hidden_layers  # bytes kept per token, lean ops, bf16
    return recipe.batch_size * recipe.max_length * per_token > 0.8 * free


def attach_lora(lm: LoadedModel, recipe: Recipe) -> Any:
    from peft import LoraConfig, get_peft_model

    model = lm.model
    if use_checkpointing(recipe, model, lm.device):
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    config = LoraConfig(r=recipe.rank, lora_alpha=recipe.alpha, lora_dropout=recipe.dropout,
                        target_modules=recipe.target_modules, task_type="CAUSAL_LM")
    return get_peft_model(model, config)


def prepare_full(lm: LoadedModel, recipe: Recipe) -> Any:
    """Every weight trainable. On CUDA with AdamW the weights become fp32 masters (bf16 compute by autocast);
    with the 8-bit optimizer they stay bf16."""
    model = lm.model
    if lm.device == "cuda" and recipe.optimizer == "adamw":
        model.float()
    for p in model.parameters():
        p.requires_grad_(True)
    if use_checkpointing(recipe, model, lm.device):
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return model


def load_for_training(recipe: Recipe, settings: Settings) -> LoadedModel:
    if recipe.qlora and not torch.cuda.is_available():
        raise AssistantError(
            "QLoRA needs a CUDA GPU (bitsandbytes 4-bit kernels); none is available here. "
            "Train plain LoRA instead (drop --qlora), or run on a GPU machine with `pip install -e '.[gpu]'`."
        )
    return load_model(recipe.base, settings, for_training=True, quantize_4bit=recipe.qlora)


def build_optimizer(params: list[torch.nn.Parameter], recipe: Recipe, device: str) -> torch.optim.Optimizer:
    if recipe.optimizer == "adamw_8bit":
        if device != "cuda":
            raise AssistantError("the 8-bit optimizer needs a CUDA GPU; use optimizer: adamw on this machine")
        try:
            import bitsandbytes as bnb
        except ImportError as exc:
            raise AssistantError("the 8-bit optimizer needs bitsandbytes: `pip install -e '.[gpu]'`") from exc
        return bnb.optim.AdamW8bit(params, lr=recipe.lr, weight_decay=recipe.weight_decay)
    # fused: one kernel for all parameters instead of several per tensor
    return torch.optim.AdamW(params, lr=recipe.lr, weight_decay=recipe.weight_decay, fused=device == "cuda")


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


def _save_checkpoint(run: Path, label: str, model: Any, extra: dict[str, Any] | None,
                     tokenizer: Any = None) -> None:
    """Write `run/label` atomically: a complete new folder replaces the old one by rename. With a tokenizer
    (full fine-tuning) the folder is a complete model folder."""
    tmp = run / f".{label}-{uuid.uuid4().hex[:6]}"
    model.save_pretrained(str(tmp))
    if tokenizer is not None:
        tokenizer.save_pretrained(str(tmp))
    if extra is not None:
        torch.save(extra, tmp / "trainer.pt")
    final, old = run / label, run / f".{label}-old"
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    fsync_dir(run)
    shutil.rmtree(old, ignore_errors=True)


def _load_weights(model: Any, folder: Path, method: str) -> None:
    from safetensors.torch import load_file

    if method == "lora":
        from peft import set_peft_model_state_dict

        set_peft_model_state_dict(model, load_file(str(folder / "adapter_model.safetensors")))
        return
    state: dict[str, torch.Tensor] = {}
    for f in sorted(folder.glob("*.safetensors")):
        state.update(load_file(str(f)))
    model.load_state_dict(state, strict=False)  # tied weights are stored once


@dataclass
class _Progress:
    step: int = 0
    best: float = math.inf
    tokens: int = 0
    elapsed: float = 0.0
    last_loss: float = math.nan
    history: list[dict] = field(default_factory=list)


@dataclass
class _Run:
    """Everything the loop needs, assembled by `_setup`."""

    dir: Path
    meta: dict[str, Any]
    recipe: Recipe
    lm: LoadedModel
    model: Any
    prepared: Prepared
    pad_id: int
    params: list[torch.nn.Parameter]
    optimizer: Any
    scheduler: Any
    steps_per_epoch: int
    total: int
    progress: _Progress
    resumed: bool
    trackers: Any
    on_event: Callable[[Event], None] | None


def _emit(r: _Run, event: Event) -> None:
    with open(r.dir / "metrics.jsonl", "a", encoding="utf-8") as fh:
        fh.write(json.dumps(event, ensure_ascii=False) + "\n")
    r.trackers.log(event)
    if r.on_event:
        r.on_event(event)


def _open_run(settings: Settings, name: str, recipe: Recipe, datasets: Sequence[Dataset],
              resume: bool | Path) -> tuple[Path, dict[str, Any]]:
    """(run folder, saved trainer state: empty for a new run)."""
    run = resume if isinstance(resume, Path) else (find_resumable(settings, name, recipe, datasets) if resume
                                                   else None)
    if run is not None:
        return run, torch.load(run / "last" / "trainer.pt", weights_only=False)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    run = runs_dir(settings, name) / f"{stamp}-{uuid.uuid4().hex[:4]}"
    run.mkdir(parents=True)
    return run, {}


def _setup(name: str, datasets: Sequence[Dataset], recipe: Recipe, settings: Settings,
           eval_datasets: Sequence[Dataset] | None, on_event: Callable[[Event], None] | None,
           resume: bool | Path, lm: LoadedModel | None, report_to: Sequence[str]) -> _Run:
    torch.manual_seed(recipe.seed)
    random.seed(recipe.seed)
    lm = lm or load_for_training(recipe, settings)
    fingerprint = base_fingerprint(lm.model)
    prepared = prepare(lm.tokenizer, datasets, recipe, eval_datasets)
    model = prepare_full(lm, recipe) if recipe.method == "full" else attach_lora(lm, recipe)
    kernels = make_lean(model, lm.device)
    attention = "packed_sdpa" if recipe.packing and enable_packed_attention(model) else None
    model.train()

    run, state = _open_run(settings, name, recipe, datasets, resume)
    if state:
        _load_weights(model, run / "last", recipe.method)
    meta = {
        "name": name, "status": "running", "key": _run_key(recipe, datasets), "base": lm.spec,
        "base_fingerprint": fingerprint, "pid": os.getpid(), "method": recipe.method,
        "data": [{"path": str(d.path), "sha256": d.sha256, "examples": len(d.conversations), "formats": d.formats}
                 for d in datasets],
    }
    atomic_write_text(run / "run.json", json.dumps(meta, ensure_ascii=False, indent=1))

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = build_optimizer(params, recipe, lm.device)
    n_batches = math.ceil(len(prepared.train) / recipe.batch_size)
    steps_per_epoch = max(1, math.ceil(n_batches / recipe.grad_accum))
    total = recipe.max_steps or max(1, math.ceil(recipe.epochs * steps_per_epoch))
    from transformers import get_scheduler

    scheduler = get_scheduler(recipe.scheduler, optimizer, num_warmup_steps=int(recipe.warmup_ratio * total),
                              num_training_steps=total)
    progress = _Progress()
    if state:
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        progress = _Progress(state["step"], state["best"], state["tokens"], state["elapsed"],
                             history=state.get("history", []))
        torch.set_rng_state(state["torch_rng"])
    trackers = open_trackers(report_to, run, name, {
        "recipe": recipe.model_dump(mode="json"), "base": lm.spec, "base_fingerprint": fingerprint,
        "data": meta["data"], "eval_data": [{"path": str(d.path), "sha256": d.sha256} for d in eval_datasets or []]})
    if trackers.dirs:
        meta["tracking"] = trackers.dirs
        atomic_write_text(run / "run.json", json.dumps(meta, ensure_ascii=False, indent=1))
    r = _Run(run, meta, recipe, lm, model, prepared, pad_id_of(lm.tokenizer), params, optimizer, scheduler,
             steps_per_epoch, total, progress, bool(state), trackers, on_event)
    _emit(r, {"event": "start", "step": progress.step, "total_steps": total, "train_examples": len(prepared.train),
              "eval_examples": len(prepared.eval), "truncated": len(prepared.truncated),
              "dropped": len(prepared.dropped), "trainable_params": sum(p.numel() for p in params),
              "resumed": bool(state), "model": lm.describe(), "run": str(run), "method": recipe.method,
              "kernels": kernels, "attention": attention or "as loaded",
              "gradient_checkpointing": bool(getattr(_lm_parts(model)[0], "gradient_checkpointing", False))})
    return r


# ---- the loop ----

def _evaluate(r: _Run) -> dict[str, Any]:
    return evaluate_examples(r.model, r.prepared.eval, r.recipe.batch_size, r.pad_id, r.lm.device, r.recipe.packing)


def _train_step(r: _Run, group: list[list[int]]) -> float:
    """One optimizer step over a group of micro-batches; the loss is the mean over all their label tokens."""
    exs = [[r.prepared.train[i] for i in b] for b in group]
    n_tok = sum(e.n_labels for b in exs for e in b)
    loss_sum = torch.zeros((), dtype=torch.float32, device=r.lm.device)
    for b in exs:
        loss, _, _ = batch_loss(r.model, micro_batch(b, r.pad_id, r.recipe.packing), r.lm.device)
        (loss / n_tok).backward()
        loss_sum += loss.detach()
        r.progress.tokens += sum(len(e.input_ids) for e in b)
    torch.nn.utils.clip_grad_norm_(r.params, r.recipe.max_grad_norm)
    r.optimizer.step()
    r.scheduler.step()
    r.optimizer.zero_grad(set_to_none=True)
    return float(loss_sum) / n_tok


def _checkpoint(r: _Run, t0: float) -> None:
    """Evaluate; keep the best weights; save the resumable `last` checkpoint."""
    p = r.progress
    tokenizer = r.lm.tokenizer if r.recipe.method == "full" else None
    metrics = _evaluate(r)
    score = metrics.get("eval_loss", p.last_loss)
    is_best = score < p.best
    if is_best:
        p.best = score
        _save_checkpoint(r.dir, "best", r.model, None, tokenizer)
    p.history.append({"step": p.step, "train_loss": p.last_loss, **metrics})
    _emit(r, {"event": "eval", "step": p.step, "train_loss": p.last_loss, "best": is_best, **metrics})
    _save_checkpoint(r.dir, "last", r.model, {
        "optimizer": r.optimizer.state_dict(), "scheduler": r.scheduler.state_dict(), "step": p.step,
        "best": p.best, "tokens": p.tokens, "elapsed": time.perf_counter() - t0,
        "history": p.history, "torch_rng": torch.get_rng_state()}, tokenizer)


def _fit(r: _Run) -> float:
    """Run the remaining optimizer steps; returns the (resumable) clock origin."""
    p, recipe = r.progress, r.recipe
    if not r.resumed:  # the base model's eval loss: the reference the training must beat
        base_metrics = _evaluate(r)
        if base_metrics:
            p.history.append({"step": 0, "train_loss": None, "base": True, **base_metrics})
            _emit(r, {"event": "eval", "step": 0, "best": False, **base_metrics})
    t0 = time.perf_counter() - p.elapsed
    while p.step < r.total:
        epoch, k = divmod(p.step, r.steps_per_epoch)
        batches = plan_batches(r.prepared.train, recipe.batch_size, recipe.seed, epoch)
        groups = [batches[i * recipe.grad_accum : (i + 1) * recipe.grad_accum] for i in range(r.steps_per_epoch)]
        for group in groups[k:]:
            if not group:
                continue
            p.last_loss = _train_step(r, group)
            p.step += 1
            secs = time.perf_counter() - t0
            _emit(r, {"event": "step", "step": p.step, "total_steps": r.total, "epoch": epoch + 1,
                      "loss": p.last_loss, "lr": r.scheduler.get_last_lr()[0], "tokens": p.tokens, "elapsed_s": secs,
                      "tokens_per_s": p.tokens / max(secs, 1e-9)})
            if p.step % recipe.eval_steps == 0 or p.step == r.total:
                _checkpoint(r, t0)
            if p.step >= r.total:
                break
    return t0


def _finish(r: _Run, t0: float) -> TrainResult:
    p = r.progress
    seconds = time.perf_counter() - t0
    trained = [h for h in p.history if not h.get("base")]
    best_row = min(trained, key=lambda h: h.get("eval_loss", h["train_loss"])) if trained else {}
    first = p.history[0] if p.history and p.history[0].get("base") else {}
    metrics = {
        "train_loss": p.last_loss, "best_step": best_row.get("step"), "eval_loss": best_row.get("eval_loss"),
        "eval_token_acc": best_row.get("eval_token_acc"), "steps": p.step,
        "train_examples": len(r.prepared.train), "eval_examples": len(r.prepared.eval),
        "truncated": len(r.prepared.truncated), "dropped": len(r.prepared.dropped), "tokens": p.tokens,
        "seconds": round(seconds, 1), "tokens_per_s": p.tokens / max(seconds, 1e-9),
        "trainable_params": sum(x.numel() for x in r.params), "base_eval_loss": first.get("eval_loss"),
        "base_eval_token_acc": first.get("eval_token_acc"), "history": p.history,
    }
    r.meta.update(status="done", metrics={k: v for k, v in metrics.items() if k != "history"})
    atomic_write_text(r.dir / "run.json", json.dumps(r.meta, ensure_ascii=False, indent=1))
    _emit(r, {"event": "done", **{k: v for k, v in metrics.items() if k != "history"}})
    return TrainResult(r.dir, r.dir / "best", metrics, r.lm.spec, r.meta["base_fingerprint"], r.meta["data"],
                       r.recipe, r.recipe.method, r.meta.get("tracking", {}))


def train(
    name: str,
    datasets: Sequence[Dataset],
    recipe: Recipe,
    settings: Settings,
    eval_datasets: Sequence[Dataset] | None = None,
    on_event: Callable[[Event], None] | None = None,
    resume: bool | Path = False,
    lm: LoadedModel | None = None,
    report_to: Sequence[str] = (),
) -> TrainResult:
    """Fine-tune (a LoRA adapter, or every weight with method=full); returns where the best checkpoint is.
    `resume`: True finds the run to continue. `report_to`: experiment trackers (tensorboard, swanlab, mlflow)."""
    r = _setup(name, datasets, recipe, settings, eval_datasets, on_event, resume, lm, report_to)
    try:
        t0 = _fit(r)
        return _finish(r, t0)
    finally:
        r.trackers.close()
