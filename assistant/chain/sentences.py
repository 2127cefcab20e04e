"""Sentences of passage text and how well each answers a question: for quoting the best one (the grounding
guard) and for sending the model only the part of a long passage that matters (the prompt).

Lexical on purpose: Han character pairs and lower-case words weighted by rarity among the candidate sentences,
a figure where the question asks for one. It needs no model, runs in microseconds and is measured by
bench/dev_eval.py through the guard and the prompt."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

SENTENCE_END = re.compile(r"(?<=[。！？；!?])|(?<=[.;])\s+(?=[A-Z(\"“])")
_WORD = re.compile(r"[A-Za-z][A-Za-z'-]+|\d[\d,.]*")
_STOP = frozenset("the a an of to in on for and or is are was be by with what which who whom how does do did "
                  "must can this that it its at as from any than above below".split())
ASKS_FIGURE = re.compile(r"几|多少|多久|多长|多大|多高|比例|费率|how (?:many|much|long|old|often)|what (?:percentage|"
                         r"share|rate|amount|fee)|within what|within how", re.I)
_CN = "零〇一二两三四五六七八九十百千万亿"
_DIGIT = re.compile(rf"\d|[{_CN}]+(?:个月|日|天|年|元|倍|周|小时|岁|%)")


def terms(text: str) -> set[str]:
    """Comparable units of a text: Han character pairs and lower-case words (no stop words)."""
    han = [c for c in text if "\u4e00" <= c <= "\u9fff"]
    pairs = {a + b for a, b in zip(han, han[1:], strict=False)}
    words = {w.lower().rstrip(".,") for w in _WORD.findall(text)}
    return pairs | {w for w in words if w not in _STOP}


def unwrap(text: str) -> str:
    """Passage text as running prose: PDF line wraps removed (no space between Han characters)."""
    text = re.sub(r"(?<=[\u4e00-\u9fff，、：；（）])\n+(?=\S)|(?<=\S)\n+(?=[\u4e00-\u9fff，、。；])", "", text)
    return " ".join(text.split())


def split(text: str) -> list[str]:
    return [x.strip() for x in SENTENCE_END.split(unwrap(text)) if x and x.strip()]


def scorer(question: str, candidates: Sequence[str],
           has_figure: Callable[[str], bool] | None = None) -> Callable[[int], float]:
    """score(i) of candidates[i] for the question: shared terms, rarer ones counting more, ×1.5 for a sentence
    with a figure when the question asks for one."""
    asked = terms(question)
    wants_figure = bool(ASKS_FIGURE.search(question))
    figure = has_figure or (lambda s: bool(_DIGIT.search(s)))
    sets = [terms(c) for c in candidates]
    df: dict[str, int] = {}
    for ts in sets:
        for t in ts & asked:
            df[t] = df.get(t, 0) + 1
    n = len(candidates)

    def score(i: int) -> float:
        hit = sum(1.0 + (n / df[t]) ** 0.5 for t in sets[i] & asked)
        if wants_figure and figure(candidates[i]):
            hit *= 1.5
        return hit

    return score


def focus(text: str, question: str, limit: int) -> str:
    """At most about `limit` characters of a passage: the run of consecutive sentences that best answers the
    question (the whole text when it is short enough)."""
    if len(text) <= limit:
        return text
    sents = split(text)
    if len(sents) <= 1:
        return unwrap(text)[:limit].rstrip() + " …"
    score = scorer(question, sents)
    best, best_score = (0, 1), float("-inf")
    for i in range(len(sents)):
        total, j, size = 0.0, i, 0
        while j < len(sents) and (size == 0 or size + len(sents[j]) <= limit):
            total += score(j)
            size += len(sents[j]) + 1
            j += 1
        if total > best_score:
            best, best_score = (i, j), total
    i, j = best
    body = " ".join(sents[i:j])
    return ("… " if i > 0 else "") + body + (" …" if j < len(sents) else "")
