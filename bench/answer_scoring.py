"""Scores the answers of the domain benchmark (`bench/domains/*/questions.jsonl`) from the records a runner wrote.

Standard library only: it imports nothing from the product (assistant, core, ingest, finetune), so a change to the
product cannot change how the product is graded.

    python bench/answer_scoring.py results.jsonl [more.jsonl ...]   # a Markdown table per domain and split
    python bench/answer_scoring.py results.jsonl --wrong              # plus every wrong answer and why
    python bench/answer_scoring.py results.jsonl --json               # the summary as JSON

A record (one per scored question) copies the question row (`id`, `domain`, `split`, `kind`, `question`,
`accept`, `source`, `tool`, and `history` when the runner keeps it) and adds what the product did: `answer`
(the text shown), `outcome` (answer | evidence | refusal | tool_result | error), `model_answer`, `verified`,
`sources` ([{source, page, clause, text}]), `tool_calls` ([{name, arguments, ok, result, error}]),
`latency_s`, `first_token_s`, `error`.

The rules (each a function below):

- fact / followup / calc (`judge`): right when an accepted phrase is in the shown answer (`phrase_found`: both
  sides normalised by `normalise`, numbers compared as values with their units) and, when the question names a
  `source`, one of the cited sources is that file. A refusal or an error is never right.
- lookup: right when a call of the named tool succeeded and an accepted phrase is in the answer.
- refuse: right when the outcome is a refusal that shows no figure of its own (`invented_figures`).
- the text judged (`claim_text`): for the model's own answer, its words (`model_answer`) without the evidence
  quoted under them; for the other outcomes, the shown text.
- model's own: a right fact/followup/calc answer whose outcome is "answer" (the model's words, verified), as
  opposed to "evidence" (the documents' sentences shown because the model's answer failed verification).
- invented figures (`invented_figures`): numbers in an answer (outcome answer or tool_result) found in no cited
  source, no tool result, not in the question or its history and not among the accepted answers. Bare integers
  0-10 are not counted (list markers, "一般" → "1般", "one of"); for calc questions a number that one arithmetic
  operation makes from two allowed numbers, or from working steps the answer showed before it, is not an invention.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

FACT_KINDS = ("fact", "followup", "calc")
KINDS = ("fact", "followup", "calc", "lookup", "refuse")
SHOWN_OUTCOMES = ("answer", "tool_result")  # outcomes whose text is the product's own claim (not quoted evidence)

# --------------------------------------------------------------------------------------------------------------
# Normalisation
# --------------------------------------------------------------------------------------------------------------

CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_CJK_SPACE = re.compile(rf"(?<=[{CJK}])\s+|\s+(?=[{CJK}])")

CN_DIGIT = {"零": 0, "〇": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9}
CN_UNIT = {"十": 10, "百": 100, "千": 1000}
CN_BIG = {"万": 10**4, "亿": 10**8}
_CN_CHARS = "".join(CN_DIGIT) + "".join(CN_UNIT) + "".join(CN_BIG)
_CN_RUN = re.compile(rf"[{_CN_CHARS}]+(?:点[{_CN_CHARS}]+)?")
_CN_PERCENT = re.compile(rf"百分之\s*([{_CN_CHARS}点]+|\d+(?:\.\d+)?)")
_CLOCK_BEFORE = ("上午", "下午", "晚上", "凌晨", "早上", "中午", "傍晚")

EN_SMALL = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen".split())}
EN_TENS = {w: 10 * (i + 2) for i, w in enumerate("twenty thirty forty fifty sixty seventy eighty ninety".split())}
EN_SCALE = {"hundred": 100, "thousand": 10**3, "million": 10**6, "billion": 10**9}
_EN_WORD = "|".join(sorted([*EN_SMALL, *EN_TENS, *EN_SCALE], key=len, reverse=True))
_EN_RUN = re.compile(rf"\b(?:{_EN_WORD})(?:(?:\s+and\s+|[\s-]+)(?:{_EN_WORD}))*\b")

MONTHS = {m: i + 1 for i, m in enumerate(
    "january february march april may june july august september october november december".split())}
MONTHS.update({m[:3]: i for m, i in list(MONTHS.items())})
MONTHS["sept"] = 9
_MON = "|".join(sorted(MONTHS, key=len, reverse=True))


def cn_number(run: str) -> str:
    """A run of Chinese numeral characters as Arabic digits: 二十四 → 24, 一百八十 → 180, 三十万 → 300000,
    一点五 → 1.5, 二〇二五 → 2025; a run without a unit character reads digit by digit (九五 → 95 only before 折/年/号
    or with 〇, otherwise 三四 → 3-4, "three or four"). A leading 百/千/万/亿 is not a number (万一, 千万)."""
    return _cn_run(run, "")


def _cn_int(s: str) -> int:
    """Chinese integer with units (十/百/千/万/亿); 十 at the start means 10 (十五 = 15)."""
    total = wan = section = number = 0
    for ch in s:
        if ch in CN_DIGIT:
            number = CN_DIGIT[ch]
        elif ch in CN_UNIT:
            section += (number if number or ch != "十" else 1) * CN_UNIT[ch]
            number = 0
        elif ch == "万":
            wan = (section + number) * 10**4
            section = number = 0
        elif ch == "亿":
            total = (total + wan + section + number) * 10**8
            wan = section = number = 0
    return total + wan + section + number


def _cn_run(run: str, after: str, before: str = "") -> str:
    int_part, _, frac = run.partition("点")
    prefix = ""
    while int_part and int_part[0] in "百千万亿":
        prefix, int_part = prefix + int_part[0], int_part[1:]
    if not int_part or (frac and not any(c in CN_DIGIT or c in CN_UNIT for c in int_part)):
        return run
    has_unit = any(c in CN_UNIT or c in CN_BIG for c in int_part)
    if frac:
        head = str(_cn_int(int_part)) if has_unit else "".join(str(CN_DIGIT.get(c, "")) for c in int_part)
        clock = any(c in CN_UNIT for c in frac) or after.startswith("分") or before.endswith(_CLOCK_BEFORE)
        if clock:
            minutes = _cn_int(frac) if any(c in CN_UNIT for c in frac) else int(
                "".join(str(CN_DIGIT[c]) for c in frac if c in CN_DIGIT) or 0)
            return f"{prefix}{int(head)}:{minutes:02d}"
        return f"{prefix}{head}.{''.join(str(CN_DIGIT[c]) for c in frac if c in CN_DIGIT)}"
    if has_unit:
        return f"{prefix}{_cn_int(int_part)}"
    digits = [str(CN_DIGIT[c]) for c in int_part]
    if len(digits) == 1:
        return prefix + digits[0]
    if "〇" in int_part or "零" in int_part or after[:1] in ("折", "年", "号"):
        return prefix + "".join(digits)
    return prefix + "-".join(digits)


def _replace_cn_numbers(text: str) -> str:
    def pct(m: re.Match[str]) -> str:
        inner = m.group(1)
        value = inner if inner[0].isdigit() else _cn_run(inner, "")
        return f"{value}%"

    text = _CN_PERCENT.sub(pct, text)
    return _CN_RUN.sub(lambda m: _cn_run(m.group(0), text[m.end():m.end() + 2], text[max(0, m.start() - 2):m.start()]),
                       text)


def _en_value(run: str) -> int:
    total = current = 0
    for word in re.split(r"[\s-]+", run):
        if word == "and" or not word:
            continue
        if word in EN_SMALL:
            current += EN_SMALL[word]
        elif word in EN_TENS:
            current += EN_TENS[word]
        elif word == "hundred":
            current = (current or 1) * 100
        else:
            total += (current or 1) * EN_SCALE[word]
            current = 0
    return total + current


def _dates(text: str) -> str:
    def iso(y: str, mo: int, d: str) -> str:
        return f"{int(y):04d}-{mo:02d}-{int(d):02d}"

    text = re.sub(rf"\b(\d{{1,2}})(?:st|nd|rd|th)?\s+({_MON})\.?,?\s+(\d{{4}})\b",
                  lambda m: iso(m.group(3), MONTHS[m.group(2)], m.group(1)), text)
    text = re.sub(rf"\b({_MON})\.?\s+(\d{{1,2}})(?:st|nd|rd|th)?,?\s+(\d{{4}})\b",
                  lambda m: iso(m.group(3), MONTHS[m.group(1)], m.group(2)), text)
    text = re.sub(r"(?<!\d)(\d{4})\s*年\s*(\d{1,2})\s*月\s*(\d{1,2})\s*[日号]",
                  lambda m: iso(m.group(1), int(m.group(2)), m.group(3)), text)
    return re.sub(r"(?<![\d.])(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})(?![\d])",
                  lambda m: iso(m.group(1), int(m.group(2)), m.group(3)), text)


def _clocks(text: str) -> str:
    text = re.sub(r"(?<![\d.])(\d{1,2})\s*[点时]\s*整", lambda m: f"{int(m.group(1))}:00", text)
    text = re.sub(r"(?<![\d.])(\d{1,2})\s*[点时]\s*(\d{1,2})\s*分(?!钟)",
                  lambda m: f"{int(m.group(1))}:{int(m.group(2)):02d}", text)
    text = re.sub(r"(?<![\d.])(\d{1,2})\s*[点时]\s*(\d{2})(?!\d)", lambda m: f"{int(m.group(1))}:{m.group(2)}", text)

    def pm(m: re.Match[str]) -> str:
        h = int(m.group(2))
        return f"{h + 12 if h < 12 else h}:{m.group(3)}"

    text = re.sub(r"(下午|晚上|傍晚)\s*(\d{1,2}):(\d{2})", pm, text)
    text = re.sub(r"(上午|早上|凌晨|中午)\s*(\d{1,2}):(\d{2})", lambda m: f"{int(m.group(2))}:{m.group(3)}", text)
    text = re.sub(r"(?<![\d.])(\d{1,2}):(\d{2})\s*p\.?m\.?(?![a-z])",
                  lambda m: f"{int(m.group(1)) + 12 if int(m.group(1)) < 12 else int(m.group(1))}:{m.group(2)}", text)
    return re.sub(r"(?<![\d.])(\d{1,2}):(\d{2})\s*a\.?m\.?(?![a-z])", r"\1:\2", text)


def normalise(text: str) -> str:
    """Text as the scorer compares it. Full-width → half-width (NFKC), lower case; thousands separators dropped
    (2,250 → 2250); Chinese numerals → digits (二十四 → 24, 百分之九十 → 90%, 5 万 → 50000, 两点十五分 → 2:15);
    English number words → digits (thirty → 30, one hundred and eighty → 180), "three (3)" → "3"; 1.5 million →
    1500000; percent / per cent → %, percentage points / 个百分点 → pp, 毫升 → ml; dates → YYYY-MM-DD
    (1 March 2025, 2025年3月1日); 14点15分 / 下午2:15 → 14:15; dashes and tildes → "-"; whitespace collapsed and
    removed next to Chinese characters (24 小时 → 24小时)."""
    if not text:
        return ""
    t = unicodedata.normalize("NFKC", str(text)).lower()
    t = re.sub(r"[\u2010-\u2015\u2212~\u301c]", "-", t)
    t = re.sub(r"[\u2018\u2019]", "'", t)
    t = re.sub(r"[\u201c\u201d]", '"', t)
    t = re.sub(r"\s+", " ", t)
    t = _replace_cn_numbers(t)
    for _ in range(3):  # 1,000,000: each pass drops the separators it can see
        t = re.sub(r"(?<=\d),(?=\d{3}(?!\d))", "", t)
    t = re.sub(r"(\d+(?:\.\d+)?)\s*(万|亿)",
               lambda m: _fmt(float(m.group(1)) * CN_BIG[m.group(2)]), t)
    t = re.sub(r"(\d+(?:\.\d+)?)\s*(hundred|thousand|million|billion|bn)\b",  # before the word runs: 1.2 million
               lambda m: _fmt(float(m.group(1)) * {"bn": 10**9, **EN_SCALE}[m.group(2)]), t)
    t = _EN_RUN.sub(lambda m: str(_en_value(m.group(0))), t)
    t = re.sub(r"(?<![\d.])(\d+(?:\.\d+)?)\s*\(\s*\1\s*\)", r"\1", t)  # three (3) → 3 (3) → 3
    t = re.sub(r"(?<=[£$€¥])\s*(\d+(?:\.\d+)?)\s*(k|m)\b",
               lambda m: _fmt(float(m.group(1)) * (10**3 if m.group(2) == "k" else 10**6)), t)
    t = re.sub(r"\s*(?:percentage\s+points?|个?百分点)", " pp", t)
    t = re.sub(r"\s*(?:per\s*cent|percent|pct)\b", "%", t)
    t = re.sub(r"(\d)\s+%", r"\1%", t)
    t = t.replace("毫升", "ml")
    t = _dates(t)
    t = _clocks(t)
    t = _CJK_SPACE.sub("", t)
    return re.sub(r"\s+", " ", t).strip()


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(round(x, 6))


# --------------------------------------------------------------------------------------------------------------
# Quantities: numbers with their units, in normalised text
# --------------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Quantity:
    value: float
    unit: str | None  # %, pp, money, day, workday, week, month, year, hour, minute, ml, 折, clock, date; None: bare
    start: int
    end: int


_UNITS: list[tuple[str, re.Pattern[str]]] = [(u, re.compile(p)) for u, p in [
    ("pp", r"\s?pp\b"),
    ("%", r"\s?%"),
    ("workday", r"\s?(?:个)?(?:(?:business|working)\s(?:days?)\b|工作日)"),
    ("day", r"\s?(?:(?:calendar\s)?days?\b|[日天])"),
    ("week", r"\s?(?:weeks?\b|个?(?:周|星期|礼拜))"),
    ("month", r"\s?(?:months?\b|个月)"),
    ("year", r"\s?(?:years?\b|yrs?\b|周?年)"),
    ("hour", r"\s?(?:hours?\b|hrs?\b|h\b|个?(?:小时|钟头))"),
    ("minute", r"\s?(?:minutes?\b|mins?\b|分钟)"),
    ("ml", r"\s?ml\b"),
    ("折", r"\s?折"),
    ("money", r"\s?(?:元|块|yuan\b|rmb\b|cny\b|pounds?\b|gbp\b|dollars?\b|usd\b|euros?\b|eur\b)"),
]]
_CURRENCY_BEFORE = re.compile(r"(?:[£$€¥]|\b(?:rmb|cny|gbp|usd|eur)\b|人民币)\s?$")
_QUANTITY = re.compile(r"(?<![\d.:])(?:(\d{4})-(\d{2})-(\d{2})(?!\d)|(\d{1,2}):(\d{2})(?![\d:])|(\d+(?:\.\d+)?))")


def quantities(norm: str) -> list[Quantity]:
    """Every number in normalised text with its unit (the unit word after it, or a currency sign before it).
    Dates (YYYY-MM-DD) and clock times (14:15) are single quantities."""
    found: list[Quantity] = []
    for m in _QUANTITY.finditer(norm):
        if m.group(1):
            found.append(Quantity(float(m.group(1) + m.group(2) + m.group(3)), "date", m.start(), m.end()))
            continue
        if m.group(4):
            found.append(Quantity(int(m.group(4)) * 60 + int(m.group(5)), "clock", m.start(), m.end()))
            continue
        start, end, unit = m.start(), m.end(), None
        if m.group(6).endswith(".") or (end < len(norm) and norm[end] == "." and norm[end + 1:end + 2].isdigit()):
            continue
        before = _CURRENCY_BEFORE.search(norm[max(0, start - 6):start])
        if before:
            unit, start = "money", start - (len(before.group(0)))
        rest = norm[end:end + 16]
        for name, pattern in _UNITS:
            um = pattern.match(rest)
            if um:
                if unit is None:
                    unit = name
                end += um.end()
                break
        found.append(Quantity(float(m.group(6)), unit, start, end))
    return found


def _same(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


def _pure_quantity(norm: str) -> Quantity | None:
    """The phrase's one quantity when the phrase is nothing else ("30 days", "cny 2250", "90%", "2250")."""
    qs = quantities(norm)
    if len(qs) != 1:
        return None
    q = qs[0]
    rest = norm[:q.start] + norm[q.end:]
    return q if not re.sub(r"[\s.,;:()\"'-]", "", rest) else None


