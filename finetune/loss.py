"""Cross-entropy through the LM head, at label positions only and in chunks.

On a 150k vocabulary the head's logits are the largest activation of a small model: they are computed
only where a label is, a chunk of rows at a time, and the gradient is formed inside the forward pass so
no chunk's logits are kept for the backward one (the fused linear cross-entropy of liger/cut-cross-entropy,
in plain PyTorch, so it runs on a CPU too).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

CHUNK_ELEMENTS = 2**27  # logits per chunk: 0.5 GB in fp32
MIN_ROWS = 64


class _LabelCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,  # type: ignore[override]
                dtype: torch.dtype, need_h: bool, need_w: bool, count: bool) -> tuple[torch.Tensor, torch.Tensor]:
        n = hidden.shape[0]
        w = weight.to(dtype)
        rows = max(MIN_ROWS, CHUNK_ELEMENTS // max(1, w.shape[0]))
        grad_h = torch.empty(hidden.shape, dtype=hidden.dtype, device=hidden.device) if need_h else None
        grad_w = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if need_w else None
        loss = torch.zeros((), dtype=torch.float32, device=hidden.device)
        correct = torch.zeros((), dtype=torch.long, device=hidden.device)
        for s in range(0, n, rows):
            h, t = hidden[s : s + rows].to(dtype), targets[s : s + rows]
            logp = torch.log_softmax((h @ w.T).float(), dim=-1)  # one fused pass over the chunk's logits
            loss -= logp.gather(1, t[:, None]).sum()
            if count:
                correct += (logp.argmax(-1) == t).sum()
            if need_h or need_w:
                probs = logp.exp_()  # softmax in place: d loss / d logits = p - onehot
                probs[torch.arange(len(t), device=t.device), t] -= 1
                g = probs.to(dtype)
                if need_h:
                    grad_h[s : s + rows] = (g @ w).to(hidden.dtype)
                if need_w:
                    grad_w += (g.T @ h).float()
        ctx.save_for_backward(*(x for x in (grad_h, grad_w) if x is not None))
        ctx.has = (need_h, need_w)
        ctx.w_dtype, ctx.h_dtype = weight.dtype, hidden.dtype
        ctx.mark_non_differentiable(correct)
        return loss, correct

    @staticmethod
    def backward(ctx: Any, grad_loss: torch.Tensor, _: Any) -> tuple:  # type: ignore[override]
        saved = list(ctx.saved_tensors)
        need_h, need_w = ctx.has
        gh = (saved.pop(0) * grad_loss).to(ctx.h_dtype) if need_h else None
        gw = (saved.pop(0) * grad_loss).to(ctx.w_dtype) if need_w else None
        return gh, gw, None, None, None, None, None


def label_cross_entropy(hidden: torch.Tensor, head: Any, targets: torch.Tensor, dtype: torch.dtype | None = None,
                        count_correct: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """(summed cross-entropy, number predicted right) of `head(hidden)` against `targets`, rows = label positions.

    `dtype`: the matmul precision (bf16 under CUDA autocast); the softmax is always fp32. Without
    `count_correct` the count is 0 (an argmax over the vocabulary saved).
    """
    weight = getattr(head, "weight", None)
    plain = type(head) is torch.nn.Linear and head.bias is None and isinstance(weight, torch.Tensor)
    if not plain:  # a quantized or adapted head: its own forward, still chunked
        rows = max(MIN_ROWS, CHUNK_ELEMENTS // max(1, getattr(head, "out_features", 1 << 17)))
        loss = torch.zeros((), dtype=torch.float32, device=hidden.device)
        correct = torch.zeros((), dtype=torch.long, device=hidden.device)
        for s in range(0, hidden.shape[0], rows):
            logits = head(hidden[s : s + rows]).float()
            loss = loss + F.cross_entropy(logits, targets[s : s + rows], reduction="sum")
            if count_correct:
                correct += (logits.detach().argmax(-1) == targets[s : s + rows]).sum()
        return loss, correct
    need_h = hidden.requires_grad and torch.is_grad_enabled()
    need_w = weight.requires_grad and torch.is_grad_enabled()
    return _LabelCrossEntropy.apply(hidden, weight, targets, dtype or hidden.dtype, need_h, need_w, count_correct)
