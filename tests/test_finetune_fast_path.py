"""The fast training path computes what the plain one does: packed rows, chunked label loss, lean ops."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from core.models import load_model
from core.settings import Settings
from core.testing.tiny_qwen3 import build_tiny_qwen3
from finetune import loss as loss_mod
from finetune.batching import collate
from finetune.data import load_datasets
from finetune.lean import make_lean
from finetune.loss import label_cross_entropy
from finetune.packing import enable_packed_attention, pack
from finetune.render import render
from finetune.trainer import batch_loss, pad_id_of


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_qwen3(tmp_path_factory.mktemp("tiny") / "qwen3")


@pytest.fixture
def examples(tiny: Path, tmp_path: Path, settings: Settings) -> list:
    """Examples of clearly different lengths, multi-turn included."""
    f = tmp_path / "mixed.jsonl"
    rows = [
        {"messages": [{"role": "user", "content": "你好"}, {"role": "assistant", "content": "你好！"}]},
        {"messages": [{"role": "system", "content": "You answer about insurance policies. " * 6},
                      {"role": "user", "content": "What does POL-2024-0001 cover?"},
                      {"role": "assistant", "content": "It covers fire and flood damage to the insured building."},
                      {"role": "user", "content": "And theft?"},
                      {"role": "assistant", "content": "Theft is excluded unless a rider was bought."}]},
        {"messages": [{"role": "user", "content": "查一下保单 POL-2024-0003"},
                      {"role": "assistant", "content": "", "tool_calls": [
                          {"function": {"name": "get_policy_status", "arguments": {"policy_id": "POL-2024-0003"}}}]}]},
        {"instruction": "Summarise: the claim was filed late.", "output": "Late claim."},
    ]
    f.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    lm = load_model(str(tiny), settings)
    exs = [render(lm.tokenizer, c, 1024) for d in load_datasets([f]) for c in d.conversations]
    assert len({len(e.input_ids) for e in exs}) == len(exs)
    return exs


def _loss_and_grads(model, batch) -> tuple[float, int, dict[str, torch.Tensor]]:
    model.zero_grad(set_to_none=True)
    loss, n, _ = batch_loss(model, batch, "cpu")
    loss.backward()
    grads = {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}
    return float(loss.detach()), n, grads


def _close(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], tol: float) -> None:
    assert a.keys() == b.keys() and a
    for k in a:
        assert torch.allclose(a[k], b[k], rtol=tol, atol=tol * float(a[k].abs().max())), k


def test_packed_row_gives_the_padded_batch_loss_and_gradients(tiny: Path, examples: list, settings: Settings) -> None:
    lm = load_model(str(tiny), settings, for_training=True)
    model = lm.model.train()
    pad = pad_id_of(lm.tokenizer)
    padded, n_padded, g_padded = _loss_and_grads(model, collate(examples, pad))
    one_by_one = sum(_loss_and_grads(model, collate([e], pad))[0] for e in examples)
    # transformers' own masking of packed position ids (a dense block-causal mask)
    packed, n_packed, g_packed = _loss_and_grads(model, pack(examples))
    assert n_packed == n_padded == sum(e.n_labels for e in examples)
    assert packed == pytest.approx(padded, rel=1e-5) and packed == pytest.approx(one_by_one, rel=1e-5)
    _close(g_packed, g_padded, 1e-4)
    # our per-example SDPA backend: same numbers, and unpacked input is unchanged by it
    assert enable_packed_attention(model)
    fast, _, g_fast = _loss_and_grads(model, pack(examples))
    assert fast == pytest.approx(padded, rel=1e-5)
    _close(g_fast, g_padded, 1e-4)
    assert _loss_and_grads(model, collate(examples, pad))[0] == pytest.approx(padded, rel=1e-6)
    # attention really is kept within each example: packing the other way round changes nothing
    assert _loss_and_grads(model, pack(examples[::-1]))[0] == pytest.approx(padded, rel=1e-5)


def test_chunked_label_loss_matches_full_logits(monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    head = torch.nn.Linear(16, 300, bias=False)
    hidden = torch.randn(50, 16, requires_grad=True)
    targets = torch.randint(0, 300, (50,))
    ref = F.cross_entropy(head(hidden), targets, reduction="sum")
    ref.backward()
    ref_h, ref_w = hidden.grad.clone(), head.weight.grad.clone()
    hidden.grad, head.weight.grad = None, None
    monkeypatch.setattr(loss_mod, "CHUNK_ELEMENTS", 300 * 7)  # 7 rows per chunk: 8 chunks, the last one short
    monkeypatch.setattr(loss_mod, "MIN_ROWS", 1)
    loss, correct = label_cross_entropy(hidden, head, targets)
    (loss * 0.5).backward()
    assert float(loss.detach()) == pytest.approx(float(ref.detach()), rel=1e-5)
    assert int(correct) == int((head(hidden).argmax(-1) == targets).sum())
    assert torch.allclose(hidden.grad, ref_h * 0.5, atol=1e-5) and torch.allclose(head.weight.grad, ref_w * 0.5,
                                                                                  atol=1e-5)


def test_lean_norm_and_swiglu_keep_outputs_and_gradients(tiny: Path, examples: list, settings: Settings) -> None:
    lm = load_model(str(tiny), settings, for_training=True)
    plain = lm.model.train()
    for p in plain.parameters():
        p.requires_grad_(True)
    lean = copy.deepcopy(plain)
    assert make_lean(lean, "cpu") == "lean autograd"
    batch = pack(examples)
    a, _, ga = _loss_and_grads(plain, batch)
    b, _, gb = _loss_and_grads(lean, batch)
    assert b == pytest.approx(a, rel=1e-6)
    _close(gb, ga, 1e-4)
