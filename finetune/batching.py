"""Length-grouped batches with dynamic padding: each batch is padded to its own longest example only."""

from __future__ import annotations

import random
from collections.abc import Sequence

import torch

from finetune.render import IGNORE, Example


def plan_batches(examples: Sequence[Example], batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """Shuffle, sort within mega-batches of 32 batches by length, shuffle the batches (seed+epoch fixed)."""
    rng = random.Random(seed * 1_000_003 + epoch)
    order = list(range(len(examples)))
    rng.shuffle(order)
    mega = batch_size * 32
    batches: list[list[int]] = []
    for i in range(0, len(order), mega):
        group = sorted(order[i : i + mega], key=lambda j: len(examples[j].input_ids), reverse=True)
        batches += [group[k : k + batch_size] for k in range(0, len(group), batch_size)]
    rng.shuffle(batches)
    return batches


def collate(examples: Sequence[Example], pad_id: int, pad_to: int | None = None) -> dict[str, torch.Tensor]:
    """Right-pad to the longest example (or to `pad_to`, which the fixed-length baseline uses)."""
    width = pad_to or max(len(e.input_ids) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for i, e in enumerate(examples):
        n = len(e.input_ids)
        ids[i, :n] = torch.tensor(e.input_ids)
        labels[i, :n] = torch.tensor(e.labels)
        mask[i, :n] = 1
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}