def _units_agree(accepted: str | None, shown: str | None) -> bool:
    if accepted is None:  # a bare number: any unit but a percentage, a clock time or a date
        return shown not in ("%", "pp", "clock", "date")
    return accepted == shown


def _contains(hay: str, needle: str) -> bool:
    """`needle` in `hay`, not as part of a longer number or word (25 is not in 250, gold is not in golden)."""
    for m in re.finditer(re.escape(needle), hay):
        before = hay[m.start() - 1] if m.start() else ""
        after = hay[m.end()] if m.end() < len(hay) else ""
        after2 = hay[m.end() + 1] if m.end() + 1 < len(hay) else ""
        if needle[0].isascii() and needle[0].isalnum() and before.isascii() and (before.isalnum() or (
                needle[0].isdigit() and before == ".")):
            continue
        if needle[-1].isdigit() and (after.isdigit() or (after == "." and after2.isdigit())):
            continue
        if needle[-1].isascii() and needle[-1].isalpha() and after.isascii() and after.isalpha():
            continue
        return True
    return False


def phrase_found(phrase: str, answer: str) -> bool:
    """Is an accepted phrase in the answer? Both are normalised. A phrase that is a single quantity ("30 days",
    "CNY 2,250", "90%", "2250", "14:15") is found when the answer holds the same value with the same unit (a bare
    number matches any unit except %, clock times and dates; "2250 元" matches "CNY 2,250", "thirty (30) days"
    matches "30 days", "30 business days" does not); any other phrase must occur as such, not inside a longer number
    or word ("Head of Retail Credit", "up to 4", "二级" but not in "十二级")."""
    p = normalise(phrase)
    if not p:
        return False
    a = normalise(answer)
    q = _pure_quantity(p)
    if q is None:
        return _contains(a, p)
    return any(_same(q.value, x.value) and _units_agree(q.unit, x.unit) for x in quantities(a))


