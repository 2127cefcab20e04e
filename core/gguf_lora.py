"""A PEFT LoRA adapter (adapter_config.json + adapter_model.safetensors) written as a llama.cpp LoRA GGUF.

What llama.cpp's convert_lora_to_gguf.py writes, with the `gguf` package alone (that script ships only in the
llama-cpp-python source package): `general.type=adapter`, `adapter.type=lora`, `adapter.lora.alpha`, and per
adapted weight `<gguf name>.lora_a` (r x in) and `.lora_b` (out x r). llama.cpp scales by alpha / r, as PEFT does.
"""

from __future__ import annotations

import json
import math
import os
import re
import uuid
from pathlib import Path

from core.errors import AssistantError

_MODULES = {  # HF module inside model.layers.N -> llama.cpp's tensor inside blk.N
    "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}
_KEY = re.compile(r"(?:base_model\.model\.)?model\.layers\.(\d+)\.(.+)\.lora_([AB])(?:\.[^.]+)?\.weight$")


def peft_to_gguf_lora(adapter_dir: Path, out: Path, arch: str) -> Path:
    """Convert the adapter in `adapter_dir` for a base of llama.cpp architecture `arch`; written atomically."""
    import gguf
    import numpy as np
    from safetensors.numpy import load_file

    cfg = json.loads((adapter_dir / "adapter_config.json").read_text(encoding="utf-8"))
    where = f"{adapter_dir}/adapter_config.json"
    if cfg.get("use_dora"):
        raise AssistantError(f"{where}: DoRA adapters cannot run on llama.cpp; use ASSISTANT_ENGINE=transformers")
    if cfg.get("rank_pattern") or cfg.get("alpha_pattern"):
        raise AssistantError(f"{where}: per-module ranks or alphas cannot run on llama.cpp; use "
                             "ASSISTANT_ENGINE=transformers")
    r, alpha = int(cfg["r"]), float(cfg["lora_alpha"])
    if cfg.get("use_rslora"):  # PEFT scales by alpha/sqrt(r), llama.cpp by alpha/r
        alpha *= math.sqrt(r)
    weights = load_file(str(adapter_dir / "adapter_model.safetensors"))
    pairs: dict[str, dict[str, np.ndarray]] = {}
    for key, data in weights.items():
        m = _KEY.match(key)
        if not m or m.group(2) not in _MODULES:
            raise AssistantError(f"{adapter_dir}: adapter weight '{key}' has no llama.cpp counterpart (only the "
                                 "attention and MLP projections do); use ASSISTANT_ENGINE=transformers")
        name = f"blk.{m.group(1)}.{_MODULES[m.group(2)]}.weight"
        pairs.setdefault(name, {})[m.group(3)] = data.astype(np.float32)
    tmp = out.with_name(f".tmp-{uuid.uuid4().hex[:8]}-{out.name}")
    try:
        w = gguf.GGUFWriter(str(tmp), arch)
        w.add_type(gguf.GGUFType.ADAPTER)
        w.add_string(gguf.Keys.Adapter.TYPE, "lora")
        w.add_float32(gguf.Keys.Adapter.LORA_ALPHA, alpha)
        for name in sorted(pairs):
            ab = pairs[name]
            if set(ab) != {"A", "B"}:
                raise AssistantError(f"{adapter_dir}: {name} has only lora_{''.join(ab)}")
            w.add_tensor(f"{name}.lora_a", ab["A"])  # (r, in)
            w.add_tensor(f"{name}.lora_b", ab["B"])  # (out, r)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out
