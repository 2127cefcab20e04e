"""Padding-free batches: a micro-batch's examples concatenated into one row, positions restarting per example.

Attention must not cross examples. transformers already honours packed `position_ids` (with no attention
mask and no cache it builds a block-causal mask), so a packed row is correct on any attention backend; the
`packed_sdpa` backend registered here is only faster: it runs SDPA's causal kernel (flash attention on a GPU)
once per example instead of one dense masked attention over the whole row.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from finetune.render import IGNORE, Example

PACKED_SDPA = "packed_sdpa"
SEQ_LENS = "packed_seq_lens"  # forwarded by transformers from the model call down to the attention function
# set while a packed row runs through a `packed_sdpa` model: its dense block mask would go unused
_PACKED_CALL = contextvars.ContextVar("packed_call", default=False)


@contextlib.contextmanager
def packed_call() -> Iterator[None]:
    token = _PACKED_CALL.set(True)
    try:
        yield
    finally:
        _PACKED_CALL.reset(token)


def _packed_sdpa_mask(*args: Any, **kwargs: Any) -> Any:
    from transformers.masking_utils import sdpa_mask

    if _PACKED_CALL.get() and kwargs.get("attention_mask") is None:
        return None  # packed_sdpa_forward keeps attention within each example without a mask
    return sdpa_mask(*args, **kwargs)


def pack(examples: Sequence[Example]) -> dict[str, Any]:
    """One row: ids and labels concatenated, position ids 0..n-1 per example, and the example lengths."""
    ids: list[int] = []
    labels: list[int] = []
    positions: list[int] = []
    for e in examples:
        n = len(e.input_ids)
        ids += e.input_ids
        # the first token is never predicted from the previous example's last one
        labels += [IGNORE, *e.labels[1:]]
        positions += range(n)
    return {
        "input_ids": torch.tensor([ids], dtype=torch.long),
        "labels": torch.tensor([labels], dtype=torch.long),
        "position_ids": torch.tensor([positions], dtype=torch.long),
        SEQ_LENS: tuple(len(e.input_ids) for e in examples),
    }


def _no_cudnn() -> Any:
    """cuDNN attention builds an execution plan per new sequence length, and every packed example has its
    own: measured on an H200 that cost more than the training itself. Flash attention has no such cost."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH])


def packed_sdpa_forward(module: Any, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                        attention_mask: torch.Tensor | None, dropout: float = 0.0, scaling: float | None = None,
                        **kwargs: Any) -> tuple[torch.Tensor, None]:
    """transformers' SDPA attention, run per example (causal, no mask) when the call carries packed lengths."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    lens = kwargs.pop(SEQ_LENS, None)
    if not lens or len(lens) < 2 or query.shape[0] != 1 or query.shape[2] != sum(lens):
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    groups = query.shape[1] // key.shape[1]
    if groups > 1:  # grouped-query heads spelled out: every backend's kernel takes equal head counts
        key, value = key.repeat_interleave(groups, dim=1), value.repeat_interleave(groups, dim=1)
    outs, start = [], 0
    with _no_cudnn() if query.is_cuda else contextlib.nullcontext():
        for n in lens:
            end = start + n
            outs.append(F.scaled_dot_product_attention(query[:, :, start:end], key[:, :, start:end],
                                                       value[:, :, start:end], dropout_p=dropout, scale=scaling,
                                                       is_causal=True))
            start = end
    return torch.cat(outs, dim=2).transpose(1, 2).contiguous(), None


def enable_packed_attention(model: Any) -> bool:
    """Switch an SDPA/eager model to `packed_sdpa` (same results on unpacked input). False: left as it was."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if getattr(base.config, "_attn_implementation", None) not in ("sdpa", "eager", PACKED_SDPA):
        return False  # flash-attention backends handle packed position ids natively
    AttentionInterface.register(PACKED_SDPA, packed_sdpa_forward)
    AttentionMaskInterface.register(PACKED_SDPA, _packed_sdpa_mask)
    try:
        base.set_attn_implementation(PACKED_SDPA)
    except (AttributeError, ValueError, KeyError, ImportError):
        base.config._attn_implementation = PACKED_SDPA
    return base.config._attn_implementation == PACKED_SDPA
