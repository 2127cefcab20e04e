"""Full-parameter fine-tuning served from the registry, TensorBoard tracking, classification evaluation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from assistant.backends.runtime import ModelRuntime
from core import registry
from core.errors import AssistantError
from core.prompts import PromptUnit, answer_messages, answer_reply, standalone_messages, tool_reply
from core.settings import Settings
from core.testing.tiny_qwen3 import build_tiny_qwen3
from finetune import jobs
from finetune.cli import app
from finetune.data import Conversation, load_datasets, to_conversation
from finetune.evaluate import (
    OTHER,
    classification_report,
    closed_label_set,
    match_label,
    score_reply,
    summarise,
    target_turn,
)
from finetune.recipe import Recipe

POLICIES = ["POL-2024-0001", "POL-2024-0003", "POL-2024-0005", "POL-2024-0007"]
NEWS = {
    "体育": ["男篮主场险胜卫冕冠军", "马拉松赛道今年改在江边", "女排三比零横扫对手", "新赛季转会窗口今日关闭"],
    "财经": ["央行下调存款准备金率", "季度财报显示营收增长", "股市午后震荡走高", "人民币汇率小幅回升"],
    "科技": ["新款芯片功耗降低三成", "开源大模型发布新版本", "卫星互联网完成组网测试", "手机厂商推出折叠屏"],
}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_qwen3(tmp_path_factory.mktemp("tiny") / "qwen3")


@pytest.fixture
def data(tmp_path: Path) -> Path:
    f = tmp_path / "tools.jsonl"
    with open(f, "w", encoding="utf-8") as fh:
        for pid in POLICIES * 2:
            fh.write(json.dumps({"messages": [  # the structured tool choice the engine enforces
                {"role": "user", "content": f"查一下保单 {pid}"},
                {"role": "assistant", "content": tool_reply("get_policy_status", {"policy_id": pid})},
            ]}, ensure_ascii=False) + "\n")
    return f


@pytest.fixture
def news(tmp_path: Path) -> Path:
    f = tmp_path / "news.jsonl"
    with open(f, "w", encoding="utf-8") as fh:
        for label, titles in NEWS.items():
            for t in titles:
                fh.write(json.dumps({"instruction": f"给新闻标题分类（体育/财经/科技）：{t}", "output": label},
                                    ensure_ascii=False) + "\n")
    return f


def recipe(tiny: Path, **kw) -> Recipe:
    base = dict(base=str(tiny), rank=8, alpha=16, dropout=0.0, lr=1e-2, max_steps=30, batch_size=4, grad_accum=1,
                eval_ratio=0.0, eval_steps=10, warmup_ratio=0.0, scheduler="constant")
    return Recipe(**{**base, **kw})


def test_full_fine_tuning_lowers_loss_and_registers_a_servable_model(
    tiny: Path, data: Path, settings: Settings
) -> None:
    events: list[dict] = []
    av = jobs.train_adapter("claims", [data], recipe(tiny, method="full", lr=2e-3, max_steps=12, eval_steps=6),
                            settings, on_event=events.append)
    steps = [e for e in events if e["event"] == "step"]
    assert steps[-1]["loss"] < steps[0]["loss"] * 0.7
    start = next(e for e in events if e["event"] == "start")
    assert start["method"] == "full" and start["trainable_params"] > 1_000_000  # every weight, not an adapter
    assert av.meta["method"] == "full" and registry.is_full(av)
    assert (av.path / "config.json").exists() and (av.path / "tokenizer.json").exists()
    assert not (av.path / "adapter_config.json").exists()

    # served like an adapter version: the runtime loads it beside the base and answers with it
    rt = ModelRuntime.load(str(tiny), settings)
    key = rt.ensure_adapter("claims")
    prompt = rt.render([{"role": "user", "content": "查一下保单 POL-2024-0001"}], None, False)
    tuned = "".join(rt.stream(prompt, key, max_new_tokens=24))
    base = "".join(rt.stream(prompt, None, max_new_tokens=24))
    assert "get_policy_status" in tuned and tuned != base
    # and through the jobs API (evaluation) too
    lm, got = jobs.load_with_adapter("claims", settings)
    assert got.ref == "claims@v1" and not hasattr(lm.model, "peft_config")
    with pytest.raises(AssistantError, match="standalone model"):
        jobs.merge_adapter("claims", settings.home / "merged", settings)
    # a full version of another base is refused like an adapter would be
    other = build_tiny_qwen3(settings.home / "other", seed=1)
    with pytest.raises(AssistantError, match="trained on base model"):
        jobs.load_with_adapter("claims", settings, base=str(other))


def test_tensorboard_tracking_writes_real_event_files(tiny: Path, data: Path, settings: Settings) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    av = jobs.train_adapter("claims", [data], recipe(tiny, max_steps=6, eval_steps=3, eval_ratio=0.25), settings,
                            report_to=["tensorboard"])
    where = Path(av.meta["tracking"]["tensorboard"])
    assert where.parent == Path(av.meta["run"])  # the version links to its run and the run to its curves
    acc = EventAccumulator(str(where), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    loss = acc.Scalars("train/loss")
    assert [e.step for e in loss] == [1, 2, 3, 4, 5, 6]
    history = json.loads((Path(av.meta["run"]) / "metrics.jsonl").read_text().splitlines()[1])
    assert history["event"] == "eval" and history["step"] == 0  # base model eval first
    evals = acc.Scalars("eval/loss")
    assert [e.step for e in evals] == [0, 3, 6] and evals[0].value == pytest.approx(history["eval_loss"], rel=1e-5)
    text = {t: acc.Tensors(t)[0].tensor_proto.string_val[0].decode() for t in acc.Tags()["tensors"]}
    assert av.meta["data"][0]["sha256"] in text["data/text_summary"]
    assert json.loads(text["recipe/text_summary"].strip("`\n")) == av.meta["recipe"]

    with pytest.raises(AssistantError, match="unknown tracker"):
        jobs.train_adapter("claims", [data], recipe(tiny), settings, report_to=["wandb"])


def test_classification_report_arithmetic() -> None:
    refs = ["a", "a", "a", "b", "b", "c"]
    preds = ["a", "a", "b", "b", OTHER, "a"]
    r = classification_report(refs, preds, ["a", "b", "c"])
    assert r["labels"] == ["a", "b", "c", OTHER]
    assert r["confusion"] == [[2, 1, 0, 0], [0, 1, 0, 1], [1, 0, 0, 0]]
    assert r["accuracy"] == pytest.approx(3 / 6)
    a = r["per_class"]["a"]
    assert (a["precision"], a["recall"], a["support"]) == (pytest.approx(2 / 3), pytest.approx(2 / 3), 3)
    assert r["per_class"]["c"]["f1"] == 0.0
    assert closed_label_set(refs) == ["a", "b", "c"]
    assert closed_label_set(["a long free-text answer", "another one", "a third"]) is None
    assert match_label("科技。", ["体育", "科技"]) == "科技" and match_label("这是体育新闻", ["体育", "科技"]) == "体育"
    assert match_label("不知道", ["体育", "科技"]) == OTHER


def test_structured_replies_are_scored_on_their_fields() -> None:
    """Answers by evidence (the cited units' keys) and the answer field, refusals, tool choices and follow-up
    decisions, each read as the structured reply it must be; a reply that is not that form is invalid and scores
    nothing."""
    units = [PromptUnit(1, "自投保人签收保险单之日起十五日为犹豫期。", "条款.pdf, p.2, 第十二条 犹豫期"),
             PromptUnit(2, "投保人在犹豫期内解除合同的，保险人无息退还全部保险费。", "条款.pdf, p.2, 第十二条 犹豫期")]

    def conv(reply: str, question: str = "犹豫期有多长？") -> Conversation:
        return to_conversation({"messages": [*answer_messages(units, question),
                                             {"role": "assistant", "content": reply}]}, "t:1")

    answer = conv(answer_reply(units, [1], "十五日。"))
    right = score_reply(answer, 2, '{"evidence":["自投保人签收保险单之"],"answer":"十五日。"}')
    assert right["valid"] and right["evidence"] and right["exact"] and right["f1"] == 1.0
    # spaces are fine; the cited unit is not
    wrong = score_reply(answer, 2, '{"evidence": ["投保人在犹豫期内解除"], "answer": "十五天"}')
    assert wrong["valid"] and not wrong["evidence"] and 0 < wrong["f1"] < 1
    unknown = score_reply(answer, 2, '{"evidence":["犹豫期"],"answer":"十五日。"}')  # opens no unit of the prompt
    assert not unknown["valid"] and not unknown["evidence"] and unknown["exact"]  # the answer field is still read
    prose = score_reply(answer, 2, "犹豫期为十五日 [1]。")  # the free text of a model that never learnt the form
    assert not prose["valid"] and not prose["evidence"] and prose["f1"] == 0.0
    thought = score_reply(answer, 2,
                          '<think>\n第十二条。\n</think>\n\n{"evidence":["自投保人签收保险单之"],"answer":"十五日。"}')
    assert thought["valid"] and thought["exact"]

    refusal = conv(answer_reply(units, [], ""), "犹豫期可以延长吗？")
    assert "refusal" not in score_reply(answer, 2, '{"evidence":[],"answer":""}')
    assert score_reply(refusal, 2, '{"evidence":[],"answer":""}')["refusal"]
    assert not score_reply(refusal, 2, '{"evidence":["自投保人签收保险单之"],"answer":"十五日。"}')["refusal"]

    calc = conv(tool_reply("calculator", {"expression": "(2600 - 100) * 0.9"}), "医疗费 2600 元能赔多少？")
    assert score_reply(calc, 2, '{"tool":"calculator","arguments":{"expression":"(2600 - 100) * 0.9"}}')["tool_choice"]
    assert not score_reply(calc, 2, '{"tool":"none"}')["tool_choice"]
    none = conv(tool_reply("none", {}))
    assert score_reply(none, 2, '{"tool":"none"}')["tool_choice"]
    legacy = to_conversation({"messages": [{"role": "user", "content": "查一下保单 POL-2024-0001"}, {
        "role": "assistant", "content": "", "tool_calls": [{"function": {
            "name": "get_policy_status", "arguments": {"policy_id": "POL-2024-0001"}}}]}]}, "t:2")
    block = '<tool_call>\n{"name": "get_policy_status", "arguments": {"policy_id": "pol-2024-0001"}}\n</tool_call>'
    assert score_reply(legacy, 1, block)["tool_choice"]  # older data's OpenAI calls still score

    follow = to_conversation({"messages": [
        *standalone_messages([{"role": "user", "content": "一级伤残的给付比例是多少？"}], "三级呢？"),
        {"role": "assistant", "content": '{"complete":false,"question":"三级伤残的给付比例是多少？"}'}]}, "t:3")
    good = score_reply(follow, 2, '{"complete":false,"question":"三级伤残的给付比例是多少？"}')
    assert good["valid"] and good["standalone"] and good["rewrite_f1"] == 1.0
    assert not score_reply(follow, 2, '{"complete":true}')["standalone"]

    m = summarise([right, wrong, unknown, prose, score_reply(refusal, 2, '{"evidence":[],"answer":""}'),
                   score_reply(none, 2, "no tool needed"), good])
    assert m["n"] == 7 and m["evidence_acc"] == 0.25 and m["refusal_acc"] == 1.0 and m["tool_choice_acc"] == 0.0
    assert m["valid_rate"] == 4 / 7 and m["standalone_acc"] == 1.0 and m["exact_match"] == 0.5


def test_the_domain_sets_own_replies_score_perfectly() -> None:
    """data/sft scored against itself: every reference is read as the structured reply it is, none is invalid."""
    convs = [c for d in load_datasets([Path(__file__).resolve().parents[1] / "data" / "sft"]) for c in d.conversations]
    rows = [score_reply(c, target_turn(c), c.messages[target_turn(c)]["content"]) for c in convs]
    m = summarise(rows)
    assert m["n"] == len(convs) and m["valid_rate"] == 1.0
    for key in ("answer_f1", "exact_match", "evidence_acc", "refusal_acc", "tool_choice_acc", "standalone_acc"):
        assert m[key] == 1.0, key
    assert {r["kind"] for r in rows} == {"answer", "tool", "standalone", "text"}


def test_cli_eval_reports_classification_for_a_labelled_set(tiny: Path, news: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    home = str(tmp_path / "clihome")
    res = runner.invoke(app, ["train", str(news), "--name", "news", "--base", str(tiny), "--home", home,
                              "--max-steps", "20", "--lr", "0.01", "--eval-ratio", "0", "--json"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["eval", "news", "--data", str(news), "--home", home, "--max-new-tokens", "6", "--json"])
    assert res.exit_code == 0, res.output
    m = json.loads(res.stdout)
    c = m["classification"]
    n = sum(len(v) for v in NEWS.values())
    assert c["labels"][:3] == sorted(NEWS) and sum(map(sum, c["confusion"])) == n == m["n"]
    assert [c["per_class"][k]["support"] for k in sorted(NEWS)] == [4, 4, 4]
    assert c["accuracy"] == pytest.approx(sum(c["confusion"][i][i] for i in range(3)) / n)
    assert c["accuracy"] == pytest.approx(sum(r["label"] == r["predicted"] for r in m["rows"]) / n)
    res = runner.invoke(app, ["eval", "news", "--data", str(news), "--home", home, "--max-new-tokens", "6"])
    assert res.exit_code == 0 and "confusion" in res.output and "科技" in res.output
