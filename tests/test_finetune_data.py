"""Training data formats render with the real Qwen3 chat template to the right tokens and loss masks."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from core.errors import AssistantError
from core.prompts import PromptUnit, answer_messages, answer_reply, parse_reply
from core.testing.tiny_qwen3 import qwen3_tokenizer_dir
from finetune.batching import collate, plan_batches
from finetune.data import DataError, load_dataset, load_datasets, to_conversation
from finetune.recipe import load_recipe
from finetune.render import IGNORE, render

TOOL = {"type": "function", "function": {"name": "get_policy_status", "description": "policy",
                                         "parameters": {"type": "object", "properties": {"policy_id": {"type": "string"}}}}}


@pytest.fixture(scope="module")
def tok():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(qwen3_tokenizer_dir()))


def learnt(tok, ex) -> str:
    """The text of the labelled tokens (runs joined with |)."""
    runs, cur = [], []
    for i, lab in zip(ex.input_ids, ex.labels, strict=True):
        if lab != IGNORE:
            cur.append(i)
        elif cur:
            runs.append(tok.decode(cur))
            cur = []
    if cur:
        runs.append(tok.decode(cur))
    return "|".join(runs)


def test_alpaca_with_system_and_history(tok) -> None:
    row = {"system": "你是理赔助理。", "instruction": "解释术语", "input": "免赔额", "output": "自行承担的部分。",
           "history": [["犹豫期多长？", "十五日。"]]}
    ex = render(tok, to_conversation(row, "t:1"), 512)
    text = tok.decode(ex.input_ids)
    assert text.startswith("<|im_start|>system\n你是理赔助理。<|im_end|>")
    assert "<|im_start|>user\n解释术语\n\n免赔额<|im_end|>" in text
    # both assistant turns are learnt, with their end token; the empty think block of the last is prompt
    assert learnt(tok, ex) == "十五日。<|im_end|>|自行承担的部分。<|im_end|>"
    assert ex.labels[-1] == IGNORE  # the newline after <|im_end|>


def test_messages_with_tool_call_and_tool_response(tok) -> None:
    row = {"tools": [TOOL], "messages": [
        {"role": "user", "content": "查一下保单 POL-2024-0001"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"type": "function", "function": {"name": "get_policy_status", "arguments": "{\"policy_id\": \"POL-2024-0001\"}"}}]},
        {"role": "tool", "content": "{\"status\": \"active\"}"},
        {"role": "assistant", "content": "保单有效。"},
    ]}
    ex = render(tok, to_conversation(row, "t:1"), 2048)
    text = tok.decode(ex.input_ids)
    assert "<tools>" in text and "<tool_response>\n{\"status\": \"active\"}\n</tool_response>" in text
    got = learnt(tok, ex)
    assert got == ('<tool_call>\n{"name": "get_policy_status", "arguments": {"policy_id": "POL-2024-0001"}}\n'
                   "</tool_call><|im_end|>|保单有效。<|im_end|>")
    assert "active" not in got  # the tool's response is input, not a target


def test_sharegpt_conversations(tok) -> None:
    row = {"conversations": [{"from": "system", "value": "S"}, {"from": "human", "value": "你好"},
                             {"from": "gpt", "value": "您好，请问有什么可以帮您？"}]}
    ex = render(tok, to_conversation(row, "t:1"), 512)
    assert learnt(tok, ex) == "您好，请问有什么可以帮您？<|im_end|>"


def test_reasoning_rows_train_thinking_mode(tok) -> None:
    row = {"question": "医疗费 850 元能赔多少？", "think": "850-100=750，750×0.9=675。", "answer": "675 元。"}
    conv = to_conversation(row, "t:1")
    assert conv.enable_thinking
    ex = render(tok, conv, 512)
    assert learnt(tok, ex) == "<think>\n850-100=750，750×0.9=675。\n</think>\n\n675 元。<|im_end|>"
    # the same row forced to thinking off (a per-dataset setting) still carries its trace as the answer's reasoning
    off = to_conversation({"question": "Q", "answer": "A"}, "t:2", enable_thinking=False)
    ex_off = render(tok, off, 512)
    assert "<think>\n\n</think>\n\n" in tok.decode(ex_off.input_ids)
    assert learnt(tok, ex_off) == "A<|im_end|>"


def test_truncation_is_reported_not_silent(tok) -> None:
    row = {"instruction": "x " * 300, "output": "y"}
    ex = render(tok, to_conversation(row, "f.jsonl:3"), 64)
    assert ex.truncated and len(ex.input_ids) == 64 and ex.n_labels == 0 and ex.source == "f.jsonl:3"


@pytest.mark.parametrize(("line", "message"), [
    ('{"instruction": "q"}', "unknown format"),
    ('{"instruction": "q", "output": 3}', "field 'output' must be a string"),
    ('{"messages": [{"role": "robot", "content": "x"}]}', "messages[0].role"),
    ('{"messages": [{"role": "user", "content": "x"}]}', "no assistant turn"),
    ('{"messages": [{"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": "{bad"}}]}]}',
     "tool_calls[0].arguments is not valid JSON"),
    ('{"question": "q", "answer": "a"', "invalid JSON"),
    ('[1, 2]', "must be a JSON object"),
])
def test_malformed_rows_name_file_line_and_field(tmp_path: Path, line: str, message: str) -> None:
    f = tmp_path / "train.jsonl"
    f.write_text('{"instruction": "ok", "output": "fine"}\n\n' + line + "\n", encoding="utf-8")
    with pytest.raises(DataError) as info:
        load_dataset(f)
    assert f"{f}:3:" in str(info.value) and message in str(info.value)


@pytest.mark.parametrize(("name", "content", "line", "message"), [
    # a GBK-encoded row after a good one: read as UTF-8 it used to end in a UnicodeDecodeError traceback
    ("gbk.jsonl", b'{"question": "q", "answer": "a"}\n' + '{"question": "保险", "answer": "a"}\n'.encode("gbk"),
     2, "not UTF-8 text"),
    # nesting past the parser's recursion limit used to end in a RecursionError traceback
    ("deep.json", b'[\n{"question": "q", "answer": "a"},\n' + b"[" * 100_000 + b"]" * 100_000 + b"\n]", 3,
     "nested more than 64 levels"),
    ("deep.jsonl", b'{"question": "q", "answer": "a"}\n{"messages": ' + b"[" * 5000 + b"]" * 5000 + b"}\n", 2,
     "nested more than 64 levels"),
    ("deepish.jsonl", b'{"messages": [{"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "f", '
     b'"arguments": ' + b'{"a": ' * 200 + b"1" + b"}" * 200 + b"}}]}]}\n", 1, "nested more than 64 levels"),
])
def test_unreadable_files_are_errors_with_file_and_line(tmp_path: Path, name: str, content: bytes, line: int,
                                                       message: str) -> None:
    from typer.testing import CliRunner

    from finetune.cli import app

    f = tmp_path / name
    f.write_bytes(content)
    with pytest.raises(DataError) as info:
        load_dataset(f)
    assert f"{f}:{line}:" in str(info.value) and message in str(info.value)
    r = CliRunner().invoke(app, ["train", str(f), "--name", "x", "--home", str(tmp_path / "home")])
    assert r.exit_code == 2 and message in r.output and "Traceback" not in r.output
    assert r.exception is None or isinstance(r.exception, SystemExit)


def test_folders_json_lists_and_hashes(tmp_path: Path) -> None:
    (tmp_path / "a.jsonl").write_text(json.dumps({"instruction": "a", "output": "b"}) + "\n", encoding="utf-8")
    (tmp_path / "b.json").write_text(json.dumps([{"question": "q", "answer": "a"}]), encoding="utf-8")
    sets = load_datasets([tmp_path])
    assert [d.path.name for d in sets] == ["a.jsonl", "b.json"]
    assert sets[1].formats == {"reasoning": 1} and len(sets[0].sha256) == 64
    with pytest.raises(AssistantError, match="not found"):
        load_datasets([tmp_path / "missing"])


def test_structured_rows_learn_exactly_the_json_replies(tok) -> None:
    """A chain prompt (rules with the tools, numbered units, a call the chain made and its result) and the model's
    structured replies: the JSON replies are learnt as written, the prompt and the result are not."""
    units = [PromptUnit(1, "出险后十日内报案。", "理赔服务指南.md, 一、报案")]
    call = {"name": "get_policy_status", "arguments": {"policy_id": "POL-2024-0001"}}
    result = [PromptUnit(2, "get_policy_status(POL-2024-0001): status: active", "get_policy_status")]
    msgs = [*answer_messages(units, "保单 POL-2024-0001 有效吗？", [TOOL], [(call, result)]),
            {"role": "assistant", "content": answer_reply([*units, *result], [2], "有效。")}]
    ex = render(tok, to_conversation({"messages": msgs}, "t:1"), 2048)
    assert learnt(tok, ex) == ('{"tool":"get_policy_status","arguments":{"policy_id":"POL-2024-0001"}}<|im_end|>|'
                               '{"evidence":["get_policy_status(POL-2024-0001):"],"answer":"有效。"}<|im_end|>')
    assert "<tools>" not in tok.decode(ex.input_ids)  # the tools are described in the system prompt, not the template's


def test_repo_domain_set_is_the_structured_form(tok) -> None:
    """data/sft: the answer path's structured replies (core.prompts) in OpenAI messages rows, plus plain alpaca
    instructions; every row renders whole within the CPU recipe's length and learns its reply."""
    root = Path(__file__).resolve().parents[1] / "data" / "sft"
    sets = load_datasets([root])
    assert {k for d in sets for k in d.formats} == {"alpaca", "messages"}
    kinds: Counter[str] = Counter()
    for d in sets:
        for conv in d.conversations:
            assert conv.tools is None  # no `tools` key: the system prompt describes the tools
            ex = render(tok, conv, 2048)
            assert not ex.truncated and ex.n_labels > 0, conv.source
            if "alpaca" in d.formats:
                kinds["alpaca"] += 1
                continue
            assert {m["role"] for m in conv.messages} <= {"system", "user", "assistant"}, conv.source
            for m in conv.messages:
                assert not m.get("tool_calls")
                if m["role"] == "assistant":  # written exactly as the engine writes it: compact JSON
                    reply = parse_reply(m["content"])
                    assert reply.error is None and m["content"] == json.dumps(
                        reply.data, ensure_ascii=False, separators=(",", ":")), conv.source
            last = conv.messages[-1]
            assert learnt(tok, ex).endswith(f"{last['content']}<|im_end|>")
            data = parse_reply(last["content"]).data
            kind = ("refusal" if data.get("evidence") == [] else "answer" if "evidence" in data
                    else f"tool:{data['tool']}" if "tool" in data else f"complete:{data['complete']}")
            kinds[kind] += 1
            kinds["thinking"] += bool(last.get("reasoning_content"))
            kinds["after a call"] += len(conv.messages) > 3
    assert sum(kinds.values()) - kinds["thinking"] - kinds["after a call"] >= 250
    assert kinds["answer"] >= 150 and kinds["refusal"] >= 20 and kinds["after a call"] >= 50
    assert kinds["tool:calculator"] >= 3 and kinds["tool:none"] >= 3 and kinds["tool:draft_email"] >= 1
    assert kinds["complete:True"] >= 5 and kinds["complete:False"] >= 5 and kinds["thinking"] >= 5
    assert kinds["alpaca"] >= 20


