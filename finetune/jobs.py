"""What the `finetune` commands (and the UI's jobs) do, as library functions: train and register,
evaluate a version, merge a version into a standalone model."""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from core import registry
from core.errors import AssistantError
from core.files import fsync_dir
from core.models import LoadedModel, base_fingerprint, load_model
from core.settings import Settings
from finetune.data import load_datasets
from finetune.evaluate import answer_metrics
from finetune.recipe import Recipe
from finetune.render import render
from finetune.tracking import check_trackers
from finetune.trainer import Event, evaluate_examples, pad_id_of, train


def train_adapter(
    name: str,
    data: list[Path],
    recipe: Recipe,
    settings: Settings,
    eval_data: list[Path] | None = None,
    on_event: Callable[[Event], None] | None = None,
    resume: bool = False,
    activate: bool | None = None,
    lm: LoadedModel | None = None,
    report_to: list[str] | None = None,
) -> registry.AdapterVersion:
    """Train (a LoRA adapter, or the whole model with method=full) and register the best checkpoint."""
    registry.check_name(name)
    check_trackers(report_to or ())
    datasets = load_datasets(data, recipe.enable_thinking)  # bad rows fail here, before the model loads
    eval_sets = load_datasets(eval_data, recipe.enable_thinking) if eval_data else None
    result = train(name, datasets, recipe, settings, eval_sets, on_event, resume, lm, report_to or ())
    meta = {
        "method": result.method,
        "base": result.base_spec,
        "base_fingerprint": result.base_fingerprint,
        "data": result.data,
        "eval_data": [{"path": str(d.path), "sha256": d.sha256} for d in eval_sets or []],
        "recipe": recipe.model_dump(mode="json"),
        "enable_thinking": sorted({c.enable_thinking for d in datasets for c in d.conversations}),
        "metrics": {k: v for k, v in result.metrics.items() if k != "history"},
        "history": result.metrics["history"],
        "run": str(result.run_dir),
        "tracking": result.tracking,
    }
    return registry.register(settings, name, result.adapter_dir, meta, activate)


def load_with_adapter(ref: str | None, settings: Settings, base: str | None = None) -> tuple[LoadedModel, Any]:
    """The base model (the adapter's own unless `base` is given) with the adapter applied (checked); for a
    full fine-tune, its own model (checked against that base)."""
    av = registry.get(settings, ref) if ref else None
    spec = base or (av.meta["base"] if av else "offline")
    lm = load_model(spec, settings)
    if av is None:
        return lm, None
    if registry.is_full(av):
        return registry.load_full(lm, av, settings), av
    lm.model = registry.apply_adapter(lm, av)
    return lm, av


def evaluate_adapter(ref: str, data: list[Path], settings: Settings, base: str | None = None,
                     generate: bool = True, limit: int | None = None, max_new_tokens: int = 96,
                     on_item: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    lm, av = load_with_adapter(ref, settings, base)
    recipe = Recipe(**av.meta["recipe"]) if av else Recipe()
    convs = [c for d in load_datasets(data, recipe.enable_thinking) for c in d.conversations][:limit]
    examples = [e for e in (render(lm.tokenizer, c, recipe.max_length) for c in convs) if e.n_labels]
    metrics: dict[str, Any] = evaluate_examples(lm.model, examples, recipe.batch_size, pad_id_of(lm.tokenizer),
                                                lm.device)
    if generate:
        metrics.update(answer_metrics(lm.model, lm.tokenizer, convs, max_new_tokens, on_item))
    if av:
        registry.update_metrics(settings, av.ref, {
            "last_eval": {k: v for k, v in metrics.items() if k != "rows"},
            "last_eval_data": [str(p) for p in data],
        })
    return metrics


def merge_adapter(ref: str, output: Path, settings: Settings) -> Path:
    """Fold the adapter into the base weights: a standalone model folder for vLLM, llama.cpp and the like."""
    if output.exists() and any(output.iterdir()):
        raise AssistantError(f"{output} exists and is not empty; choose a new folder")
    lm, av = load_with_adapter(ref, settings)
    if registry.is_full(av):
        raise AssistantError(f"{av.ref} is a full fine-tune: it already is a standalone model folder ({av.path})")
    merged = lm.model.merge_and_unload()
    tmp = output.with_name(f".{output.name}-{uuid.uuid4().hex[:6]}")
    merged.save_pretrained(str(tmp))
    lm.tokenizer.save_pretrained(str(tmp))
    (tmp / "MERGED_FROM.json").write_text(json.dumps({
        "adapter": av.ref, "base": av.meta["base"], "base_fingerprint": av.meta["base_fingerprint"],
        "merged_fingerprint": base_fingerprint(merged)}, indent=1), encoding="utf-8")
    if output.exists():
        output.rmdir()
    output.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(tmp), str(output))
    fsync_dir(output.parent)
    return output
