"""Stage 3, evidence: the retrieved passages split into numbered units (sentences, table rows), each with its own
citation (file, page or sheet, the clause it stands in), and the units the model is shown.

The model is shown the `evidence_units` units of the best passages that match the question best (the embedding
model's cosine with BM25 beside it), best first, within about `evidence_tokens`: every token there is prefill the
user waits for, and a small model reads a few sentences better than whole passages. A table row keeps its table's
header row, so it reads alone.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Sequence

import numpy as np

from assistant.chain.state import Answer, Source, Unit
from ingest.chunking.chunker import PATH_SEP
from ingest.chunking.headings import detect_heading
from ingest.lexical import bm25_tokens

# a sentence ends at 。！？!? (Chinese needs no space after them), or at a full stop followed by space and a
# capital, digit, quote or Han character (English); not after a one- to three-letter abbreviation ("Co.", "No. 5").
# A semicolon ends no unit: the tiers of a rule ("50 至 199 人九五折；200 至 999 人九折；…") read together.
_END = re.compile(r"(?<=[。！？!?])\s*|(?<![A-Z][a-z]\.)(?<![A-Z][a-z][a-z]\.)(?<!\b[A-Za-z]\.)(?<=\.)\s+"
                  r"(?=[A-Z0-9\"“‘\u4e00-\u9fff])")
_ITEM = re.compile(r"^\s*(?:[-•·*]\s|\(?\d{1,2}[).、]\s?|[（(][一二三四五六七八九十\d]{1,3}[)）]"
                   r"|[一二三四五六七八九十]{1,3}、)")
_TABLE_RULE = re.compile(r"^\s*\|?\s*:?-{2,}")
_HAN_EDGE = re.compile(r"(?<=[\u4e00-\u9fff，、：；（）])\s+(?=[\u4e00-\u9fff，、。；（）])")
_HAN = re.compile(r"[\u4e00-\u9fff]")
MAX_UNIT = 240  # a longer sentence is split at commas: a unit is what one citation can point at
TABLE_ROWS, TABLE_TOKENS = 12, 160  # a table within both is one unit


def _unwrap(lines: list[str]) -> str:
    """Lines of one paragraph as running text: no space where a line wrap split Han characters."""
    return _HAN_EDGE.sub("", " ".join(x.strip() for x in lines if x.strip()))


def _sentences(text: str) -> list[str]:
    out: list[str] = []
    for s in _END.split(text):
        s = s.strip()
        if not s:
            continue
        while len(s) > MAX_UNIT:  # cut at the last comma before the limit (or the limit itself)
            cut = max(s.rfind(c, 0, MAX_UNIT) for c in "，,、")
            cut = cut + 1 if cut > MAX_UNIT // 3 else MAX_UNIT
            out.append(s[:cut].strip())
            s = s[cut:].strip()
        if s:
            out.append(s)
    merged: list[str] = []
    for s in out:  # a fragment of a few characters ("1.", "注：") belongs to the next sentence
        if merged and len(merged[-1]) < 6 and not merged[-1].startswith("|"):
            merged[-1] = f"{merged[-1]} {s}"
        else:
            merged.append(s)
    return merged


def _clause_for(label: str, clauses: Sequence[str], fallback: str | None) -> str:
    """The clause a heading inside a passage names, as the chunk's heading path has it (its last part)."""
    for path in clauses:
        if path.split(PATH_SEP)[-1] == label:
            return label
    return label or (fallback or "")