def any_accepted(accept: Iterable[str], answer: str) -> str | None:
    """The first accepted phrase found in the answer, or None."""
    for phrase in accept or ():
        if phrase_found(phrase, answer):
            return phrase
    return None


# --------------------------------------------------------------------------------------------------------------
# Invented figures
# --------------------------------------------------------------------------------------------------------------

def figures(text: str) -> list[Quantity]:
    """The figures a text states: every quantity except bare integers 0-10 (list markers, 一般 → 1般, "one of")."""
    return [q for q in quantities(normalise(text))
            if not (q.unit is None and q.value.is_integer() and 0 <= q.value <= 10)]


def _values(texts: Iterable[str]) -> set[float]:
    out: set[float] = set()
    for text in texts:
        for q in quantities(normalise(text)):
            out.add(q.value)
            if q.unit in ("%", "pp"):  # 90% also stands as 0.9
                out.add(q.value / 100)
            if q.unit is None and q.value < 1:  # 0.9 also stands as 90%
                out.add(q.value * 100)
            if q.unit == "折":  # 九折 = 0.9, 九五折 = 0.95 of the price
                out.add(q.value / 10 if q.value < 10 else q.value / 100)
    return out


def _derivable(target: float, values: set[float]) -> bool:
    """Is `target` the result of one operation (+ - × ÷) on two of the values?"""
    keys = {round(v, 6) for v in values}
    for a in values:
        for b in (target - a, a - target, target + a, target * a, target / a if a else None,
                  a / target if target else None):
            if b is not None and round(b, 6) in keys:
                return True
    return False


