"""A Qwen3/Qwen2 model folder (the tiny test Qwen3) written as an F32 GGUF for llama.cpp, with the `gguf` package.

What llama.cpp's convert_hf_to_gguf.py does for these two architectures, reduced to what the tests need: the
hyper-parameters, the byte-level BPE vocabulary with its token types and merges, the chat template, the weights
under llama.cpp's tensor names. The GGUF is written inside the folder, so `resolve_gguf(folder)` finds it.
"""

from __future__ import annotations

import json
from pathlib import Path

_LAYER = {  # HF name inside model.layers.N -> llama.cpp's name inside blk.N
    "input_layernorm.weight": "attn_norm.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight", "self_attn.q_proj.bias": "attn_q.bias",
    "self_attn.k_proj.weight": "attn_k.weight", "self_attn.k_proj.bias": "attn_k.bias",
    "self_attn.v_proj.weight": "attn_v.weight", "self_attn.v_proj.bias": "attn_v.bias",
    "self_attn.o_proj.weight": "attn_output.weight",
    "self_attn.q_norm.weight": "attn_q_norm.weight", "self_attn.k_norm.weight": "attn_k_norm.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight", "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
}


def hf_to_gguf(folder: Path, name: str = "model-f32.gguf") -> Path:
    """Write `folder/name` (F32) from a Qwen3ForCausalLM or Qwen2ForCausalLM folder; returns its path."""
    import gguf
    import numpy as np
    from safetensors.numpy import load_file
    from transformers import AutoTokenizer

    cfg = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    arch = {"qwen3": "qwen3", "qwen2": "qwen2"}[cfg["model_type"]]
    out = folder / name
    w = gguf.GGUFWriter(str(out), arch)
    w.add_type(gguf.GGUFType.MODEL)
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    w.add_context_length(cfg["max_position_embeddings"])
    w.add_embedding_length(cfg["hidden_size"])
    w.add_block_count(cfg["num_hidden_layers"])
    w.add_feed_forward_length(cfg["intermediate_size"])
    w.add_head_count(cfg["num_attention_heads"])
    w.add_head_count_kv(cfg["num_key_value_heads"])
    head_dim = cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]
    w.add_key_length(head_dim)
    w.add_value_length(head_dim)
    rope = cfg.get("rope_theta") or (cfg.get("rope_parameters") or {}).get("rope_theta", 10000.0)
    w.add_rope_freq_base(float(rope))
    w.add_layer_norm_rms_eps(cfg["rms_norm_eps"])

    tok = AutoTokenizer.from_pretrained(str(folder))
    vocab_size = cfg["vocab_size"]
    reverse = {i: t for t, i in tok.get_vocab().items()}
    added = tok.added_tokens_decoder
    tokens: list[str] = []
    types: list[int] = []
    for i in range(vocab_size):
        if i not in reverse:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
        elif i in added:
            t = reverse[i]
            special = added[i].special or (t.startswith("<|") and t.endswith("|>"))
            tokens.append(t)
            types.append(gguf.TokenType.CONTROL if special else gguf.TokenType.USER_DEFINED)
        else:
            tokens.append(reverse[i])
            types.append(gguf.TokenType.NORMAL)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("qwen2")
    w.add_token_list(tokens)
    w.add_token_types(types)
    merges = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))["model"]["merges"]
    w.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in merges])
    w.add_eos_token_id(tok.convert_tokens_to_ids("<|im_end|>"))
    w.add_pad_token_id(tok.convert_tokens_to_ids("<|endoftext|>"))
    w.add_add_bos_token(False)
    if tok.chat_template:
        w.add_chat_template(tok.chat_template)

    weights: dict[str, np.ndarray] = {}
    for f in sorted(folder.glob("*.safetensors")):
        weights.update(load_file(str(f)))
    for hf_name, data in weights.items():
        data = data.astype(np.float32)
        if hf_name == "model.embed_tokens.weight":
            w.add_tensor("token_embd.weight", data)
        elif hf_name == "model.norm.weight":
            w.add_tensor("output_norm.weight", data)
        elif hf_name == "lm_head.weight":
            if not cfg.get("tie_word_embeddings"):
                w.add_tensor("output.weight", data)
        else:
            parts = hf_name.split(".")  # model.layers.N.<rest>
            w.add_tensor(f"blk.{parts[2]}.{_LAYER['.'.join(parts[3:])]}", data)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return out
