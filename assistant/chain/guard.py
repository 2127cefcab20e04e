"""The grounding guard: what reaches the user is grounded in the passages or tool results, whatever the model did.

Two checks on the final answer, each configurable:
- `guard_uncited`: an answer that cites no passage, used no tool and is not a refusal is not shown as an
  answer: `replace` shows the best passage quoted with its citation (a refusal when nothing was retrieved),
  `mark` keeps it under a warning, `off` does nothing.
- `guard_figures`: figures in the answer (amounts, percentages, dates, counts, IDs) must appear in a cited
  passage, a tool result or what the user wrote; others are `flag`ged (a note under the answer, listed in the
  payload and the audit), `replace`d by a marker, or left (`off`). Values are compared, not strings: 300,000 =
  300000 = 30万, 十日 = 10日, 90% = 0.9; a figure only matches a whole number in the sources (十日 is not 三十日).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from core.prompts import CITATION, is_chinese, is_refusal, no_answer

_CN_DIGITS = {c: i for i, c in enumerate("零一二三四五六七八九")} | {"〇": 0, "两": 2}
_CN_UNITS = {"十": 10, "百": 100, "千": 1000}
_CN_BIG = {"万": 10_000, "亿": 100_000_000}
_CN_CHARS = "零〇一二两三四五六七八九十百千万亿"
_MULT = {"万": 1e4, "亿": 1e8, "千": 1e3, "k": 1e3, "K": 1e3}

_ID = re.compile(r"(?<![A-Za-z0-9])[A-Z]{2,}(?:-[A-Z0-9]+)*-\d[A-Z0-9]*(?:-[A-Z0-9]+)*")
_DATE = re.compile(r"(?<!\d)(\d{4})\s*[-/.年]\s*(\d{1,2})\s*(?:[-/.月]\s*(\d{1,2})\s*日?)?(?!\d)")
_NUM = re.compile(r"(?<![A-Za-z0-9.\-])(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?\s*(%|％|万|亿|千|k\b|K\b)?")
# Chinese numerals count only with a unit after them ("三十日", "五万元"): alone they are words (一些, 十分)
_CN_NUM = re.compile(rf"(?<![{_CN_CHARS}])([{_CN_CHARS}]+)(?=\s*(?:%|个月|日|天|年|元|倍|周|小时|岁|个工作日))")
_LIST_MARK = re.compile(r"^\s*\d{1,2}[.)、]\s", re.M)

MARK_ZH = "⚠ 以下回答未引用任何资料，请核实："
MARK_EN = "⚠ This answer cites no source; please verify:"
QUOTE_ZH = "模型的回答没有引用资料，以下是资料中与问题最相关的原文："
QUOTE_EN = "The model's answer cited no source; here is the most relevant passage in the documents:"
NOT_FOUND_ZH = "未在资料中找到"
NOT_FOUND_EN = "not found in the sources"


class PassageLike(Protocol):
    n: int
    text: str
    cited: bool


@dataclass
class Verdict:
    answer: str
    status: str | None = None  # None | "unsourced" (marked) | "quoted_passage" | "refused"
    unsupported: list[str] = field(default_factory=list)  # figures found in no source
    cite: int | None = None  # passage the replacement quotes (the chain marks it cited)

    def as_dict(self) -> dict[str, Any]:
        return {"status": self.status, "unsupported": self.unsupported}


def cn_to_int(text: str) -> int | None:
    """一 .. 九千九百九十九亿: Chinese numerals to an int (None if malformed)."""
    total, section, digit = 0, 0, None
    for ch in text:
        if ch in _CN_DIGITS:
            if digit is not None and ch not in "零〇":  # two digits in a row: positional (二〇二四)
                digit = digit * 10 + _CN_DIGITS[ch]
            else:
                digit = (digit or 0) * 10 + _CN_DIGITS[ch] if digit else _CN_DIGITS[ch]
        elif ch in _CN_UNITS:
            section += (digit if digit is not None else 1) * _CN_UNITS[ch]
            digit = None
        elif ch in _CN_BIG:
            total += (section + (digit or 0)) * _CN_BIG[ch]
            section, digit = 0, None
        else:
            return None
    return total + section + (digit or 0)


def _num_key(value: float) -> str:
    return f"n:{round(value, 6):g}"


def figures(text: str) -> list[tuple[str, set[str]]]:
    """The figures in `text`: (as written, the keys it matches: normalised IDs, dates and numeric values)."""
    text = CITATION.sub(" ", text)
    text = _LIST_MARK.sub(" ", text)
    out: list[tuple[int, str, set[str]]] = []  # (position, as written, keys)
    taken: list[tuple[int, int]] = []

    def free(m: re.Match[str]) -> bool:
        return not any(s < m.end() and m.start() < e for s, e in taken)

    for m in _ID.finditer(text):
        out.append((m.start(), m.group(0), {"id:" + m.group(0).upper()}))
        taken.append(m.span())
    for m in _DATE.finditer(text):
        if free(m) and 1 <= int(m.group(2)) <= 12:
            y, mo, d = m.group(1), int(m.group(2)), m.group(3)
            out.append((m.start(), m.group(0).strip(), {f"d:{y}-{mo}" + (f"-{int(d)}" if d else "")}))
            taken.append(m.span())
    for m in _NUM.finditer(text):
        if not free(m):
            continue
        value = float(m.group(1).replace(",", "") + (m.group(2) or ""))
        unit = m.group(3)
        keys = {_num_key(value * _MULT.get(unit or "", 1.0))}
        if unit in ("%", "％"):
            keys.add(_num_key(value / 100))
        out.append((m.start(), m.group(0).strip(), keys))
        taken.append(m.span())
    for m in _CN_NUM.finditer(text):
        if free(m) and (v := cn_to_int(m.group(1))) is not None:
            out.append((m.start(), m.group(1), {_num_key(float(v))}))
    return [(raw, keys) for _, raw, keys in sorted(out, key=lambda f: f[0])]


def source_keys(texts: Iterable[str]) -> set[str]:
    """Every figure key the sources support (percentages also as fractions, so 0.9 supports 90%)."""
    keys: set[str] = set()
    for t in texts:
        for _, ks in figures(t):
            keys |= ks
            for k in list(ks):
                if k.startswith("n:"):
                    keys.add(_num_key(float(k[2:]) * 100))
    return keys


def best_passage_quote(passage: PassageLike, chinese: bool, limit: int = 300) -> str:
    body = " ".join(passage.text.split())
    if len(body) > limit:
        body = body[:limit].rstrip() + " …"
    return f"{QUOTE_ZH if chinese else QUOTE_EN}\n\n> {body} [{passage.n}]"


def guard_answer(answer: str, question: str, passages: Sequence[PassageLike], tool_results: Sequence[str],
                 used_tool: bool, user_texts: Sequence[str] = (), uncited: str = "replace",
                 figures_mode: str = "flag") -> Verdict:
    """Check one final answer (after citation marking: `passages[i].cited` says what it cites)."""
    chinese = is_chinese(question)
    cited = [p for p in passages if p.cited]
    refusal = is_refusal(answer) or answer.strip() == no_answer(question)
    verdict = Verdict(answer)
    if uncited != "off" and not cited and not used_tool and not refusal and answer.strip():
        if uncited == "mark":
            verdict.answer, verdict.status = f"{MARK_ZH if chinese else MARK_EN}\n\n{answer}", "unsourced"
        elif passages:
            best = min(passages, key=lambda p: p.n)  # passages are numbered best first
            verdict.answer, verdict.status, verdict.cite = best_passage_quote(best, chinese), "quoted_passage", best.n
            return verdict  # a verbatim quote: nothing to check
        else:
            verdict.answer, verdict.status = no_answer(question), "refused"
            return verdict
    if figures_mode == "off" or refusal:
        return verdict
    supported = source_keys([p.text for p in cited] + list(tool_results) + [question, *user_texts])
    unsupported = [raw for raw, keys in figures(answer) if not keys & supported]
    verdict.unsupported = list(dict.fromkeys(unsupported))
    if not verdict.unsupported:
        return verdict
    marker = NOT_FOUND_ZH if chinese else NOT_FOUND_EN
    if figures_mode == "replace":
        text = verdict.answer
        for raw in sorted(verdict.unsupported, key=len, reverse=True):
            text = re.sub(rf"(?<![0-9A-Za-z{_CN_CHARS}]){re.escape(raw)}(?![0-9])", f"[{marker}]", text)
        verdict.answer = text
    else:
        sep = "、" if chinese else ", "
        verdict.answer = f"{verdict.answer}\n\n⚠ {marker}: {sep.join(verdict.unsupported)}"
    return verdict


def apply_guard(ans: Any, question: str, history: Sequence[dict[str, str]], uncited: str, figures_mode: str,
                emit: Any = None) -> None:
    """Run the guard on the chain's `Answer` in place: its text, the passage a quote cites, `ans.guard`."""
    if ans.error:
        return
    verdict = guard_answer(
        ans.answer, question, ans.passages, [t.for_model() for t in ans.tool_calls if t.ok],
        used_tool=bool(ans.tool_calls), user_texts=[h["content"] for h in history if h.get("role") == "user"],
        uncited=uncited, figures_mode=figures_mode)
    ans.answer = verdict.answer
    if verdict.cite is not None:
        for p in ans.passages:
            p.cited = p.n == verdict.cite
    ans.guard = verdict.as_dict()
    if emit and (verdict.status or verdict.unsupported):
        emit("status", "guard_" + (verdict.status or "unsupported_figures"))