def _json_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)


def allowed_texts(record: dict[str, Any]) -> list[str]:
    """Where a figure of the answer may come from: the question and its history, the cited sources (text,
    clause, file name), the tool results, and the accepted answers."""
    texts = [record.get("question") or "", *(record.get("history") or []), *(record.get("accept") or [])]
    for s in record.get("sources") or []:
        texts += [str(s.get("text") or ""), str(s.get("clause") or ""), str(s.get("source") or "")]
    for call in record.get("tool_calls") or []:
        texts.append(_json_text(call.get("result")))
    return texts


def invented_figures(record: dict[str, Any], text: str | None = None) -> list[str]:
    """Figures in the answer (or `text`) that appear in none of `allowed_texts`. For calc questions a figure that one
    arithmetic operation makes from two allowed numbers (or from figures the answer already showed, so a chain of
    working steps 12 × 10 = 120, 120 × 120 = 14400 passes) is allowed too. Returned as written in the normalised
    answer."""
    shown = text if text is not None else record.get("answer") or ""
    found = figures(shown)
    if not found:
        return []
    allowed = _values(allowed_texts(record))
    calc = record.get("kind") == "calc"
    norm = normalise(shown)
    invented = []
    for q in found:
        if any(_same(q.value, v) for v in allowed):
            continue
        if calc and _derivable(q.value, allowed):
            allowed.add(q.value)
            continue
        invented.append(norm[q.start:q.end])
    return invented