def test_dynamic_padding_and_length_grouping(tok) -> None:
    convs = [to_conversation({"instruction": "字" * n, "output": "好"}, f"t:{n}") for n in (5, 200, 6, 190, 7, 180, 8, 170)]
    exs = [render(tok, c, 1024) for c in convs]
    batches = plan_batches(exs, 2, seed=1, epoch=0)
    assert sorted(i for b in batches for i in b) == list(range(8))
    for b in batches:  # similar lengths share a batch, so padding is small
        lens = [len(exs[i].input_ids) for i in b]
        assert max(lens) - min(lens) < 30
    batch = collate([exs[0], exs[1]], pad_id=0)
    assert batch["input_ids"].shape[1] == len(exs[1].input_ids)  # padded to the longest, not to max_length
    assert int(batch["attention_mask"][0].sum()) == len(exs[0].input_ids)
    assert (batch["labels"][0, len(exs[0].input_ids):] == IGNORE).all()
    assert plan_batches(exs, 2, seed=1, epoch=0) == batches and plan_batches(exs, 2, seed=1, epoch=1) != batches


def test_recipe_yaml_and_overrides(tmp_path: Path) -> None:
    f = tmp_path / "r.yaml"
    f.write_text("rank: 8\nlr: 1.0e-4\ntarget_modules: [q_proj, v_proj]\n", encoding="utf-8")
    r = load_recipe(f, {"rank": 32, "epochs": None})
    assert (r.rank, r.lr, r.target_modules, r.epochs) == (32, 1e-4, ["q_proj", "v_proj"], 2.0)
    f.write_text("rnak: 8\n", encoding="utf-8")
    with pytest.raises(AssistantError, match="rnak"):
        load_recipe(f, {})
    with pytest.raises(AssistantError, match="batch_size"):
        load_recipe(None, {"batch_size": 0})
