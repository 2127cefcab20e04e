"""Memory-lean RMSNorm and SwiGLU for training: the same arithmetic, fewer saved activations.

The eager RMSNorm keeps fp32 copies of its input for the backward pass and SwiGLU keeps silu(gate) beside
gate and up; together they are about half a Qwen3 layer's activation memory per token. These autograd
functions keep only the bf16 input (and one fp32 scale per row) and recompute the rest in the backward pass.
`liger-kernel`, when installed on a CUDA machine, is used instead (Triton kernels, also faster).
"""

from __future__ import annotations

import types
from typing import Any

import torch
import torch.nn.functional as F


class _RMSNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:  # type: ignore[override]
        xf = x.float()
        rstd = torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
        ctx.save_for_backward(x, weight, rstd)
        return weight * (xf * rstd).to(x.dtype)

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple:  # type: ignore[override]
        x, weight, rstd = ctx.saved_tensors
        xhat = x.float() * rstd
        gw = None
        if ctx.needs_input_grad[1]:
            gw = (g * xhat.to(x.dtype)).float().reshape(-1, x.shape[-1]).sum(0).to(weight.dtype)
        gy = (g * weight).float()
        gx = rstd * (gy - xhat * (gy * xhat).mean(-1, keepdim=True))
        return gx.to(x.dtype), gw, None


class _SiluMul(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(gate, up)
        return F.silu(gate) * up

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple:  # type: ignore[override]
        gate, up = ctx.saved_tensors
        a = gate.float()
        s = torch.sigmoid(a)
        gf = g.float()
        d_gate = gf * up.float() * (s * (1 + a * (1 - s)))
        d_up = gf * (a * s)
        return d_gate.to(gate.dtype), d_up.to(up.dtype)


def _rms_forward(self: Any, hidden_states: torch.Tensor) -> torch.Tensor:
    return _RMSNorm.apply(hidden_states, self.weight, self.variance_epsilon)


def _mlp_forward(self: Any, x: torch.Tensor) -> torch.Tensor:
    return self.down_proj(_SiluMul.apply(self.gate_proj(x), self.up_proj(x)))


def _liger(base: Any) -> bool:
    try:
        from liger_kernel.transformers import _apply_liger_kernel_to_instance
    except ImportError:
        return False
    try:
        _apply_liger_kernel_to_instance(model=base, rope=True, rms_norm=True, swiglu=True, cross_entropy=False,
                                        fused_linear_cross_entropy=False)
        return True
    except Exception:  # an unsupported architecture or version: the plain-PyTorch path below still applies
        return False


def make_lean(model: Any, device: str) -> str:
    """Patch the model's RMSNorm and SwiGLU modules in place (identical outputs); returns what was used."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if device == "cuda" and _liger(base):
        return "liger-kernel"
    n = 0
    for module in base.modules():
        name = type(module).__name__
        if name.endswith("RMSNorm") and hasattr(module, "variance_epsilon") and isinstance(
                getattr(module, "weight", None), torch.Tensor):
            module.forward = types.MethodType(_rms_forward, module)
            n += 1
        elif name.endswith("MLP") and all(hasattr(module, k) for k in ("gate_proj", "up_proj", "down_proj")) and (
                getattr(getattr(module, "config", None), "hidden_act", None) in ("silu", "swish")
                or isinstance(getattr(module, "act_fn", None), torch.nn.SiLU)):
            module.forward = types.MethodType(_mlp_forward, module)
            n += 1
    return "lean autograd" if n else "none"