# --------------------------------------------------------------------------------------------------------------
# The rules
# --------------------------------------------------------------------------------------------------------------

def _file_name(name: Any) -> str:
    s = str(name or "")
    s = PureWindowsPath(s).name if "\\" in s else PurePosixPath(s).name
    return unicodedata.normalize("NFC", s).casefold()


def cites(record: dict[str, Any], source: str | list[str] | None) -> bool:
    """Does a cited source have the required file name (case-insensitive, folders ignored)? None: nothing needed."""
    if not source:
        return True
    wanted = {_file_name(s) for s in ([source] if isinstance(source, str) else source)}
    return any(_file_name(s.get("source")) in wanted for s in record.get("sources") or [])


def tool_succeeded(record: dict[str, Any], tool: str | None) -> bool:
    """Did a call of `tool` succeed (ok)?"""
    return bool(tool) and any(c.get("name") == tool and c.get("ok") for c in record.get("tool_calls") or [])


def claim_text(record: dict[str, Any]) -> str:
    """The text a verdict reads: for the model's own answer (outcome "answer"), its words alone (`model_answer`),
    not the quotes shown under them (a wrong answer above a right quote is wrong); otherwise the shown text."""
    if record.get("outcome") == "answer" and record.get("model_answer"):
        return str(record["model_answer"])
    return str(record.get("answer") or "")


