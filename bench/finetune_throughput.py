"""Training throughput and peak memory: our trainer vs the seeds' recipe (HF `Trainer`, every example padded to
max_length, labels on every token), same model, same data, same optimizer steps, one run.

    .venv/bin/python bench/finetune_throughput.py --shape tiny                      # CPU, seconds
    .venv/bin/python bench/finetune_throughput.py --model offline --steps 3 --batch-size 2
    python bench/finetune_throughput.py --shape qwen3-8b --steps 16                 # one CUDA GPU
    python bench/finetune_throughput.py --shape qwen3-14b --qlora --which ours      # 4-bit NF4 base, 24 GB cap

`--shape` builds random weights at a real Qwen3 configuration directly on the device (bf16 on CUDA):
throughput does not depend on weight values. Each configuration runs in its own process (peak RSS, or CUDA
peak allocation, is its own). Throughput counts real (non-padding) tokens per second over the optimizer
steps: the work a user wants done. Both sides use LoRA r=16, alpha 32, dropout 0.05 on all linear layers.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from common import ROOT, parser, print_table, run_isolated

DATA = ROOT / "data" / "sft"
QLORA_CAP_GB = 24
# real Qwen3 configurations (hidden, intermediate, layers, heads, kv heads, tied embeddings)
SHAPES: dict[str, tuple[int, int, int, int, int, bool]] = {
    "tiny": (64, 128, 2, 4, 2, True),
    "qwen3-0.6b": (1024, 3072, 28, 16, 8, True),
    "qwen3-1.7b": (2048, 6144, 28, 16, 8, True),
    "qwen3-4b": (2560, 9728, 36, 32, 8, True),
    "qwen3-8b": (4096, 12288, 36, 32, 8, False),
    "qwen3-14b": (5120, 17408, 40, 40, 8, False),
}


def random_qwen3(shape: str, device: str) -> Any:
    """Qwen3 at `shape`'s configuration with random weights, created on `device` (bf16 on CUDA)."""
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    hidden, inter, layers, heads, kv, tied = SHAPES[shape]
    cfg = Qwen3Config(vocab_size=151936, hidden_size=hidden, intermediate_size=inter, num_hidden_layers=layers,
                      num_attention_heads=heads, num_key_value_heads=kv, head_dim=hidden // heads if shape == "tiny"
                      else 128, tie_word_embeddings=tied, max_position_embeddings=40960, rope_theta=1000000.0,
                      eos_token_id=151645, pad_token_id=151643, initializer_range=0.02)
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    torch.manual_seed(0)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # never materialise fp32 copies of 14B weights
    try:
        with torch.device(device):
            model = Qwen3ForCausalLM(cfg)
    finally:
        torch.set_default_dtype(previous)
    return model


def quantize_nf4(model: Any) -> Any:
    """Replace the decoder's linear layers by bitsandbytes 4-bit NF4 ones, one at a time (QLoRA's base)."""
    import bitsandbytes as bnb
    import torch

    for layer in model.model.layers:
        for parent in (layer.self_attn, layer.mlp):
            for name, child in list(parent.named_children()):
                if isinstance(child, torch.nn.Linear):
                    q = bnb.nn.Linear4bit(child.in_features, child.out_features, bias=False,
                                          compute_dtype=torch.bfloat16, quant_type="nf4")
                    q.weight = bnb.nn.Params4bit(child.weight.data, requires_grad=False, quant_type="nf4",
                                                 compress_statistics=True)
                    setattr(parent, name, q.to("cuda"))
                    del child
        torch.cuda.empty_cache()
    return model


def _load(model_name: str, shape: str | None, qlora: bool = False) -> Any:
    from core.models import LoadedModel, load_model, pick_device
    from core.settings import load_settings

    if shape is None:
        return load_model(model_name, load_settings(), for_training=True, quantize_4bit=qlora)
    from transformers import AutoTokenizer

    from core.testing.tiny_qwen3 import qwen3_tokenizer_dir

    tok = AutoTokenizer.from_pretrained(str(qwen3_tokenizer_dir()))
    device, dtype = pick_device()
    model = random_qwen3(shape, device)
    if qlora:
        model = quantize_nf4(model)
    return LoadedModel(tok, model, f"random {shape}", "random", "-", device, str(dtype).removeprefix("torch."))


