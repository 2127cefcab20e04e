"""A tiny randomly initialised Qwen3 on the real Qwen3 tokenizer and chat template (seconds to build)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TOKENIZER_DIR = ROOT / ".cache" / "qwen3-tokenizer"


def qwen3_tokenizer_dir() -> Path:
    if not (TOKENIZER_DIR / "tokenizer.json").exists():  # normally done by scripts/test.sh
        subprocess.run(["bash", str(ROOT / "scripts" / "fetch_qwen3_tokenizer.sh"), str(TOKENIZER_DIR)], check=True)
    return TOKENIZER_DIR


def build_tiny_qwen3(target: Path, seed: int = 0, hidden: int = 64, layers: int = 2) -> Path:
    import torch
    from transformers import AutoTokenizer, Qwen3Config, Qwen3ForCausalLM

    tok_dir = qwen3_tokenizer_dir()
    tokenizer = AutoTokenizer.from_pretrained(str(tok_dir))
    config = Qwen3Config(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=hidden // 4,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        # wide enough logits that a LoRA on the linear layers can move the (frozen, tied) output distribution
        initializer_range=0.2,
        bos_token_id=None,
        eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
        pad_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"),
    )
    torch.manual_seed(seed)
    model = Qwen3ForCausalLM(config)
    model.save_pretrained(str(target))
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tok_dir / f, target / f)
    return target
