"""The typed training recipe: YAML file + CLI overrides, validated, stored with every adapter version."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from core.errors import AssistantError, validation_problems


class Recipe(BaseModel):
    model_config = ConfigDict(extra="forbid")

    base: str = Field(default="offline", description="model spec: offline alias, local folder, .gguf, or hub id")
    method: Literal["lora", "full"] = Field(default="lora", description="LoRA adapter or full-parameter fine-tuning")
    # LoRA
    rank: int = Field(default=16, ge=1, le=512)
    alpha: int = Field(default=32, ge=1)
    dropout: float = Field(default=0.05, ge=0, lt=1)
    target_modules: list[str] | Literal["all-linear"] = "all-linear"
    qlora: bool = False
    # optimisation
    lr: float = Field(default=2e-4, gt=0)
    scheduler: Literal["cosine", "linear", "constant", "constant_with_warmup"] = "cosine"
    warmup_ratio: float = Field(default=0.05, ge=0, lt=1)
    weight_decay: float = Field(default=0.0, ge=0)
    max_grad_norm: float = Field(default=1.0, gt=0)
    epochs: float = Field(default=2.0, gt=0)
    max_steps: int | None = Field(default=None, ge=1, description="optimizer steps; overrides epochs")
    batch_size: int = Field(default=4, ge=1)
    grad_accum: int = Field(default=2, ge=1)
    max_length: int = Field(default=1024, ge=16)
    gradient_checkpointing: bool | None = Field(
        default=None, description="default: on for models above ~4B parameters when activations would not fit")
    packing: bool = Field(default=True, description="padding-free: a micro-batch's examples in one row")
    optimizer: Literal["adamw", "adamw_8bit"] = Field(default="adamw", description="adamw_8bit: bitsandbytes, CUDA")
    # evaluation and checkpoints
    eval_ratio: float = Field(default=0.1, ge=0, lt=1)
    eval_steps: int = Field(default=20, ge=1, description="optimizer steps between evaluations/checkpoints")
    seed: int = 42
    enable_thinking: bool | None = Field(
        default=None, description="render with thinking on/off; default: on for rows with reasoning traces"
    )

    @model_validator(mode="after")
    def _check(self) -> Recipe:
        if isinstance(self.target_modules, list) and not self.target_modules:
            raise ValueError("target_modules must name at least one module (or be 'all-linear')")
        if self.method == "full" and self.qlora:
            raise ValueError("qlora trains an adapter on a 4-bit base; full fine-tuning needs method: lora or no qlora")
        return self


def load_recipe(path: Path | None, overrides: dict[str, Any]) -> Recipe:
    data: dict[str, Any] = {}
    if path is not None:
        if not path.is_file():
            raise AssistantError(f"recipe not found: {path}")
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise AssistantError(f"{path}: invalid YAML ({exc})") from exc
        if not isinstance(loaded, dict):
            raise AssistantError(f"{path}: a recipe is a mapping of settings (rank: 16, lr: 2e-4, ...)")
        data.update(loaded)
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return Recipe(**data)
    except ValidationError as exc:
        where = f"{path}" if path else "options"
        problems = validation_problems(exc, "recipe")
        raise AssistantError(f"invalid recipe ({where}): {problems}") from None