def _cuda_start() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def _peak_cuda_gb() -> float | None:
    import torch

    return round(torch.cuda.max_memory_allocated() / 2**30, 2) if torch.cuda.is_available() else None


def _conversations(steps: int, batch: int, seed: int) -> list:
    import random

    from finetune.data import load_datasets

    convs = [c for d in load_datasets([DATA]) for c in d.conversations]
    random.Random(seed).shuffle(convs)  # the same examples, in the same order, for both trainers
    need = steps * batch
    return (convs * (need // len(convs) + 1))[:need]


def ours(model_name: str, shape: str | None, steps: int, batch: int, max_length: int, seed: int,
         qlora: bool, checkpointing: bool | None = None) -> dict[str, Any]:
    import tempfile

    import torch

    from core.settings import Settings
    from finetune.data import Dataset
    from finetune.recipe import Recipe
    from finetune.trainer import train

    settings = Settings(home=Path(tempfile.mkdtemp()))  # runs go to a scratch home
    lm = _load(model_name, shape, qlora)
    if qlora:  # prove the figure: the process may not use more than a 24 GB card holds
        total = torch.cuda.get_device_properties(0).total_memory
        torch.cuda.set_per_process_memory_fraction(min(1.0, QLORA_CAP_GB * 2**30 / total))
    ds = Dataset(DATA, _conversations(steps, batch, seed), sha256="bench")
    recipe = Recipe(base=model_name, max_steps=steps, batch_size=batch, grad_accum=1, max_length=max_length,
                    eval_ratio=0.0, eval_steps=10_000, seed=seed, qlora=qlora, dropout=0.05, rank=16, alpha=32,
                    gradient_checkpointing=True if qlora else checkpointing)
    steps_seen: list[dict] = []
    start: dict = {}

    def on_event(e: dict) -> None:
        if e["event"] == "step":
            steps_seen.append(e)
        elif e["event"] == "start":
            start.update(e)

    _cuda_start()
    train("bench", [ds], recipe, settings, lm=lm, on_event=on_event)
    last = steps_seen[-1]  # the optimizer steps, without the final checkpoint's save
    return {"trainer": "ours (packed, label-only loss)" + (" QLoRA nf4" if qlora else ""), "steps": last["step"],
            "tokens": last["tokens"], "padded_tokens": last["tokens"], "seconds": round(last["elapsed_s"], 2),
            "tok_per_s": round(last["tokens"] / last["elapsed_s"], 1), "cuda_peak_gb": _peak_cuda_gb(),
            "checkpointing": start.get("gradient_checkpointing"), "kernels": start.get("kernels")}


def baseline(model_name: str, shape: str | None, steps: int, batch: int, max_length: int, seed: int,
             qlora: bool, checkpointing: bool | None = None) -> dict[str, Any]:
    import tempfile

    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import Trainer, TrainerCallback, TrainingArguments

    from finetune.render import render_text

    lm = _load(model_name, shape, qlora)
    tok = lm.tokenizer
    rows = []
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    for c in _conversations(steps, batch, seed):
        ids = tok(render_text(tok, c), add_special_tokens=False)["input_ids"][:max_length]
        n = len(ids)
        rows.append({"input_ids": ids + [pad] * (max_length - n), "attention_mask": [1] * n + [0] * (max_length - n),
                     "labels": ids + [-100] * (max_length - n)})  # every real token is a target
    real_tokens = sum(sum(r["attention_mask"]) for r in rows)

    class Rows(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return len(rows)

        def __getitem__(self, i: int) -> dict[str, Any]:
            return {k: torch.tensor(v) for k, v in rows[i].items()}

    clock: dict[str, float] = {}

    class Clock(TrainerCallback):  # the optimizer steps only, as for ours
        def on_train_begin(self, *a: Any, **k: Any) -> None:
            clock["t0"] = time.perf_counter()

        def on_step_end(self, *a: Any, **k: Any) -> None:
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            clock["t1"] = time.perf_counter()

    model = get_peft_model(lm.model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear",
                                                task_type="CAUSAL_LM"))
    args = TrainingArguments(output_dir=tempfile.mkdtemp(), per_device_train_batch_size=batch, max_steps=steps,
                             learning_rate=2e-4, lr_scheduler_type="cosine", logging_steps=1, save_strategy="no",
                             report_to=[], seed=seed, bf16=lm.device == "cuda", use_cpu=lm.device == "cpu",
                             dataloader_num_workers=0, disable_tqdm=True)
    trainer = Trainer(model=model, args=args, train_dataset=Rows(), callbacks=[Clock()])
    _cuda_start()
    trainer.train()
    secs = clock["t1"] - clock["t0"]
    return {"trainer": "HF Trainer (pad to max_length, all-token labels)", "steps": steps, "tokens": real_tokens,
            "padded_tokens": len(rows) * max_length, "seconds": round(secs, 2),
            "tok_per_s": round(real_tokens / secs, 1), "cuda_peak_gb": _peak_cuda_gb()}


def _safe(fn: Any, *args: Any) -> dict[str, Any]:
    """One configuration; a failure (out of memory, a missing package) is a row, not the end of the run."""
    try:
        return run_isolated(fn, *args)
    except SystemExit as exc:
        return {"trainer": fn.__name__, "error": str(exc)}


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--model", default="offline", help="'offline', a folder or hub id (ignored with --shape)")
    p.add_argument("--shape", choices=sorted(SHAPES), help="random weights at a real Qwen3 configuration")
    p.add_argument("--steps", type=int, default=16)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--max-length", type=int, default=1024)
    p.add_argument("--seed", type=int, default=3)
    p.add_argument("--qlora", action="store_true", help="4-bit NF4 base (CUDA, bitsandbytes); ours is capped at 24 GB")
    p.add_argument("--which", choices=["both", "ours", "recipe"], default="both")
    p.add_argument("--checkpointing", choices=["auto", "on", "off"], default="auto",
                   help="ours: gradient checkpointing (auto: the trainer's memory-aware default)")
    p.add_argument("--out", type=Path, help="also write the rows as JSON here")
    a = p.parse_args()
    ckpt = {"auto": None, "on": True, "off": False}[a.checkpointing]
    args = (a.model, a.shape, a.steps, a.batch_size, a.max_length, a.seed, a.qlora, ckpt)
    rows = []
    if a.which in ("both", "ours"):
        rows.append(_safe(ours, *args))
    if a.which in ("both", "recipe"):
        rows.append(_safe(baseline, *args))
    what = a.shape or a.model
    print_table(f"LoRA training throughput, {what}{' QLoRA' if a.qlora else ''}, {a.steps} steps x batch "
                f"{a.batch_size}, max_length {a.max_length}", rows,
                ["trainer", "steps", "tokens", "padded_tokens", "seconds", "tok_per_s", "peak_rss_mb", "cuda_peak_gb",
                 "checkpointing", "kernels", "error"])
    summary: dict[str, Any] = {"shape": what, "qlora": a.qlora, "steps": a.steps, "batch": a.batch_size,
                               "max_length": a.max_length, "rows": rows}
    if len(rows) == 2 and all("tok_per_s" in r for r in rows):
        o, b = rows
        summary["throughput_ratio"] = round(o["tok_per_s"] / b["tok_per_s"], 2)
        mem = ("cuda_peak_gb", "GPU") if o.get("cuda_peak_gb") else ("peak_rss_mb", "RSS")
        summary["memory_ratio"] = round(o[mem[0]] / b[mem[0]], 2)
        print(f"\nthroughput ratio ours/recipe: x{summary['throughput_ratio']:.2f}; "
              f"peak {mem[1]} memory ratio: x{summary['memory_ratio']:.2f}")
    if a.out:
        a.out.write_text(json.dumps(summary, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
