"""Stage 7, composition: what the user sees, from the structured reply and the verdict.

- answer:      the model's answer (verified, or verification off), then the units it rests on, quoted verbatim with
               their own citations;
- evidence:    the answer failed verification (or the reply was not the structured form): the documents' units
               themselves, titled as the documents' words; the verdict stays in the audit and the details;
- tool_result: a look-up whose wording failed verification: the record as it came back;
- refusal:     the documents do not answer (no sources).
"""

from __future__ import annotations

from assistant.chain import conditions
from assistant.chain.state import Answer, Unit
from assistant.chain.verification import applicable_units
from core.figures import keys_of
from core.prompts import is_chinese, no_answer

EVIDENCE_ZH = "资料原文："
EVIDENCE_EN = "From the documents:"
TOOL_ZH = "查询结果："
TOOL_EN = "Result:"


def _fallback_units(ans: Answer, scores: dict[int, float]) -> list[Unit]:
    """The units shown when the answer cannot be: those cited that the question's conditions do not exclude, else
    the units whose condition holds the question's quantities, else the best-matching unit."""
    by_id = {u.n: u for u in ans.units}
    question = ans.standalone or ans.question
    fitting = set(applicable_units(ans.units, question))
    cited = [by_id[i] for i in ans.cited if i in by_id]
    if fitting:
        keep = [u for u in cited if u.n in fitting]
        if keep:
            return keep
        return sorted((by_id[i] for i in fitting), key=lambda u: -scores.get(u.n, 0.0))[:2]
    if cited:
        return cited
    docs = [u for u in ans.units if u.call is None]
    if not docs or not scores:
        return []
    best = max(docs, key=lambda u: scores.get(u.n, 0.0))
    return [best] if scores.get(best.n, 0.0) > 0 else []


def _quotes(units: list[Unit], question: str | None = None) -> tuple[str, list[dict]]:
    """The units as quotes with their citations; with `question`, a unit whose tiers the question's quantities
    single out is quoted as the clause that applies ("… 200 至 999 人享受九折 …"): the documents' words still."""
    shown = []
    for k, u in enumerate(units, 1):
        cite = u.citation(k)
        if question is not None:
            asked = conditions.quantities(question)
            verdicts = conditions.verdicts(u.text, asked) if asked else []
            holding = [c for c, v in verdicts if v]
            if holding and any(v is False for _, v in verdicts):
                cite["text"] = f"… {'；'.join(holding) if is_chinese(u.text) else '; '.join(holding)} …"
        shown.append(cite)
    lines = [f"> {(c['header'] + ' ') if c.get('header') else ''}{c['text']} [{c['n']}]" for c in shown]
    return "\n".join(lines), shown


def compose(ans: Answer, scores: dict[int, float]) -> None:
    """Fill `ans.outcome`, `ans.lead`, `ans.shown` and the plain-text `ans.answer`; `scores` ranks the units for
    the question (the evidence stage's BM25) where a fallback must pick one."""
    zh = is_chinese(ans.question)
    status = ans.verification.get("status")
    by_id = {u.n: u for u in ans.units}
    if status == "refusal" and not ans.tool_calls:
        ans.outcome, ans.lead, ans.shown = "refusal", no_answer(ans.question), []
        ans.answer = ans.lead
        return
    if status in ("verified", "off"):
        excluded = set(ans.verification.get("excluded") or ())
        units = [by_id[i] for i in ans.cited if i in by_id and i not in excluded]
        said = keys_of([ans.model_answer])
        stating = [u for u in units if keys_of([u.prompt().text]) & said]
        units = stating or units  # the units holding the answer's figures are the ones it rests on
        # a result the answer states (a calculation's) is quoted with the clauses it came from, cited or not
        units += [u for u in ans.units if u.call is not None and u not in units and keys_of([u.text]) & said]
        body, ans.shown = _quotes(units)
        marks = "".join(f"[{k}]" for k in range(1, len(units) + 1))
        ans.outcome, ans.lead = "answer", f"{ans.model_answer} {marks}".strip()
        ans.answer = f"{ans.lead}\n\n{body}" if body else ans.lead
        return
    tool_units = [u for u in ans.units if u.call is not None]
    if tool_units and (status == "refusal" or not any(by_id.get(i) and by_id[i].call is None for i in ans.cited)):
        body, ans.shown = _quotes(tool_units)
        ans.outcome, ans.lead = "tool_result", TOOL_ZH if zh else TOOL_EN
        ans.answer = f"{ans.lead}\n\n{body}"
        return
    units = _fallback_units(ans, scores)
    if not units:
        ans.outcome, ans.lead, ans.shown = "refusal", no_answer(ans.question), []
        ans.answer = ans.lead
        return
    body, ans.shown = _quotes(units, ans.standalone or ans.question)
    ans.outcome, ans.lead = "evidence", EVIDENCE_ZH if zh else EVIDENCE_EN
    ans.answer = f"{ans.lead}\n\n{body}"
