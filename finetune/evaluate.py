"""Answer-level evaluation: greedy generation on held-out conversations, scored against the reference turn.

References in the structured form of the answer path (core.prompts: what the engine enforces) are scored on the
parsed reply:

- valid_rate       the reply is the structured form of its reference's kind: an answer (`evidence` ids that name
                   units of the prompt, an `answer` string), a tool choice (`{"tool": ...}`) or a follow-up decision
                   (`{"complete": ...}`);
- evidence_acc     answers: the same set of evidence ids as the reference;
- answer_f1        answers: token F1 of the `answer` field against the reference's (characters for CJK, words
                   otherwise); plain-text references (alpaca, chat) compare the whole reply; exact_match likewise;
- refusal_acc      references with no evidence (the documents do not say): the reply is the refusal too;
- tool_choice_acc  tool-choice references (`{"tool": ...}`, or OpenAI `tool_calls` of older data): the same tool and
                   arguments (`{"tool":"none"}` matches only itself);
- standalone_acc   follow-up decisions: the same `complete` flag (rewrite_f1: the rewritten questions' F1).

When the plain-text references come from a small closed set of short labels (a classification set), also accuracy,
per-class precision/recall/F1 and the confusion matrix.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import torch

from core.prompts import answer_fields, parse_reply, prompt_units
from core.text import HAN
from finetune.data import Conversation
from finetune.render import _messages_for

_TOKEN = re.compile(rf"[{HAN}]|[A-Za-z0-9]+(?:[.,][0-9]+)*")


def tokens(text: str) -> list[str]:
    return [t.lower() for t in _TOKEN.findall(text)]


def f1(pred: str, ref: str) -> float:
    p, r = tokens(pred), tokens(ref)
    if not p or not r:
        return float(p == r)
    common = sum((Counter(p) & Counter(r)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(p), common / len(r)
    return 2 * precision * recall / (precision + recall)


def target_turn(conv: Conversation) -> int:
    """The turn to evaluate: the last assistant turn (in the structured form a call the chain made before the model
    wrote is part of the prompt), or the first one with OpenAI `tool_calls` in older data."""
    idx = [i for i, m in enumerate(conv.messages) if m["role"] == "assistant"]
    calls = [i for i in idx if conv.messages[i].get("tool_calls")]
    return calls[0] if calls else idx[-1]


MAX_LABELS = 30
MAX_LABEL_CHARS = 40
OTHER = "(other)"  # an answer that is none of the labels


def _norm_label(text: str) -> str:
    return text.strip().strip("。.!！ ").casefold()


def closed_label_set(refs: Sequence[str]) -> list[str] | None:
    """The labels, when the references look like classification answers: 2..30 distinct short one-line
    answers, each used twice on average at least; else None."""
    labels = sorted({r.strip() for r in refs})
    if not 2 <= len(labels) <= MAX_LABELS or len(refs) < 2 * len(labels):
        return None
    if any(not x or len(x) > MAX_LABEL_CHARS or "\n" in x for x in labels):
        return None
    return labels


def match_label(output: str, labels: Sequence[str]) -> str:
    """The label an answer gives: the answer itself, else the only label it mentions, else OTHER."""
    norm = _norm_label(output)
    for label in labels:
        if _norm_label(label) == norm:
            return label
    mentioned = [x for x in labels if _norm_label(x) in norm]
    return mentioned[0] if len(mentioned) == 1 else OTHER


def classification_report(refs: Sequence[str], preds: Sequence[str], labels: Sequence[str]) -> dict[str, Any]:
    """Accuracy, per-class precision/recall/F1/support, macro F1 and the confusion matrix
    (rows: reference label, columns: predicted label, OTHER last when some answer was no label)."""
    cols = list(labels) + ([OTHER] if OTHER in preds else [])
    index = {x: i for i, x in enumerate(cols)}
    matrix = [[0] * len(cols) for _ in labels]
    for r, p in zip(refs, preds, strict=True):
        matrix[index[r]][index[p]] += 1
    per_class: dict[str, dict[str, float | int]] = {}
    for i, label in enumerate(labels):
        tp = matrix[i][i]
        predicted = sum(row[i] for row in matrix)
        support = sum(matrix[i])
        precision = tp / predicted if predicted else 0.0
        recall = tp / support if support else 0.0
        f = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[label] = {"precision": precision, "recall": recall, "f1": f, "support": support}
    return {
        "accuracy": sum(matrix[i][i] for i in range(len(labels))) / max(len(refs), 1),
        "macro_f1": sum(c["f1"] for c in per_class.values()) / len(labels),
        "per_class": per_class, "labels": cols, "confusion": matrix,
    }


def _norm_args(args: Any) -> dict:
    return {k: str(v).strip().lower() for k, v in args.items()} if isinstance(args, dict) else {}


_THINK = re.compile(r"^\s*(?:<think>)?.*?</think>\s*", re.S)  # a thinking-mode trace before the reply
_CALL_BLOCK = re.compile(r"^\s*<tool_call>\s*(.*?)\s*</tool_call>\s*$", re.S)  # older data's Qwen call markup


def _structured(text: str) -> dict[str, Any] | None:
    """The reply as a structured object (core.prompts), or None for plain text."""
    if block := _CALL_BLOCK.match(text):
        text = block.group(1)
    if not text.strip().startswith("{"):
        return None
    reply = parse_reply(text)
    return reply.data if reply.error is None else None


def _tool_of(data: dict[str, Any] | None) -> tuple[str | None, Any]:
    """(tool, arguments) of a tool choice; a `<tool_call>` block of older data names it `name`."""
    if not data:
        return None, None
    name = data.get("tool", data.get("name"))
    return (name, data.get("arguments")) if isinstance(name, str) else (None, None)


def reference_kind(ref: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(answer | tool | standalone | text, the reference's structured object) of a reference assistant turn."""
    if ref.get("tool_calls"):
        fn = ref["tool_calls"][0]["function"]
        return "tool", {"tool": fn["name"], "arguments": fn.get("arguments") or {}}
    data = _structured(ref.get("content") or "")
    if data is not None:
        if "evidence" in data and "answer" in data:
            return "answer", data
        if "tool" in data:
            return "tool", data
        if "complete" in data:
            return "standalone", data
    return "text", {}


