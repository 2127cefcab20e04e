"""Training throughput and peak memory: our LoRA trainer vs the seeds' recipe (HF `Trainer`, every example
padded to max_length, labels on every token), same model, same data, same optimizer steps, one run.

    .venv/bin/python bench/finetune_throughput.py --model offline --steps 3
    .venv/bin/python bench/finetune_throughput.py --model qwen3-0.6b-random --steps 3

Each configuration runs in its own process (peak RSS, or CUDA peak allocation, is its own). Throughput
counts real (non-padding) tokens per second: the work a user wants done.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from common import ROOT, parser, print_table, run_isolated

DATA = ROOT / "data" / "sft"


def _load(model_name: str, settings: Any) -> Any:
    import torch

    from core.models import LoadedModel, load_model, pick_device

    if model_name != "qwen3-0.6b-random":
        return load_model(model_name, settings, for_training=True)
    # Qwen3-0.6B's real shapes, random weights: throughput does not depend on weight values
    from transformers import AutoTokenizer, Qwen3Config, Qwen3ForCausalLM

    from core.testing.tiny_qwen3 import qwen3_tokenizer_dir

    tok = AutoTokenizer.from_pretrained(str(qwen3_tokenizer_dir()))
    cfg = Qwen3Config(vocab_size=151936, hidden_size=1024, intermediate_size=3072, num_hidden_layers=28,
                      num_attention_heads=16, num_key_value_heads=8, head_dim=128, tie_word_embeddings=True,
                      max_position_embeddings=40960, rope_theta=1000000.0, eos_token_id=151645, pad_token_id=151643)
    device, dtype = pick_device()
    torch.manual_seed(0)
    model = Qwen3ForCausalLM(cfg).to(device=device, dtype=dtype)
    return LoadedModel(tok, model, model_name, "random", "-", device, str(dtype).removeprefix("torch."))


def _peak_cuda() -> float | None:
    import torch

    return round(torch.cuda.max_memory_allocated() / 2**20, 1) if torch.cuda.is_available() else None


def ours(model_name: str, steps: int, batch: int, max_length: int, seed: int) -> dict[str, Any]:
    import random
    import tempfile

    from core.settings import Settings, load_settings
    from finetune.data import Dataset, load_datasets
    from finetune.recipe import Recipe
    from finetune.trainer import train

    settings = Settings(home=Path(tempfile.mkdtemp()))  # runs go to a scratch home
    lm = _load(model_name, load_settings())  # the model comes from the user's home
    convs = [c for d in load_datasets([DATA]) for c in d.conversations]
    random.Random(seed).shuffle(convs)  # the same examples, in the same order, as the baseline
    ds = Dataset(DATA, convs[: steps * batch], sha256="bench")
    recipe = Recipe(base=model_name, max_steps=steps, batch_size=batch, grad_accum=1, max_length=max_length,
                    eval_ratio=0.0, eval_steps=10_000, seed=seed)
    result = train("bench", [ds], recipe, settings, lm=lm)
    m = result.metrics
    return {"trainer": "ours (dynamic padding, assistant-only loss)", "steps": m["steps"], "tokens": m["tokens"],
            "padded_tokens": m["tokens"], "seconds": m["seconds"], "tok_per_s": round(m["tokens_per_s"], 1),
            "cuda_peak_mb": _peak_cuda()}


def baseline(model_name: str, steps: int, batch: int, max_length: int, seed: int) -> dict[str, Any]:
    import random
    import tempfile

    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import Trainer, TrainingArguments

    from core.settings import load_settings
    from finetune.data import load_datasets
    from finetune.render import render_text

    lm = _load(model_name, load_settings())
    tok = lm.tokenizer
    convs = [c for d in load_datasets([DATA]) for c in d.conversations]
    random.Random(seed).shuffle(convs)
    rows = []
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    for c in convs[: steps * batch]:
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

    model = get_peft_model(lm.model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear",
                                                task_type="CAUSAL_LM"))
    args = TrainingArguments(output_dir=tempfile.mkdtemp(), per_device_train_batch_size=batch, max_steps=steps,
                             learning_rate=2e-4, lr_scheduler_type="cosine", logging_steps=1, save_strategy="no",
                             report_to=[], seed=seed, bf16=lm.device == "cuda", use_cpu=lm.device == "cpu",
                             dataloader_num_workers=0, disable_tqdm=True)
    trainer = Trainer(model=model, args=args, train_dataset=Rows())
    t0 = time.perf_counter()
    trainer.train()
    secs = time.perf_counter() - t0
    return {"trainer": "HF Trainer (pad to max_length, all-token labels)", "steps": steps, "tokens": real_tokens,
            "padded_tokens": len(rows) * max_length, "seconds": round(secs, 1),
            "tok_per_s": round(real_tokens / secs, 1), "cuda_peak_mb": _peak_cuda()}


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--model", default="offline", help="'offline', 'qwen3-0.6b-random', a folder or hub id")
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=2)
    p.add_argument("--max-length", type=int, default=1024)
    p.add_argument("--seed", type=int, default=3)
    a = p.parse_args()
    args = (a.model, a.steps, a.batch_size, a.max_length, a.seed)
    rows = [run_isolated(ours, *args), run_isolated(baseline, *args)]
    print_table(f"LoRA training throughput, model={a.model}, {a.steps} steps x batch {a.batch_size}, "
                f"max_length {a.max_length}", rows,
                ["trainer", "steps", "tokens", "padded_tokens", "seconds", "tok_per_s", "peak_rss_mb", "cuda_peak_mb"])
    o, b = rows
    print(f"\nthroughput ratio ours/baseline: x{o['tok_per_s'] / b['tok_per_s']:.2f}; "
          f"peak RSS ratio: x{o['peak_rss_mb'] / b['peak_rss_mb']:.2f}")


if __name__ == "__main__":
    main()