def judge(record: dict[str, Any]) -> dict[str, Any]:
    """The verdict on one record: right or not, why not, and the counts the summary adds up."""
    kind = record.get("kind")
    outcome = record.get("outcome")
    answer = claim_text(record)
    errored = outcome == "error" or bool(record.get("error"))
    why: list[str] = []
    hit = any_accepted(record.get("accept") or [], answer)
    right = False
    if errored:
        why.append(f"error: {record.get('error') or 'outcome error'}")
    elif kind in FACT_KINDS:
        if outcome == "refusal":
            why.append("refused an answerable question")
        if hit is None:
            why.append("no accepted phrase in the answer")
        if not cites(record, record.get("source")):
            cited = sorted({str(s.get("source")) for s in record.get("sources") or []})
            why.append(f"does not cite {record.get('source')} (cites {', '.join(cited) or 'nothing'})")
        right = not why
    elif kind == "lookup":
        if not tool_succeeded(record, record.get("tool")):
            called = [c.get("name") for c in record.get("tool_calls") or []]
            why.append(f"no successful call of {record.get('tool')} (calls: {', '.join(map(str, called)) or 'none'})")
        if hit is None:
            why.append("no accepted phrase in the answer")
        right = not why
    elif kind == "refuse":
        if outcome != "refusal":
            why.append(f"answered (outcome {outcome}) instead of refusing")
        else:
            extra = invented_figures(record)
            if extra:
                why.append(f"refusal shows figures of its own: {', '.join(extra)}")
        right = not why
    else:
        why.append(f"unknown kind {kind!r}")
    invented = invented_figures(record) if outcome in SHOWN_OUTCOMES else []
    calls = record.get("tool_calls") or []
    spurious = [c.get("name") for c in calls] if (record.get("tool") is None and kind not in ("calc", "lookup")) else []
    return {
        "id": record.get("id"), "domain": record.get("domain") or "?", "split": record.get("split") or "?",
        "kind": kind, "outcome": outcome, "right": right, "why": why, "accepted_found": hit,
        "own": right and kind in FACT_KINDS and outcome == "answer",
        "evidence_only": right and kind in FACT_KINDS and outcome == "evidence",
        "wrong_refusal": kind != "refuse" and outcome == "refusal",
        "spurious_calls": spurious, "invented": invented, "checked_figures": outcome in SHOWN_OUTCOMES,
        "error": errored, "latency_s": record.get("latency_s"), "first_token_s": record.get("first_token_s"),
        "setup": record.get("setup") or "", "model_right": model_right(record),
        "verified": record.get("verified"),
    }


