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
# comparatives (above, below, than) are not stop words: they tell "up to CNY 300,000" from "above CNY 300,000"
_STOP = frozenset("the a an of to in on for and or is are was be by with what which who whom how does do did "
                  "must can this that it its at as from any".split())
ASKS_FIGURE = re.compile(r"几|多少|多久|多长|多大|多高|比例|费率|how (?:many|much|long|old|often)|what (?:percentage|"
                         r"share|rate|amount|fee)|within what|within how", re.I)
_CN = "零〇一二两三四五六七八九十百千万亿"
_DIGIT = re.compile(rf"\d|[{_CN}]+(?:个月|日|天|年|元|倍|周|小时|岁|%)")
# what kind of figure a question asks for: a sentence with a figure of that kind answers it (出险后几天内报案 is
# answered by "十日内通知保险人", not by a sentence with a policy number in it)
_D = rf"[\d{_CN}]+\s*"  # "(24) hours": the figure may close a bracket
_ASKS_KIND = [
    (re.compile(r"几天|几日|多少天|多少日|how many (?:business |working |calendar )?days", re.I),
     re.compile(rf"{_D}(?:个?工作日|日|天)|\d+\)?\s*(?:business |working |calendar )?days?\b", re.I)),
    (re.compile(r"几个月|多少个月|how many months", re.I), re.compile(rf"{_D}个?月|\d+\)?\s*months?\b", re.I)),
    (re.compile(r"几年|多少年|how many years", re.I), re.compile(rf"{_D}年|\d+\)?\s*years?\b", re.I)),
    (re.compile(r"多久|多长时间|how long|within (?:how|what)", re.I),
     re.compile(rf"{_D}(?:个?工作日|日|天|个?月|年|周|小时)|\d+\)?\s*(?:business |working |calendar )?"
                r"(?:days?|months?|years?|hours?|weeks?)\b", re.I)),
    (re.compile(r"比例|百分|几成|percentage|what share|what rate", re.I),
     re.compile(rf"\d\s*%|百分之[{_CN}]+|[{_CN}]成", re.I)),
]


def asked_kind(question: str) -> re.Pattern[str] | None:
    """The pattern of the kind of figure the question asks for (a duration, a share), or None."""
    return next((kind for asks, kind in _ASKS_KIND if asks.search(question)), None)


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


# A tiered rule states a range per clause: "5 万元至 30 万元由…", "50 至 199 人享受九五折", "above CNY 1,000,000".
_AMOUNT = r"(\d[\d,]*(?:\.\d+)?)\s*(万|千|million|thousand)?"
_NUM = re.compile(_AMOUNT, re.I)
_CLAUSE = re.compile(r"[，,；;。:：\n]|(?<=\s)(?:and|or|but)\s", re.I)
_BETWEEN = re.compile(rf"{_AMOUNT}\s*[^\d\s，,；;]{{0,4}}\s*(?:至|到|~|～|-|–|—|to|and)\s*"
                      rf"(?:CNY|RMB|USD|\$|¥)?\s*{_AMOUNT}", re.I)
# words that bound an amount, after it ("30 万元以上") or before it ("above CNY 300,000", "超过 30 万元")
_AFTER = {1: re.compile(r"^[^\d，,；;]{0,4}?(?:以上|以外|起|or more|and above|plus)", re.I),
          -1: re.compile(r"^[^\d，,；;]{0,4}?(?:以下|以内|之内|内|or less|and below|or under)", re.I)}
_BEFORE = {1: re.compile(r"(?:超过|高于|多于|大于|不低于|不少于|above|over|more than|exceeding|exceeds?|greater than|"
                         r"at least)[^\d，,；;]{0,8}$", re.I),
           -1: re.compile(r"(?:不超过|不足|少于|低于|小于|below|under|less than|up to|within|at most|not exceeding)"
                          r"[^\d，,；;]{0,8}$", re.I)}
