"""Stage 6, verification: does the model's answer stand on the units it cites?

- figures: every figure of the answer (normalised: assistant.chain.figures) stands in a cited unit, a tool result
  or the question;
- conditions: where the question gives a quantity (300 people, CNY 450,000) and a cited unit states its rule as
  ranges of that kind of quantity, the answer rests on a clause whose range holds it (assistant.chain.conditions);
  among a unit's clauses, the one the answer says is the one its figures stand in, or (no figures) the one the
  embedding model finds nearest to it;
- support: the embedding model's similarity of the answer to the cited units (recorded; below
  `verify_min_support` the answer fails);
- an answer whose every word is the question's says nothing.

A refusal is a structured outcome (no evidence), not a phrase: nothing to verify. The verdict and its reasons go
to the audit and the answer's details.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from assistant.chain import conditions
from assistant.chain.state import Answer, Unit
from core.figures import figures, keys_of, unsupported
from ingest.lexical import bm25_tokens

Embed = Callable[[list[str]], np.ndarray]  # texts -> unit-normalised rows of the embedding model (symmetric)


def unit_text(u: Unit) -> str:
    return f"{u.header} {u.text}" if u.header else u.text


def _own_figures(answer: str, question: str) -> list[set[str]]:
    asked = keys_of([question])
    return [set(f.values) for f in figures(answer) if not f.values & asked]


def _restates(answer: str, question: str) -> bool:
    said = set(bm25_tokens(answer))
    return bool(said) and said <= set(bm25_tokens(question)) and not _own_figures(answer, question)


def _tier(u: Unit, answer: str, question: str, asked: list[conditions.Quantity],
          embed: Embed | None) -> tuple[bool, str | None]:
    """(whether the unit's conditions exclude it for the question's quantities, why the answer reads the wrong
    clause of a unit that holds several ranges, or None)."""
    ruled = [(c, v) for c, v in conditions.verdicts(unit_text(u), asked) if v is not None]
    holds = [c for c, v in ruled if v]
    if not ruled or len(holds) == len(ruled):
        return False, None
    if not holds:
        return True, None
    own = _own_figures(answer, question)
    if own:  # its figures must stand in a clause that applies, not only in one that does not
        held = keys_of(holds)
        other = keys_of([c for c, v in ruled if not v])
        if any(not f & held and f & other for f in own):
            return False, f"[{u.n}] the answer's figures stand in a clause of another range"
        return False, None
    if embed is None:
        return False, None
    rows = embed([answer, *[c for c, _ in ruled]])
    nearest = int(np.argmax(rows[1:] @ rows[0]))
    if not ruled[nearest][1]:
        return False, f"[{u.n}] the answer says the clause of another range ({ruled[nearest][0]})"
    return False, None


def applicable_units(units: Sequence[Unit], question: str) -> list[int]:
    """Ids of the units with a clause whose range holds a quantity the question gives."""
    asked = conditions.quantities(question)
    if not asked:
        return []
    return [u.n for u in units if any(v for _, v in conditions.verdicts(unit_text(u), asked))]


def verify(ans: Answer, embed: Embed | None, min_support: float | None, enabled: bool = True) -> None:
    """Fill `ans.verification` for the reply in `ans` (cited ids, model answer)."""
    v: dict[str, Any] = {"status": "", "reasons": [], "unsupported": []}
    ans.verification = v
    if ans.reply_problem:
        v["status"], v["reasons"] = "malformed", [ans.reply_problem]
        return
    if not ans.cited:
        v["status"] = "refusal"
        return
    if not enabled:
        v["status"] = "off"
        return
    by_id = {u.n: u for u in ans.units}
    cited = [by_id[i] for i in ans.cited if i in by_id]
    question = ans.standalone or ans.question
    asked_texts = [ans.question, question]
    answer = ans.model_answer
    if _restates(answer, question):
        v["reasons"].append("the answer only repeats the question")
    asked = conditions.quantities(question)
    excluded = []
    for u in cited:
        if u.call is None and asked:
            out, why = _tier(u, answer, question, asked, embed)
            if out:
                excluded.append(u.n)
            if why:
                v["reasons"].append(why)
    v["excluded"] = excluded
    standing = [u for u in cited if u.n not in excluded]
    if not standing:
        v["reasons"].append("every cited unit applies to another range than the question's: "
                            + ", ".join(f"[{n}]" for n in excluded))
    elif excluded and embed is not None:  # the answer must not say what a unit of another range says
        rows = embed([answer, *[unit_text(u) for u in cited]])
        nearest = cited[int(np.argmax(rows[1:] @ rows[0]))]
        if nearest.n in excluded:
            v["reasons"].append(f"the answer says [{nearest.n}], which applies to another range than the question's")
    results = [unit_text(u) for u in ans.units if u.call is not None]  # any tool result of the turn grounds figures
    v["unsupported"] = unsupported(answer, [unit_text(u) for u in standing] + results + asked_texts)
    if v["unsupported"]:
        v["reasons"].append("figures in no cited unit, tool result or the question: " + ", ".join(v["unsupported"]))
    if embed is not None and standing:
        rows = embed([f"{question} {answer}", *[unit_text(u) for u in standing]])
        v["support"] = round(float(np.max(rows[1:] @ rows[0])), 4)
        if min_support is not None and v["support"] < min_support:
            v["reasons"].append(f"the cited units are far from the answer (similarity {v['support']:.2f})")
    v["status"] = "failed" if v["reasons"] else "verified"