def score_reply(conv: Conversation, upto: int, raw: str) -> dict[str, Any]:
    """One generated reply (`raw`, for the assistant turn `upto`) scored against the reference turn."""
    ref = conv.messages[upto]
    kind, want = reference_kind(ref)
    reply = _THINK.sub("", raw)  # a thinking-mode trace is not the reply
    row: dict[str, Any] = {"source": conv.source, "output": raw, "kind": kind}
    if kind == "text":
        row["reference"], row["answer"] = ref["content"], reply
        row["f1"] = f1(reply, ref["content"])
        row["exact"] = reply.strip() == ref["content"].strip()
        return row
    got = _structured(reply)
    if kind == "tool":
        name, args = _tool_of(got)
        want_name, want_args = _tool_of(want)
        row["valid"] = name is not None
        row["tool_choice"] = name == want_name and (name == "none" or _norm_args(args) == _norm_args(want_args))
        return row
    if kind == "standalone":
        flag = got.get("complete") if got else None
        row["valid"] = isinstance(flag, bool)
        row["standalone"] = row["valid"] and flag == want["complete"]
        if got and want["complete"] is False and row["standalone"]:
            row["rewrite_f1"] = f1(str(got.get("question", "")), str(want.get("question", "")))
        return row
    units = prompt_units(conv.messages[:upto])
    ref_ids, ref_answer, _ = answer_fields(want, units)
    if got is not None and "evidence" in got and "answer" in got:
        got_ids, answer, problem = answer_fields(got, units)
        row["valid"] = problem is None
    else:
        got_ids, answer, row["valid"] = [], "", False
    row["reference"], row["answer"], row["evidence_ids"] = ref_answer, answer, got_ids
    if not ref_ids:  # the documents do not say
        row["refusal"] = row["valid"] and not got_ids
        return row
    row["evidence"] = row["valid"] and set(got_ids) == set(ref_ids)
    row["f1"] = f1(answer, ref_answer)
    row["exact"] = answer.strip() == ref_answer.strip()
    return row


def generate_reply(model: Any, tokenizer: Any, conv: Conversation, upto: int, max_new_tokens: int) -> str:
    prompt_conv = Conversation(conv.messages[:upto], conv.tools, conv.enable_thinking)
    text = tokenizer.apply_chat_template(
        _messages_for(tokenizer, prompt_conv), tools=conv.tools, tokenize=False, add_generation_prompt=True,
        enable_thinking=conv.enable_thinking,
    )
    ids = tokenizer(text, return_tensors="pt", add_special_tokens=False).to(model.device)
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=max_new_tokens, do_sample=False,
                             pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id)
    return tokenizer.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)


def summarise(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The metrics over scored rows (each a mean over the rows it applies to; None where none does)."""

    def mean(key: str) -> float | None:
        vals = [float(r[key]) for r in rows if key in r]
        return sum(vals) / len(vals) if vals else None

    metrics: dict[str, Any] = {
        "answer_f1": mean("f1"), "exact_match": mean("exact"), "evidence_acc": mean("evidence"),
        "refusal_acc": mean("refusal"), "tool_choice_acc": mean("tool_choice"), "standalone_acc": mean("standalone"),
        "rewrite_f1": mean("rewrite_f1"), "valid_rate": mean("valid"), "n": len(rows),
    }
    answered = [r for r in rows if r.get("kind") == "text"]
    labels = closed_label_set([r["reference"] for r in answered])
    if labels:
        for r in answered:
            r["label"], r["predicted"] = r["reference"].strip(), match_label(r["answer"], labels)
        metrics["classification"] = classification_report([r["label"] for r in answered],
                                                          [r["predicted"] for r in answered], labels)
    return metrics


def answer_metrics(model: Any, tokenizer: Any, convs: Sequence[Conversation], max_new_tokens: int = 96,
                   on_item: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    was_training = model.training
    model.eval()
    rows: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    for n, conv in enumerate(convs, 1):
        i = target_turn(conv)
        rows.append(score_reply(conv, i, generate_reply(model, tokenizer, conv, i, max_new_tokens)))
        if on_item:
            on_item(n, len(convs))
    if was_training:
        model.train()
    return {**summarise(rows), "seconds": round(time.perf_counter() - t0, 1), "rows": rows}
