"""Figures in text, normalised so that the same quantity written two ways compares equal: Arabic digits with
thousands separators, Chinese numerals (十日, 三十万, 百分之九十, 二〇二四年), English number words (thirty,
two hundred), scale words (万, 亿, thousand, million, billion, k), percentages and fractions (90% = 0.9, 九折 = 0.9),
dates (2024-04-01 = 2024年4月1日 = 1 April 2024) and record identifiers (POL-2024-0001, LAB-20261101-007).

A figure is compared by value, never by spelling: `same(a, b)` holds when a value of one equals a value of the
other (a percentage also as its fraction). Ordinals that name a clause (第九条, Article 5) are references, not
figures. Used by verification (an answer's figures must stand in its evidence, a tool result or the question)
and by the conditions check (a quantity the question states against the range a clause applies to).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_CN_DIGIT = {c: i for i, c in enumerate("零一二三四五六七八九")} | {"〇": 0, "两": 2, "壹": 1, "贰": 2, "叁": 3,
                                                                    "肆": 4, "伍": 5, "陆": 6, "柒": 7, "捌": 8,
                                                                    "玖": 9}
_CN_UNIT = {"十": 10, "拾": 10, "百": 100, "佰": 100, "千": 1000, "仟": 1000}
_CN_BIG = {"万": 10_000, "亿": 100_000_000}
CN_NUMERALS = "".join(_CN_DIGIT) + "".join(_CN_UNIT) + "".join(_CN_BIG)
_SCALE = {"万": 1e4, "亿": 1e8, "千": 1e3, "k": 1e3, "thousand": 1e3, "million": 1e6, "m": 1e6, "mn": 1e6,
          "billion": 1e9, "bn": 1e9, "百万": 1e6, "千万": 1e7}
_EN_SMALL = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen".split())}
_EN_TENS = {w: 10 * i for i, w in enumerate("_ _ twenty thirty forty fifty sixty seventy eighty ninety".split())
            if i > 1}
_EN_BIG = {"hundred": 100, "thousand": 1000, "million": 1_000_000, "billion": 1_000_000_000}
_MONTHS = {m: i for i, m in enumerate("january february march april may june july august september october "
                                      "november december".split(), 1)}
_MONTHS |= {m[:3]: i for m, i in list(_MONTHS.items())} | {"sept": 9}

_A = "A-Za-z0-9"
_ID = re.compile(rf"(?<![{_A}-])(?=[{_A}-]*\d)[A-Za-z][{_A}]*(?:-[{_A}]+)+(?![{_A}-])"
                 rf"|(?<![{_A}-])\d{{3,}}(?:-\d{{2,}})+(?![{_A}-])")  # POL-2024-0001, 95500-88 (not a date: see below)
_ISO_DATE = re.compile(r"(?<!\d)(\d{4})\s*[-/.年]\s*(\d{1,2})\s*(?:[-/.月]\s*(\d{1,2})\s*[日号]?|月)(?!\d)")
_EN_DATE = re.compile(r"(?i)\b(\d{1,2})(?:st|nd|rd|th)?\s+(" + "|".join(_MONTHS) + r")\.?,?\s+(\d{4})\b"
                      r"|\b(" + "|".join(_MONTHS) + r")\.?\s+(\d{1,2})(?:st|nd|rd|th)?,?\s+(\d{4})\b")
_NUM = re.compile(r"(?<![A-Za-z0-9_.])(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?(?!\d)(?:\s*(%|％|‰|折|"
                  r"(?:万|亿|千|百万|千万)(?!分之)|(?:k|m|mn|bn|thousand|million|billion)\b))?", re.I)
_CN_RUN = re.compile(rf"[{CN_NUMERALS}点]+")
_CN_PCT = re.compile(rf"(?:百分之|百分)([{CN_NUMERALS}点]+)")
_CN_DISCOUNT = re.compile(rf"([{CN_NUMERALS}]{{1,2}})折")
_EN_WORDS = re.compile(r"(?i)\b(?:(?:" + "|".join([*_EN_SMALL, *_EN_TENS, *_EN_BIG, "and", "a"]) +
                       r")(?:[\s-]+|\b))+(?:percent\b|per cent\b)?")
_REFERENCE = re.compile(rf"第\s*[\d{CN_NUMERALS}]+\s*[条章节款项编部分页]|"
                        r"(?i:\b(?:article|section|clause|chapter|part|schedule|annex|appendix|page|p\.)\s*"
                        r"\d+(?:\.\d+)*[a-z]?\b)")
# a lone Chinese digit is a word (一般, 一些, 三方) unless a measure word follows it; a run with a place value
# (十, 百, 千, 万) or two digits is a number
_MEASURE = ("个月|个工作日|工作日|小时|分钟|周岁|日|天|年|月|周|岁|元|人|名|次|倍|级|类|项|份|张|件|毫升|ml|mL|"
            "公斤|千克|克|mg|g|小时|例|床|期|种|位|户|家|条|台|km|公里|米|%|％")
_CN_MEASURED = re.compile(rf"^\s*(?:{_MEASURE})")


@dataclass(frozen=True)
class Figure:
    """One figure as written (`raw`, at `start`) and the values it stands for: numbers (a percentage also as
    its fraction), a date as 'd:YYYY-M[-D]', an identifier as 'id:UPPER'."""

    raw: str
    start: int
    values: frozenset[str] = field(default_factory=frozenset)
    number: float | None = None  # the plain value, for comparisons with a range (None for dates and ids)
    end: int = 0


def _key(value: float) -> str:
    return f"n:{round(value, 6):g}"


def _number_keys(value: float, percent: bool = False) -> frozenset[str]:
    keys = {_key(value)}
    if percent:
        keys.add(_key(value / 100))
    return frozenset(keys)


def cn_to_number(text: str) -> float | None:
    """Chinese numerals to a number: 十 = 10, 三十五 = 35, 一百二十万 = 1,200,000, 二〇二四 = 2024, 三点五 = 3.5."""
    if not text or any(ch not in _CN_DIGIT and ch not in _CN_UNIT and ch not in _CN_BIG and ch != "点"
                       for ch in text):
        return None
    if "点" in text:
        whole, _, frac = text.partition("点")
        w = cn_to_number(whole) if whole else 0.0
        digits = [_CN_DIGIT.get(c) for c in frac]
        if w is None or not digits or any(d is None for d in digits):
            return None
        return float(f"{int(w)}.{''.join(str(d) for d in digits)}")
    if all(ch in _CN_DIGIT for ch in text) and len(text) > 1:  # positional: 二〇二四
        return float("".join(str(_CN_DIGIT[c]) for c in text))
    total, section, digit = 0, 0, None
    for ch in text:
        if ch in _CN_DIGIT:
            digit = _CN_DIGIT[ch]
        elif ch in _CN_UNIT:
            section += (1 if digit is None else digit) * _CN_UNIT[ch]
            digit = None
        else:
            total += (section + (digit or 0)) * _CN_BIG[ch]
            section, digit = 0, None
    return float(total + section + (digit or 0))


def en_words_to_number(text: str) -> float | None:
    """English number words to a number: 'thirty' = 30, 'two hundred and fifty' = 250, 'a million' = 1e6."""
    words = [w for w in re.split(r"[\s-]+", text.lower().strip()) if w and w != "and"]
    if not words or all(w == "a" for w in words):
        return None
    total, current, seen = 0, 0, False
    for w in words:
        if w == "a":
            current = max(current, 1)
        elif w in _EN_SMALL:
            current += _EN_SMALL[w]
            seen = True
        elif w in _EN_TENS:
            current += _EN_TENS[w]
            seen = True
        elif w == "hundred":
            current = max(current, 1) * 100
            seen = True
        elif w in _EN_BIG:
            total += max(current, 1) * _EN_BIG[w]
            current, seen = 0, True
        else:
            return None
    return float(total + current) if seen else None


def _free(taken: list[tuple[int, int]], start: int, end: int) -> bool:
    return not any(s < end and start < e for s, e in taken)


def figures(text: str) -> list[Figure]:
    """The figures of `text` in order of appearance (clause references and citation marks [n] left out)."""
    out: list[Figure] = []
    taken: list[tuple[int, int]] = [m.span() for m in re.finditer(r"\[\d{1,3}\]", text)]
    taken += [m.span() for m in _REFERENCE.finditer(text)]

    def add(m_start: int, m_end: int, raw: str, values: frozenset[str], number: float | None = None) -> None:
        out.append(Figure(raw.strip(), m_start, values, number, m_end))
        taken.append((m_start, m_end))

    for m in _ISO_DATE.finditer(text):
        month = int(m.group(2))
        if 1 <= month <= 12 and _free(taken, *m.span()):
            day = f"-{int(m.group(3))}" if m.group(3) else ""
            add(m.start(), m.end(), m.group(0), frozenset({f"d:{m.group(1)}-{month}{day}"}))
    for m in _EN_DATE.finditer(text):
        if not _free(taken, *m.span()):
            continue
        day, month, year = (m.group(1), m.group(2), m.group(3)) if m.group(1) else (m.group(5), m.group(4), m.group(6))
        add(m.start(), m.end(), m.group(0), frozenset({f"d:{year}-{_MONTHS[month.lower().rstrip('.')]}-{int(day)}"}))
    for m in _ID.finditer(text):
        if _free(taken, *m.span()):
            add(m.start(), m.end(), m.group(0), frozenset({"id:" + m.group(0).upper()}))
    for m in _NUM.finditer(text):
        if not _free(taken, *m.span()):
            continue
        value = float(m.group(1).replace(",", "") + (m.group(2) or ""))
        unit = (m.group(3) or "").lower()
        if unit in ("%", "％"):
            add(m.start(), m.end(), m.group(0), _number_keys(value, percent=True), value)
        elif unit == "‰":
            add(m.start(), m.end(), m.group(0), frozenset({_key(value), _key(value / 1000)}), value)
        elif unit == "折":  # 8 折 = 80% of the price; 8.5 折 = 85%
            add(m.start(), m.end(), m.group(0), frozenset({_key(value / 10), _key(value * 10), _key(value)}), value)
        else:
            scaled = value * _SCALE.get(unit, 1.0)
            add(m.start(), m.end(), m.group(0), _number_keys(scaled), scaled)
    for m in _CN_PCT.finditer(text):  # 百分之九十 = 90% = 0.9
        if _free(taken, *m.span()) and (v := cn_to_number(m.group(1))) is not None:
            add(m.start(), m.end(), m.group(0), _number_keys(v, percent=True), v)
    for m in _CN_DISCOUNT.finditer(text):  # 九折 = 0.9, 八五折 = 0.85
        if not _free(taken, *m.span()):
            continue
        digits = m.group(1)
        if all(c in _CN_DIGIT for c in digits):
            v = float("0." + "".join(str(_CN_DIGIT[c]) for c in digits))
            add(m.start(), m.end(), m.group(0), frozenset({_key(v), _key(v * 100)}), v)
    for m in _CN_RUN.finditer(text):
        run = m.group(0).strip("点")
        if not run or not _free(taken, m.start(), m.end()):
            continue
        start = m.start() + m.group(0).index(run)
        end = start + len(run)
        value = cn_to_number(run)
        if value is None:
            continue
        after = text[end:end + 6]
        measured = bool(_CN_MEASURED.match(after))
        placed = any(c in _CN_UNIT or c in _CN_BIG for c in run) or len(run) > 1
        if not measured and not (placed and len(run) > 1 and any(c in _CN_DIGIT for c in run)):
            continue  # 一般, 十分, 万一, 千万: words, not figures
        if run[0] in _CN_BIG or (not any(c in _CN_DIGIT for c in run) and not measured):
            continue  # 万一, 千万 (words), a lone 十: only a measure word after them makes them figures
        add(start, end, run, _number_keys(value), value)
    for m in _EN_WORDS.finditer(text):
        raw = m.group(0).strip()
        if not raw or not _free(taken, m.start(), m.start() + len(raw)):
            continue
        percent = raw.lower().endswith(("percent", "per cent"))
        words = re.sub(r"(?i)\s*per\s*cent$|\s*percent$", "", raw)
        value = en_words_to_number(words)
        if value is None or (value < 2 and not percent and words.lower() in ("one", "a", "zero")):
            continue  # "one of the", "a claim": not figures
        add(m.start(), m.start() + len(raw), raw, _number_keys(value, percent=percent), value)
    out.sort(key=lambda f: f.start)
    return out


def keys_of(texts: list[str] | tuple[str, ...]) -> set[str]:
    """Every value the texts state (a fraction also as its percentage, so 0.9 supports 90%)."""
    keys: set[str] = set()
    for t in texts:
        for f in figures(t):
            keys |= f.values
            for k in f.values:
                if k.startswith("n:"):
                    keys.add(_key(float(k[2:]) * 100))
    return keys


def unsupported(answer: str, sources: list[str]) -> list[str]:
    """The figures of `answer` that none of `sources` states (as written in the answer, once each)."""
    known = keys_of(sources)
    return list(dict.fromkeys(f.raw for f in figures(answer) if not f.values & known))
