"""LoRA training on the tiny real-architecture Qwen3: learning, registry, base checks, resume, merge, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from core import registry
from core.errors import AssistantError
from core.models import load_model
from core.prompts import tool_reply
from core.settings import Settings
from core.testing.tiny_qwen3 import build_tiny_qwen3
from finetune import jobs
from finetune.cli import app
from finetune.data import load_datasets
from finetune.evaluate import generate_reply
from finetune.recipe import Recipe
from finetune.trainer import train

POLICIES = ["POL-2024-0001", "POL-2024-0003", "POL-2024-0005", "POL-2024-0007"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_qwen3(tmp_path_factory.mktemp("tiny") / "qwen3")


@pytest.fixture(scope="module")
def other_tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_qwen3(tmp_path_factory.mktemp("tiny2") / "qwen3", seed=1)


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """A small set the tiny model can learn: policy questions answered by a structured tool choice."""
    f = tmp_path / "tools.jsonl"
    with open(f, "w", encoding="utf-8") as fh:
        for pid in POLICIES * 2:
            fh.write(json.dumps({"messages": [  # the structured tool choice the engine enforces
                {"role": "user", "content": f"查一下保单 {pid}"},
                {"role": "assistant", "content": tool_reply("get_policy_status", {"policy_id": pid})},
            ]}, ensure_ascii=False) + "\n")
    return f


def recipe(tiny: Path, **kw) -> Recipe:
    base = dict(base=str(tiny), rank=8, alpha=16, dropout=0.0, lr=1e-2, max_steps=30, batch_size=4, grad_accum=1,
                eval_ratio=0.0, eval_steps=10, warmup_ratio=0.0, scheduler="constant")
    return Recipe(**{**base, **kw})


def test_training_lowers_loss_and_changes_output(tiny: Path, data: Path, settings: Settings) -> None:
    events: list[dict] = []
    av = jobs.train_adapter("claims", [data], recipe(tiny), settings, on_event=events.append)
    steps = [e for e in events if e["event"] == "step"]
    assert len(steps) == 30 and steps[-1]["loss"] < steps[0]["loss"] * 0.5
    assert all(e["tokens_per_s"] > 0 for e in steps)
    assert av.ref == "claims@v1" and av.active  # the first version becomes active
    meta = av.meta
    assert meta["base"] == str(tiny) and meta["recipe"]["rank"] == 8 and meta["data"][0]["examples"] == 8
    assert len(meta["data"][0]["sha256"]) == 64 and meta["created"] and meta["metrics"]["steps"] == 30

    conv = load_datasets([data])[0].conversations[0]
    base = load_model(str(tiny), settings)
    before = generate_reply(base.model, base.tokenizer, conv, 1, 24)
    lm, _ = jobs.load_with_adapter("claims", settings)  # reloaded from the registry, not the live object
    after = generate_reply(lm.model, lm.tokenizer, conv, 1, 24)
    assert after != before
    assert "get_policy_status" in after


def test_registry_versions_promote_remove_and_base_mismatch(
    tiny: Path, other_tiny: Path, data: Path, settings: Settings
) -> None:
    r = recipe(tiny, max_steps=2)
    v1 = jobs.train_adapter("finance", [data], r, settings)
    v2 = jobs.train_adapter("finance", [data], r, settings)
    hr = jobs.train_adapter("hr", [data], r, settings)
    assert (v1.ref, v1.active, v2.ref, v2.active, hr.ref) == ("finance@v1", True, "finance@v2", False, "hr@v1")
    assert registry.list_names(settings) == ["finance", "hr"]
    assert registry.get(settings, "finance").version == "v1"
    registry.promote(settings, "finance@v2")
    assert registry.get(settings, "finance").version == "v2"
    with pytest.raises(AssistantError, match="active version"):
        registry.remove(settings, "finance@v2")
    assert registry.remove(settings, "finance@v1") == ["finance@v1"]
    assert [v.version for v in registry.list_versions(settings, "finance")] == ["v2"]
    with pytest.raises(AssistantError, match="no version v7"):
        registry.get(settings, "finance@v7")
    with pytest.raises(AssistantError, match="no adapter named 'legal'"):
        registry.get(settings, "legal")
    with pytest.raises(AssistantError, match="invalid adapter name"):
        registry.get(settings, "Bad Name")

    # same architecture, other weights: refused with the way out
    with pytest.raises(AssistantError, match="trained on base model"):
        jobs.load_with_adapter("finance", settings, base=str(other_tiny))
    # two adapters on one base, switched without reloading
    lm, _ = jobs.load_with_adapter("finance", settings)
    model = registry.apply_adapter(lm, registry.get(settings, "hr"))
    assert model is lm.model and model.active_adapter == "hr-v1"
    assert set(model.peft_config) == {"finance-v2", "hr-v1"}


def test_interrupted_run_resumes_to_the_same_weights(tiny: Path, data: Path, settings: Settings) -> None:
    from safetensors.torch import load_file

    datasets = load_datasets([data])
    r = recipe(tiny, max_steps=6, eval_steps=2, batch_size=2, grad_accum=2)
    full = train("full", datasets, r, settings)

    class Crash(Exception):
        pass

    def crash_at_5(ev: dict) -> None:
        if ev["event"] == "step" and ev["step"] == 5:
            raise Crash

    with pytest.raises(Crash):
        train("resumed", datasets, r, settings, on_event=crash_at_5)
    resumed = train("resumed", datasets, r, settings, resume=True)
    starts = [json.loads(line) for line in (resumed.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [e["step"] for e in starts if e["event"] == "start"] == [0, 4]  # continued from the step-4 checkpoint
    a = load_file(str(full.run_dir / "last" / "adapter_model.safetensors"))
    b = load_file(str(resumed.run_dir / "last" / "adapter_model.safetensors"))
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    # a finished run is not resumed again: a new run starts
    again = train("resumed", datasets, recipe(tiny, max_steps=1), settings, resume=True)
    assert again.run_dir != resumed.run_dir


def test_merge_writes_a_standalone_model_with_the_adapters_behaviour(
    tiny: Path, data: Path, settings: Settings, tmp_path: Path
) -> None:
    jobs.train_adapter("claims", [data], recipe(tiny, max_steps=10), settings)
    out = jobs.merge_adapter("claims", tmp_path / "merged", settings)
    assert (out / "config.json").exists() and (out / "tokenizer.json").exists()
    lm, _ = jobs.load_with_adapter("claims", settings)
    merged = load_model(str(out), settings)
    ids = lm.tokenizer("查一下保单 POL-2024-0001", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        assert torch.allclose(lm.model(input_ids=ids).logits, merged.model(input_ids=ids).logits, atol=1e-4)
    with pytest.raises(AssistantError, match="not empty"):
        jobs.merge_adapter("claims", out, settings)


def test_qlora_is_refused_on_cpu(tiny: Path, data: Path, settings: Settings) -> None:
    if torch.cuda.is_available():
        pytest.skip("QLoRA is allowed on a CUDA machine")
    with pytest.raises(AssistantError, match="QLoRA needs a CUDA GPU"):
        jobs.train_adapter("claims", [data], recipe(tiny, qlora=True), settings)


def test_cli_train_list_show_eval_and_clear_errors(tiny: Path, data: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    home = str(tmp_path / "clihome")
    res = runner.invoke(app, ["train", str(data), "--name", "claims", "--base", str(tiny), "--home", home,
                              "--max-steps", "3", "--eval-ratio", "0.25", "--eval-steps", "3", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["adapter"] == "claims@v1"
    res = runner.invoke(app, ["list", "--home", home, "--json"])
    assert [r["adapter"] for r in json.loads(res.stdout)] == ["claims@v1"]
    res = runner.invoke(app, ["show", "claims@v1", "--home", home, "--json"])
    shown = json.loads(res.stdout)
    assert shown["metrics"]["base_eval_loss"] > 0 and shown["metrics"]["eval_loss"] > 0
    res = runner.invoke(app, ["eval", "claims", "--data", str(data), "--home", home, "--limit", "2",
                              "--max-new-tokens", "8", "--json"])
    assert res.exit_code == 0, res.output
    metrics = json.loads(res.stdout)
    assert metrics["n"] == 2 and 0 <= metrics["tool_choice_acc"] <= 1 and 0 <= metrics["valid_rate"] <= 1
    assert metrics["eval_loss"] > 0 and [r["kind"] for r in metrics["rows"]] == ["tool", "tool"]

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"instruction": "q", "output": "a"}\n{"instruction": "q"}\n', encoding="utf-8")
    res = runner.invoke(app, ["train", str(bad), "--name", "claims", "--base", str(tiny), "--home", home])
    assert res.exit_code == 2 and "bad.jsonl:2" in res.output and "Traceback" not in res.output
    res = runner.invoke(app, ["promote", "claims@v9", "--home", home])
    assert res.exit_code == 2 and "no version v9" in res.output