def split_units(p: Source) -> list[Unit]:
    """The passage's units in order (unnumbered: n = 0), each under the clause in force where it stands."""
    base = (p.clauses[0] if p.clauses else p.clause or "").split(PATH_SEP)[-1] or None
    clause = base
    units: list[Unit] = []
    para: list[str] = []

    def unit(text: str, kind: str = "sentence", head: str | None = None) -> Unit:
        return Unit(0, text, p.source, p.page, p.page_label, clause, p.n, kind, head, p.chunk_id, p.doc_id, p.path)

    def flush() -> None:
        if para:
            units.extend(unit(s) for s in _sentences(_unwrap(para)))
            para.clear()

    table: list[str] = []

    def end_table() -> None:
        """A small table is one unit (its header and rows: the figure a question asks for and what it belongs to
        read together); a large one gives a unit per row, under its header."""
        if not table:
            return
        head, rows = table[0], table[1:]
        if rows and len(rows) <= TABLE_ROWS and sum(tokens(r) for r in table) <= TABLE_TOKENS:
            units.append(unit("\n".join(table), "table"))
        elif rows:
            units.extend(unit(r, "row", head) for r in rows)
        else:
            units.append(unit(head, "row"))
        table.clear()

    for line in p.text.split("\n"):
        stripped = line.strip()
        if stripped.startswith("|"):
            flush()
            if not _TABLE_RULE.match(stripped):
                table.append(stripped)
            continue
        end_table()
        if not stripped:
            flush()
            continue
        heading = detect_heading(stripped)
        if heading is not None:
            flush()
            clause = _clause_for(heading.label, p.clauses, base)
            rest = stripped.lstrip("#").strip()
            if rest.replace(" ", "") != heading.label.replace(" ", ""):  # a clause whose text runs on its line
                para.append(rest)
            continue
        if _ITEM.match(stripped):
            flush()
        para.append(stripped)
    end_table()
    flush()
    return units


class UnitScorer:
    """How well each unit matches the question: the embedding model's cosine (question as query, unit as passage:
    it reads paraphrase and inflection) plus half BM25 with the knowledge base's term statistics (exact rare words:
    an id, a tier name), each standardised over the units compared."""

    def __init__(self, question: str, idf: Callable[[str], float],
                 dense: Callable[[list[str]], np.ndarray] | None = None, query: np.ndarray | None = None,
                 lexical_weight: float = 0.5) -> None:
        self.terms = Counter(bm25_tokens(question))
        self.idf = idf
        self.dense, self.query = dense, query
        self.lexical_weight = lexical_weight

    def bm25(self, units: Sequence[Unit]) -> list[float]:
        docs = [Counter(bm25_tokens(f"{u.header or ''} {u.text}")) for u in units]
        avg = sum(sum(d.values()) for d in docs) / max(1, len(docs)) or 1.0
        k1, b = 1.2, 0.75
        out = []
        for d in docs:
            size = sum(d.values())
            out.append(sum(self.idf(t) * d[t] * (k1 + 1) / (d[t] + k1 * (1 - b + b * size / avg))
                           for t in self.terms if d[t]))
        return out

    def scores(self, units: Sequence[Unit]) -> list[float]:
        lexical = np.array(self.bm25(units), dtype=np.float64)
        if self.dense is None or self.query is None or len(units) < 2:
            return lexical.tolist()
        cos = self.dense([f"{u.header} {u.text}" if u.header else u.text for u in units]) @ self.query
        return (_z(cos) + self.lexical_weight * _z(lexical)).tolist()


def _z(x: np.ndarray) -> np.ndarray:
    sd = float(np.std(x))
    return (x - float(np.mean(x))) / sd if sd > 1e-9 else np.zeros_like(x, dtype=np.float64)


def tokens(text: str) -> float:
    """About how many model tokens a text takes: a Han character about one, other text about four characters each."""
    han = len(_HAN.findall(text))
    return han + (len(text) - han) / 4


def build(ans: Answer, question: str, scorer: UnitScorer, passages: int, units: int,
          budget: float) -> dict[int, float]:
    """The `units` units of the best `passages` passages that match the question best (within about `budget`
    tokens), numbered 1.. best first into `ans.units`; returns each shown unit's score (by id)."""
    pool = [u for p in ans.passages[:passages] for u in split_units(p)]
    if not pool:
        ans.units = []
        return {}
    scores = scorer.scores(pool)
    chosen: list[tuple[Unit, float]] = []
    used = 0.0
    for k in sorted(range(len(pool)), key=lambda i: -scores[i]):
        size = tokens(pool[k].prompt().text)
        if chosen and (len(chosen) >= units or used + size > budget):
            break
        chosen.append((pool[k], scores[k]))
        used += size
    for n, (u, _) in enumerate(chosen, 1):
        u.n = n
    ans.units = [u for u, _ in chosen]
    return {u.n: score for u, score in chosen}