_SCALE = {"万": 1e4, "千": 1e3, "million": 1e6, "thousand": 1e3}


def _value(digits: str, scale: str | None) -> float:
    return float(digits.replace(",", "")) * _SCALE.get((scale or "").lower(), 1.0)


def _side(text: str, m: re.Match[str]) -> int:
    """+1 when the amount is a lower bound ("30 万元以上", "above X"), -1 an upper bound, 0 neither."""
    after, before = text[m.end():m.end() + 10], text[max(0, m.start() - 20):m.start()]
    for side in (-1, 1):  # "不超过" and "not exceeding" hold "超过" and "exceed": the bounds below go first
        if _BEFORE[side].search(before) or _AFTER[side].search(after):
            return side
    return 0


def clauses(text: str) -> list[str]:
    return [c.strip() for c in _CLAUSE.split(text) if c and c.strip()]


def asked_amount(question: str) -> tuple[float, int] | None:
    """The amount a question is about and its side: +1 "above/超过 X", -1 "below/以下 X", 0 "X" itself.
    None when the question holds no amount, or several (a calculation, not a tier)."""
    found = [m for m in _NUM.finditer(question) if not re.match(r"\d{4}-\d", question[m.start():])]
    if len(found) != 1:
        return None
    m = found[0]
    return _value(m.group(1), m.group(2)), _side(question, m)


def in_tier(clause: str, amount: tuple[float, int]) -> bool:
    """Whether a clause states a range that holds the asked amount (on the asked side of a bound)."""
    value, side = amount
    v = value + max(abs(value) * 1e-6, 1e-9) * side  # "above 300,000" lies just over 300,000
    for m in _BETWEEN.finditer(clause):
        lo, hi = _value(m.group(1), m.group(2) or m.group(4)), _value(m.group(3), m.group(4))
        if lo <= v <= hi:
            return True
    for m in _NUM.finditer(clause):
        bound, bound_side = _value(m.group(1), m.group(2)), _side(clause, m)
        if (bound_side > 0 and v >= bound) or (bound_side < 0 and v <= bound):
            return True
    return False


def scorer(question: str, candidates: Sequence[str],
           has_figure: Callable[[str], bool] | None = None) -> Callable[[int], float]:
    """score(i) of candidates[i] for the question: shared terms, rarer ones counting more, ×1.5 for a sentence
    with a figure when the question asks for one, more for one whose clause states the tier the asked amount is
    in."""
    asked = terms(question)
    wants_figure = bool(ASKS_FIGURE.search(question))
    any_figure = has_figure or (lambda s: bool(_DIGIT.search(s)))
    kind = asked_kind(question)

    def figure(s: str) -> bool:
        return any_figure(s) and (kind is None or bool(kind.search(s)))

    sets = [terms(c) for c in candidates]
    df: dict[str, int] = {}
    for ts in sets:
        for t in ts & asked:
            df[t] = df.get(t, 0) + 1
    n = len(candidates)
    amount = asked_amount(question)

    def score(i: int) -> float:
        hit = sum(1.0 + (n / df[t]) ** 0.5 for t in sets[i] & asked)
        if wants_figure and figure(candidates[i]):
            hit *= 1.5
        elif kind is not None:  # asked for a duration or a share, and it states none: not the answer
            hit *= 0.5
        if amount is not None and any(in_tier(c, amount) for c in clauses(candidates[i])):
            # the clause that states the asked amount's tier answers the question's condition: it counts as if it
            # had every question word the candidates have ("200 至 999 人享受九折" for 200人可以打几折)
            hit += sum(1.0 + (n / df[t]) ** 0.5 for t in df)
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
    while i < j - 1 and score(i) <= 0:  # the run starts as early as it can: what precedes the answer is only prefill
        i += 1
    body = " ".join(sents[i:j])
    return ("… " if i > 0 else "") + body + (" …" if j < len(sents) else "")
