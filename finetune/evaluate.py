"""Answer-level evaluation: greedy generation on held-out conversations, scored against the reference turn.

Metrics: token F1 (characters for CJK, words otherwise), exact match, tool-call accuracy (name and
arguments), citation accuracy (same [n] set), refusal accuracy (no-answer references). When the references
come from a small closed set of short labels (a classification set), also accuracy, per-class
precision/recall/F1 and the confusion matrix.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import torch

from core.prompts import NO_ANSWER_EN, NO_ANSWER_ZH, cited_numbers, is_refusal
from core.text import HAN
from core.toolcalls import parse_output
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
    """The turn to evaluate: the first tool-calling assistant turn, else the last assistant turn."""
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


def _norm_args(args: dict) -> dict:
    return {k: str(v).strip().lower() for k, v in args.items()}


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


def answer_metrics(model: Any, tokenizer: Any, convs: Sequence[Conversation], max_new_tokens: int = 96,
                   on_item: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    was_training = model.training
    model.eval()
    rows: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    for n, conv in enumerate(convs, 1):
        i = target_turn(conv)
        ref = conv.messages[i]
        raw = generate_reply(model, tokenizer, conv, i, max_new_tokens)
        out = parse_output(raw)
        row: dict[str, Any] = {"source": conv.source, "output": raw}
        if ref.get("tool_calls"):
            want = ref["tool_calls"][0]["function"]
            got = out.calls[0] if out.calls else None
            row["tool_call"] = bool(got and got.name == want["name"]
                                    and _norm_args(got.arguments) == _norm_args(want["arguments"]))
        else:
            row["reference"], row["answer"] = ref["content"], out.content
            row["f1"] = f1(out.content, ref["content"])
            row["exact"] = out.content.strip() == ref["content"].strip()
            if ref["content"] in (NO_ANSWER_ZH, NO_ANSWER_EN):
                row["refusal"] = is_refusal(out.content)
            elif cited_numbers(ref["content"]):
                row["citation"] = set(cited_numbers(out.content)) == set(cited_numbers(ref["content"]))
        rows.append(row)
        if on_item:
            on_item(n, len(convs))
    if was_training:
        model.train()

    def mean(key: str) -> float | None:
        vals = [float(r[key]) for r in rows if key in r]
        return sum(vals) / len(vals) if vals else None

    metrics: dict[str, Any] = {
        "answer_f1": mean("f1"), "exact_match": mean("exact"), "tool_call_acc": mean("tool_call"),
        "citation_acc": mean("citation"), "refusal_acc": mean("refusal"), "n": len(rows),
        "seconds": round(time.perf_counter() - t0, 1), "rows": rows,
    }
    answered = [r for r in rows if "reference" in r]
    labels = closed_label_set([r["reference"] for r in answered])
    if labels:
        for r in answered:
            r["label"], r["predicted"] = r["reference"].strip(), match_label(r["answer"], labels)
        metrics["classification"] = classification_report([r["label"] for r in answered],
                                                          [r["predicted"] for r in answered], labels)
    return metrics
