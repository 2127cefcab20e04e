"""The grounding guard: what reaches the user is grounded in the passages or tool results, whatever the model did.

Two checks on the final answer, each configurable:
- `guard_uncited`: an answer that cites no passage, used no tool and is not a refusal is not shown as an
  answer: `replace` shows the best passage quoted with its citation (a refusal when nothing was retrieved),
  `mark` keeps it under a warning, `off` does nothing.
- `guard_figures`: figures in the answer (amounts, percentages, dates, counts, IDs) must appear in a cited
  passage, a tool result or what the user wrote; an answer with others is replaced by the best passage sentence
  quoted (`quote`; a tool answer gets markers instead), or they are `flag`ged (a note under the answer, listed
  in the payload and the audit), `replace`d by a marker, or left (`off`). Values are compared, not strings: 300,000 =
  300000 = 30万, 十日 = 10日, 90% = 0.9; a figure only matches a whole number in the sources (十日 is not 三十日).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from assistant.chain import sentences
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
_CN_NUM = re.compile(rf"(?<![{_CN_CHARS}])([{_CN_CHARS}]+)(?=\s*(?:%|个月|日|天|年|元|倍|周|小时|岁|个工作日|折))")
_CN_PCT = re.compile(rf"百分之?([{_CN_CHARS}]+)")  # 百分九十 too: a model shortens it
_LIST_MARK = re.compile(r"^\s*\d{1,2}[.)、]\s", re.M)

MARK_ZH = "⚠ 以下回答未引用任何资料，请核实："
MARK_EN = "⚠ This answer cites no source; please verify:"
QUOTE_ZH = "模型的回答未能在资料中得到印证，以下是资料中最能回答该问题的原文："
QUOTE_EN = ("The model's answer could not be verified in the documents; this is the passage that best answers the "
            "question:")
NOT_FOUND_ZH = "未在资料中找到"
NOT_FOUND_EN = "not found in the sources"


class PassageLike(Protocol):
    n: int
    text: str
    cited: bool


@dataclass
class Verdict:
    answer: str
    status: str | None = None  # None | "attributed" | "unsourced" (marked) | "quoted_passage" | "refused"
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
    for m in _CN_PCT.finditer(text):  # 百分之九十 = 90% = 0.9
        if free(m) and (v := cn_to_int(m.group(1))) is not None:
            out.append((m.start(), m.group(0), {_num_key(float(v)), _num_key(v / 100)}))
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


_terms, _unwrap = sentences.terms, sentences.unwrap


def _supports(claim: str, keys: set[str], passage: PassageLike) -> bool:
    """A sentence of the passage holds the figure (`keys`) and talks about what the claim does (its words,
    question words included: 申诉三十日内答复 is not supported by 三十日内作出核定)."""
    said = _terms(claim) - _FILLER
    for sent in sentences.split(passage.text):
        if any(ks & keys for _, ks in figures(sent)) or keys & source_keys([sent]):
            if not said or len(said & _terms(sent)) / len(said) >= 0.4:
                return True
    return False


def attribute(answer: str, question: str, passages: Sequence[PassageLike]) -> PassageLike | None:
    """The passage an uncited answer was evidently taken from, or None: each figure it adds to the question
    stands in that passage in a sentence about the same thing, or (no figures) half its own wording is there."""
    text = CITATION.sub(" ", answer)
    question_keys = source_keys([question])
    claims = [(sent, keys) for sent in sentences.split(text) for _, keys in figures(sent) if not keys & question_keys]
    if claims:
        for p in sorted(passages, key=lambda x: x.n):
            if all(_supports(sent, keys, p) for sent, keys in claims):
                return p
        return None
    own = _terms(text) - _terms(question) - _FILLER
    if not own:
        return None
    best = max(passages, key=lambda p: len(own & _terms(p.text)), default=None)
    return best if best is not None and len(own & _terms(best.text)) / len(own) >= 0.5 else None


def restates(answer: str, question: str) -> bool:
    """Whether an answer only repeats the question (no word and no figure of its own), or is a bare figure with
    nothing to say what it counts ("3 [1]" for the term of an agreement: three what?)."""
    text = CITATION.sub(" ", answer).strip().rstrip("。.")
    if re.fullmatch(r"[\d,.]+", text):
        return True
    own = _terms(text) - _terms(question) - _FILLER
    question_keys = source_keys([question])
    return not own and not any(not keys & question_keys for _, keys in figures(answer))


_FILLER = _terms("根据资料所述，答案如下是为 according to the passage document answer")
_ASKING = _terms("是多少 是什么 有哪些 是哪 怎么样 如何 为什么 多久 多长时间 几天 几个 吗 呢 请问 一下 "
                 "what which who how when where why long many much")


def best_sentence(question: str, passages: Sequence[PassageLike],
                  limit: int = 200) -> tuple[PassageLike, str] | None:
    """The passage text that best answers the question: the best-scoring sentence (chain.sentences; retrieval order
    breaks ties) and its neighbours when they add to the score, up to `limit` characters (a rate table's row sits
    two sentences after the one naming the table)."""
    cands = [(p, i, sent) for p in passages for i, sent in enumerate(_units(p.text))]
    if not cands:
        return None
    score = sentences.scorer(question, [c[2] for c in cands], lambda x: bool(figures(x)))
    scores = [score(k) - 0.05 * cands[k][0].n - (0.5 if len(cands[k][2]) < 8 else 0) for k in range(len(cands))]
    k = max(range(len(cands)), key=lambda i: scores[i])
    best = cands[k][0]
    own = [(j, c[2], scores[j]) for j, c in enumerate(cands) if c[0] is best]
    pos = next(n for n, (j, _, _) in enumerate(own) if j == k)
    lo, hi = pos, pos + 1
    # up to two sentences either side, where one scores at least half as well (and those between come along)
    for n in range(max(0, pos - 2), min(len(own), pos + 3)):
        if n != pos and own[n][2] >= 0.5 * own[pos][2] > 0:
            a, b = min(lo, n), max(hi, n + 1)
            if sum(len(x[1]) + 1 for x in own[a:b]) <= limit:
                lo, hi = a, b
    # a word of the question that only one sentence has (第三类 in a rate list under its heading) is what the
    # question is about: a window that lacks it reaches for it, a few sentences on at most
    cand_terms = [sentences.terms(c[2]) for c in cands]
    unique = {t for t in sentences.terms(question) if sum(t in ts for ts in cand_terms) == 1}
    for n in range(max(0, lo - 2), min(len(own), hi + 4)):
        have = set().union(*(cand_terms[x[0]] for x in own[lo:hi]))
        if not lo <= n < hi and unique & (cand_terms[own[n][0]] - have):
            a, b = min(lo, n), max(hi, n + 1)
            if sum(len(x[1]) + 1 for x in own[a:b]) <= limit + 60:
                lo, hi = a, b
    window = (lo, hi)
    text = " ".join(x[1] for x in own[window[0]:window[1]])
    if len(text) < 40 and window[1] < len(own):  # a heading alone: the sentence after it carries the content
        text = f"{text} {own[window[1]][1]}"
    return best, text


def agrees(answer: str, question: str, passages: Sequence[PassageLike]) -> bool:
    """Whether a short answer says what the passage text that best answers the question says: its figures stand
    there and most of its own words do. Where the question names an amount, that text is the clause stating the
    amount's tier ("30 万元以上报理赔负责人审批", not "5 万元至 30 万元由高级核赔人审批" beside it). A small model
    often cites the right passage and takes the neighbouring clause. A long answer (several sentences: a good
    model's synthesis, or a domain adapter copying the passages) must say it in one of its sentences."""
    if answer.lstrip().startswith((QUOTE_ZH, QUOTE_EN)) and _QUOTE_LINE.search(answer):
        return True  # a passage quoted in the guard's own form: its words were checked (misquotes)
    text = CITATION.sub(" ", answer).strip()
    parts = sentences.split(text)
    if len(text) > 160 or len(parts) > 2:
        # against the best sentence alone, not its neighbours: a copy of the clause beside the answer is no answer
        core = best_sentence(question, passages, limit=0)
        return core is None or any(_agrees_short(part, question, core) for part in parts)
    found = best_sentence(question, passages)
    return found is None or _agrees_short(text, question, found)


def _agrees_short(text: str, question: str, found: tuple[PassageLike, str]) -> bool:
    basis = found[1]
    amount = sentences.asked_amount(question)
    if amount is not None:
        tier = [c for c in sentences.clauses(basis) if sentences.in_tier(c, amount)]
        basis = " ".join(tier) or basis
    else:
        basis_figures = _about_the_question(basis, question)
    keys = source_keys([basis_figures if amount is None else basis])
    question_keys = source_keys([question])
    if any(not ks & keys for _, ks in figures(text) if not ks & question_keys):
        return False
    own = _terms(text) - _terms(question) - _FILLER
    return not own or len(own & _terms(basis)) / len(own) >= 0.6


_TABLE_ROWS = re.compile(r"(?<=\|)\s+(?=\|)")
_AFTER_TABLE = re.compile(r"(?<=\|)(?=[^\s|][^|]*$)")  # "…逐级递减 |第七条 意外医疗保险金…": the text after a table


# "…require the Claims Committee. 3.4 Medical Expense Calculation Eligible…": a numbered section starts there
_NEXT_SECTION = re.compile(r"(?<=[.。;；])\s+(?=\d{1,2}(?:\.\d{1,2})+\s+[A-Z\u4e00-\u9fff])")


def _units(text: str) -> list[str]:
    """Sentences, with a table or a numbered section heading cut off from the text that follows it
    (sentences.split runs them together)."""
    return [u for sent in sentences.split(text) for part in _NEXT_SECTION.split(sent)
            for u in _AFTER_TABLE.split(part) if u.strip()]


def _about_the_question(text: str, question: str) -> str:
    """The sentences of a quote window that name the question's subject most often: where an answer's figures
    must come from. (For 犹豫期是多长时间, "…十五日为犹豫期" under the heading 第十二条 犹豫期, not the next
    sentence's "犹豫期后…三十日内" that the window also holds.)"""
    asked = [t for t in _terms(question) - _ASKING if len(t) > 1]
    # a table's rows are units of their own (sentences.split keeps a table together): "| Call recordings | 3 years |",
    # not the row above it, is where "how long are call recordings kept" gets its figure
    sents = [row for sent in sentences.split(text) for row in _TABLE_ROWS.split(sent)]
    if len(sents) < 2 or not asked:
        return text
    counts = [sum(s.lower().count(t) for t in asked) for s in sents]
    top = max(counts)
    return " ".join(s for s, c in zip(sents, counts, strict=True) if c == top) if top else text


def best_passage_quote(question: str, passages: Sequence[PassageLike], limit: int = 300,
                       found: tuple[PassageLike, str] | None = None) -> tuple[str, int]:
    """The quote that replaces an unsupported answer: the best sentence (`found`, if already picked), with its
    citation; the passage number."""
    chinese = is_chinese(question)
    found = found or best_sentence(question, passages)
    if found is None:
        p = min(passages, key=lambda x: x.n)
        body = _unwrap(p.text)
    else:
        p, body = found
    if len(body) > limit:
        body = body[:limit].rstrip() + " …"
    return f"{QUOTE_ZH if chinese else QUOTE_EN}\n\n> {body} [{p.n}]", p.n


def _quote_or_refuse(question: str, passages: Sequence[PassageLike]) -> Verdict:
    """What replaces an answer that cannot stand: the passage sentence that answers, quoted, or the refusal."""
    if not passages:
        return Verdict(no_answer(question), "refused")
    found = best_sentence(question, passages)
    if found is not None and not (_terms(question) - _ASKING) & _terms(found[1]):
        # the best sentence shares no word with the question (重疾险的等待期 over accident-insurance terms):
        # the documents do not answer it, and quoting one would only look like an answer
        return Verdict(no_answer(question), "refused")
    text, n = best_passage_quote(question, passages, found=found)
    return Verdict(text, "quoted_passage", cite=n)


_QUOTE_LINE = re.compile(r"^>\s?(.*)$", re.M)


def misquotes(answer: str, passages: Sequence[PassageLike]) -> bool:
    """Whether a line the answer shows as a quote ('> …') is not the words of any passage: a small model that
    saw a quoted answer in the history writes one itself, with the clause's figures swapped."""
    texts = ["".join(p.text.split()) for p in passages]
    for m in _QUOTE_LINE.finditer(answer):
        words = "".join(CITATION.sub("", m.group(1)).replace("…", " ").split())
        if len(words) >= 8 and not any(words in t for t in texts):
            return True
    return False


def as_history(answer: str) -> str:
    """A shown answer as the model sees it in the history: the guard's own wording (a quote's preface and '> '
    marks, the unsourced mark) taken out, so a small model does not answer the next question in that form."""
    for prefix in (QUOTE_ZH, QUOTE_EN, MARK_ZH, MARK_EN):
        answer = answer.replace(prefix, "")
    return _QUOTE_LINE.sub(lambda m: m.group(1), answer).strip()


def guard_answer(answer: str, question: str, passages: Sequence[PassageLike], tool_results: Sequence[str],
                 used_tool: bool, user_texts: Sequence[str] = (), uncited: str = "replace",
                 figures_mode: str = "flag") -> Verdict:
    """Check one final answer (after citation marking: `passages[i].cited` says what it cites)."""
    chinese = is_chinese(question)
    cited = [p for p in passages if p.cited]
    refusal = is_refusal(answer) or answer.strip() == no_answer(question)
    verdict = Verdict(answer)
    echo = uncited != "off" and not used_tool and not refusal and restates(answer, question)
    if echo:
        cited = []  # "出险后几天内报案 [1]": a citation on the question repeated is no answer
    if uncited != "off" and not used_tool and not answer.strip():  # no answer at all (a broken tool loop)
        return _quote_or_refuse(question, passages)
    if uncited != "off" and not cited and not used_tool and not refusal and answer.strip():
        source = None if echo else attribute(answer, question, passages)
        if source is not None:  # grounded, only the citation was missing: add it
            verdict.answer, verdict.status, verdict.cite = f"{answer.rstrip()} [{source.n}]", "attributed", source.n
            cited = [source]
        elif uncited == "mark":
            verdict.answer, verdict.status = f"{MARK_ZH if chinese else MARK_EN}\n\n{answer}", "unsourced"
        else:
            return _quote_or_refuse(question, passages)  # a verbatim quote or a refusal: nothing to check
    if figures_mode == "off" or refusal:
        return verdict
    if passages and not used_tool and misquotes(verdict.answer, passages):
        return _quote_or_refuse(question, passages)  # a quote must be the passage's words, or it is not shown
    supported = source_keys([p.text for p in cited] + list(tool_results) + [question, *user_texts])
    unsupported = [raw for raw, keys in figures(answer) if not keys & supported]
    verdict.unsupported = list(dict.fromkeys(unsupported))
    if figures_mode == "quote" and passages and not used_tool and (
            verdict.unsupported or not agrees(answer, question, passages)):
        # a figure no source has, or cited but not what the passages say to this question: the passage's words
        quoted = _quote_or_refuse(question, passages)
        quoted.unsupported = verdict.unsupported
        return quoted
    if not verdict.unsupported:
        return verdict
    marker = NOT_FOUND_ZH if chinese else NOT_FOUND_EN
    if figures_mode in ("replace", "quote"):
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
        # a result, or a refusal to run (the answer may report it); an invented look-up that never ran grounds nothing
        used_tool=any(t.ok or t.denied for t in ans.tool_calls),
        user_texts=[h["content"] for h in history if h.get("role") == "user"],
        uncited=uncited, figures_mode=figures_mode)
    ans.answer = verdict.answer
    refused = verdict.status == "refused" or CITATION.sub("", verdict.answer).strip() == no_answer(question)
    if verdict.cite is not None or refused:
        for p in ans.passages:  # the refusal cites nothing, whatever the words it replaced cited
            p.cited = p.n == verdict.cite
    ans.guard = verdict.as_dict()
    if emit and (verdict.status or verdict.unsupported):
        emit("status", "guard_" + (verdict.status or "unsupported_figures"))