def model_right(record: dict[str, Any]) -> bool | None:
    """Whether the model's own answer text (`model_answer`) would be right if shown as the answer, whatever was
    shown (None when the model wrote none, or for look-ups and refusals)."""
    if record.get("kind") not in FACT_KINDS or not record.get("model_answer"):
        return None
    return (any_accepted(record.get("accept") or [], str(record["model_answer"])) is not None
            and cites(record, record.get("source")))


# --------------------------------------------------------------------------------------------------------------
# Summary
# --------------------------------------------------------------------------------------------------------------

def percentile(values: list[float], p: float) -> float | None:
    """The p-th percentile (0-100), linear between the closest ranks (numpy's default); None for no values."""
    xs = sorted(v for v in values if v is not None)
    if not xs:
        return None
    k = (len(xs) - 1) * p / 100
    lo, hi = math.floor(k), math.ceil(k)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def _group(verdicts: list[dict[str, Any]], domain: str, split: str) -> dict[str, Any]:
    n = len(verdicts)
    right = sum(v["right"] for v in verdicts)
    kinds = {k: [sum(v["right"] for v in verdicts if v["kind"] == k), sum(v["kind"] == k for v in verdicts)]
             for k in KINDS}
    fact_right = [v for v in verdicts if v["right"] and v["kind"] in FACT_KINDS]
    own = sum(v["own"] for v in fact_right)
    evidence = sum(v["evidence_only"] for v in fact_right)
    lat = [v["latency_s"] for v in verdicts if isinstance(v["latency_s"], int | float)]
    ftok = [v["first_token_s"] for v in verdicts if isinstance(v["first_token_s"], int | float)]
    return {
        "domain": domain, "split": split, "n": n, "right": right, "right_pct": round(100 * right / n, 1) if n else None,
        "kinds": kinds,
        "fact_right": len(fact_right), "own": own, "evidence_only": evidence,
        "other_right": len(fact_right) - own - evidence,
        "own_pct": round(100 * own / len(fact_right), 1) if fact_right else None,
        "refusals_right": kinds["refuse"][0], "refusals_total": kinds["refuse"][1],
        "wrong_refusals": sum(v["wrong_refusal"] for v in verdicts),
        "spurious_tool_questions": sum(bool(v["spurious_calls"]) for v in verdicts),
        "spurious_tool_calls": sum(len(v["spurious_calls"]) for v in verdicts),
        "invented_answers": sum(bool(v["invented"]) for v in verdicts),
        "checked_answers": sum(v["checked_figures"] for v in verdicts),
        "errors": sum(v["error"] for v in verdicts),
        "latency_p50": percentile(lat, 50), "latency_p95": percentile(lat, 95),
        "first_token_p50": percentile(ftok, 50), "first_token_p95": percentile(ftok, 95),
    }


