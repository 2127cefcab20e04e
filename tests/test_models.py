"""The model runtime on the tiny real-architecture Qwen3: local folders, chat template, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.errors import AssistantError
from core.models import OFFLINE_NAME, load_model
from core.settings import Settings
from core.testing.tiny_qwen3 import build_tiny_qwen3


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_qwen3(tmp_path_factory.mktemp("tiny-qwen3"))


def test_local_qwen3_folder_loads_and_generates(tiny_dir: Path, settings: Settings) -> None:
    import torch

    lm = load_model(str(tiny_dir), settings)
    assert lm.source == "local" and lm.device == "cpu" and lm.dtype == "float32"
    assert type(lm.model).__name__ == "Qwen3ForCausalLM"
    prompt = lm.tokenizer.apply_chat_template(
        [{"role": "user", "content": "保单 ORD123 的状态？"}],
        tokenize=False,
        add_generation_prompt=True,
        enable_thinking=False,
    )
    assert prompt.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    ids = lm.tokenizer(prompt, return_tensors="pt")
    with torch.no_grad():
        out = lm.model.generate(**ids, max_new_tokens=4, do_sample=False)
    assert out.shape[1] == ids["input_ids"].shape[1] + 4


def test_tools_rendered_by_the_qwen3_template(tiny_dir: Path, settings: Settings) -> None:
    lm = load_model(str(tiny_dir), settings)
    tool = {
        "type": "function",
        "function": {
            "name": "get_policy_status",
            "description": "look up a policy",
            "parameters": {"type": "object", "properties": {"policy_id": {"type": "string"}}},
        },
    }
    text = lm.tokenizer.apply_chat_template(
        [{"role": "user", "content": "hi"}], tools=[tool], tokenize=False, add_generation_prompt=True
    )
    assert "<tools>" in text and "get_policy_status" in text and "<tool_call>" in text


def test_unprepared_offline_model_and_bad_paths_are_clear_errors(settings: Settings, tmp_path: Path) -> None:
    with pytest.raises(AssistantError, match="scripts/setup.sh"):
        load_model(OFFLINE_NAME, settings)
    with pytest.raises(AssistantError, match="GGUF file not found"):
        load_model(str(tmp_path / "missing.gguf"), settings)
    (tmp_path / "notamodel").mkdir()
    with pytest.raises(AssistantError, match="no config.json"):
        load_model(str(tmp_path / "notamodel"), settings)


def test_a_model_too_big_for_memory_is_refused_with_numbers(tmp_path: Path, settings: Settings) -> None:
    folder = tmp_path / "huge"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "qwen3", "dtype": "bfloat16"}', encoding="utf-8")
    with open(folder / "model.safetensors", "wb") as fh:  # sparse: 4 TiB on paper, nothing on disk
        fh.truncate(4 * 2**40)
    with pytest.raises(AssistantError, match=r"needs about \d+.\d GiB of cpu memory .* only .* GiB is free"):
        load_model(str(folder), settings)


def test_the_larger_packaged_model_is_named_and_its_setup_flag_given(tmp_path: Path) -> None:
    from core.models import packaged, resolve_gguf

    empty = Settings(home=tmp_path / "home")
    assert packaged("offline").name == OFFLINE_NAME and packaged("offline-1.5b").name == "qwen2.5-coder-1.5b-instruct"
    assert len(packaged("offline-1.5b").sha256) == 64  # pinned: the parts are verified once joined
    with pytest.raises(AssistantError, match=r"Qwen2.5-Coder-1.5B-Instruct .*setup.sh --model-1.5b"):
        resolve_gguf("offline-1.5b", empty)