def score_records(records: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Verdicts for every record and the summary groups: per domain, each split and all splits together, then all
    domains together when there are several."""
    verdicts = [judge(r) for r in records]
    groups = []
    for setup in sorted({v["setup"] for v in verdicts}):  # a model, engine or setting run beside another
        these = [v for v in verdicts if v["setup"] == setup]
        domains = sorted({v["domain"] for v in these})
        for d in domains:
            mine = [v for v in these if v["domain"] == d]
            for s in sorted({v["split"] for v in mine}):
                groups.append(_group([v for v in mine if v["split"] == s], d, s) | {"setup": setup})
            groups.append(_group(mine, d, "all") | {"setup": setup})
        if len(domains) > 1:
            for s in sorted({v["split"] for v in these}):
                groups.append(_group([v for v in these if v["split"] == s], "all", s) | {"setup": setup})
            groups.append(_group(these, "all", "all") | {"setup": setup})
    return {"groups": groups, "verdicts": verdicts}


def verification_matrix(verdicts: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """Per setup, how verification sorted the model's own fact answers: right or wrong (by this scorer), verified
    (shown as the model's words) or failed (replaced by evidence)."""
    out: dict[str, dict[str, int]] = {}
    for v in verdicts:
        if v["model_right"] is None or v["verified"] is None:
            continue
        cell = f"{'right' if v['model_right'] else 'wrong'} & {'verified' if v['verified'] else 'failed'}"
        row = out.setdefault(v["setup"], {})
        row[cell] = row.get(cell, 0) + 1
    return out


def _ratio(right: int, total: int) -> str:
    return f"{right}/{total}" if total else "-"


def _secs(a: float | None, b: float | None) -> str:
    return "-" if a is None else f"{a:.2f} / {b:.2f}"


def format_table(summary: dict[str, Any]) -> str:
    """The summary as a Markdown table, one row per group."""
    head = ["setup", "domain", "split", "n", "right", "fact", "followup", "calc", "lookup", "refuse",
            "own / right facts", "evidence-only", "wrong refusals", "spurious tool calls", "invented figures", "errors",
            "latency p50 / p95 s", "first token p50 / p95 s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for g in summary["groups"]:
        k = g["kinds"]
        own = f"{g['own']}/{g['fact_right']}" + (f" ({g['own_pct']:.0f}%)" if g["own_pct"] is not None else "")
        row = [g.get("setup") or "-", g["domain"], g["split"], str(g["n"]),
               f"{g['right']} ({g['right_pct']:.1f}%)" if g["n"] else "-",
               *(_ratio(*k[x]) for x in ("fact", "followup", "calc", "lookup", "refuse")),
               own, str(g["evidence_only"]), str(g["wrong_refusals"]),
               f"{g['spurious_tool_calls']} in {g['spurious_tool_questions']} q",
               f"{g['invented_answers']}/{g['checked_answers']}", str(g["errors"]),
               _secs(g["latency_p50"], g["latency_p95"]), _secs(g["first_token_p50"], g["first_token_p95"])]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def load(paths: Iterable[str | Path]) -> list[dict[str, Any]]:
    records = []
    for path in paths:
        with open(path, encoding="utf-8") as fh:
            for no, line in enumerate(fh, 1):
                if line.strip():
                    try:
                        records.append(json.loads(line))
                    except json.JSONDecodeError as exc:
                        raise SystemExit(f"{path}:{no}: not JSON ({exc.msg})") from None
    return records


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Score the domain benchmark's answer records.")
    ap.add_argument("results", nargs="+", help="JSONL files of records written by the runner")
    ap.add_argument("--json", action="store_true", help="print the summary (groups and verdicts) as JSON")
    ap.add_argument("--wrong", action="store_true", help="also list every wrong answer with the reason")
    args = ap.parse_args(argv)
    summary = score_records(load(args.results))
    if args.json:
        print(json.dumps(summary, ensure_ascii=False, indent=1))
        return 0
    print(format_table(summary))
    matrix = verification_matrix(summary["verdicts"])
    for setup, cells in matrix.items():
        print(f"verification of the model's own fact answers, {setup or '-'}: "
              + ", ".join(f"{k} {cells.get(k, 0)}" for k in ("right & verified", "right & failed", "wrong & verified",
                                                              "wrong & failed")))
    if args.wrong:
        print()
        for v in summary["verdicts"]:
            if not v["right"]:
                print(f"- {v['id']} ({v['domain']}/{v['split']}, {v['kind']}, {v['outcome']}): {'; '.join(v['why'])}")
            if v["invented"]:
                print(f"- {v['id']}: invented figures {', '.join(v['invented'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
