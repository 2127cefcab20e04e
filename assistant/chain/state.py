"""The one state object of a turn, handed forward through the answer path's stages:

    standalone -> retrieval -> evidence -> tools -> generation -> verification -> composition

Each stage reads what earlier stages wrote and fills its own fields; none calls back into an earlier one.
`Answer` is also what the UI, the CLI, the audit and the feedback store read (`to_dict`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from assistant.tools.registry import ToolResult
from core.prompts import Passage, PromptUnit, content

Emit = Any  # Callable[[str, Any], None]: (kind, payload) with kind token | thinking | tool | sources | status


@dataclass
class Source:
    """A retrieved passage (a chunk) with where it stands; `cited` when a cited unit comes from it."""

    n: int
    source: str
    page: int | None
    clause: str | None
    text: str
    score: float
    chunk_id: str
    cited: bool = False
    dense: float | None = None
    bm25: float | None = None
    path: str | None = None  # where the file was ingested from (display only: files are served by doc_id)
    doc_id: str = ""
    page_label: str | None = None  # how to cite a sheet or slide ("sheet 费率表", "slide 3"); None: "p.N"
    clauses: list[str] = field(default_factory=list)  # every clause the chunk holds (`clause`: the main one)


@dataclass
class Unit:
    """An evidence unit: a sentence or table row of a passage, or a tool result, with its own citation."""

    n: int  # its id in the prompt and in the model's reply
    text: str  # the words as they stand in the document (line wraps undone)
    source: str
    page: int | None = None
    page_label: str | None = None
    clause: str | None = None  # the clause this unit stands in (the heading in force where it is)
    passage: int = 0  # the retrieved passage it comes from (Source.n); 0 for a tool result
    kind: str = "sentence"  # sentence | row (of a large table, under its header) | table (a small one whole) | tool
    header: str | None = None  # a table row's header row
    chunk_id: str = ""
    doc_id: str = ""
    path: str | None = None
    call: int | None = None  # for a tool result: its call's index in Answer.tool_calls

    def label(self) -> str:
        return Passage(self.source, "", self.page, self.clause, self.page_label).header()

    def prompt(self) -> PromptUnit:
        """The unit as the model reads it (core.prompts.content, on one line): a table row under a label that carries
        its header row, so the row's own words open it and key it."""
        text = content(self.text).replace("\n", " ")
        return PromptUnit(self.n, text, f"{self.label()} {self.header}" if self.header else self.label())

    def citation(self, n: int) -> dict[str, Any]:
        """The unit as a cited source numbered `n` for the user."""
        return {"n": n, "unit": self.n, "source": self.source, "page": self.page, "page_label": self.page_label,
                "clause": self.clause, "text": self.text, "header": self.header, "kind": self.kind, "call": self.call,
                "chunk_id": self.chunk_id, "doc_id": self.doc_id, "path": self.path}


@dataclass
class Answer:
    question: str  # as asked
    answer: str  # what the user is shown, as plain text (the lead text, then the quoted units)
    passages: list[Source]
    tool_calls: list[ToolResult]  # every call attempted this turn, whatever became of it
    standalone: str = ""  # the question as searched and answered (a follow-up resolved), set by `standalone`
    units: list[Unit] = field(default_factory=list)
    thinking: str = ""
    relevant: bool = True
    model: str = ""
    adapter: str | None = None
    latency_s: float = 0.0
    first_token_s: float | None = None  # when the first word of the answer was shown
    retrieval_ms: float = 0.0
    prefill_s: float | None = None
    tokens_per_s: float | None = None
    prompt_tokens: int | None = None
    new_tokens: int | None = None
    audit_id: int | None = None
    steps: int = 0
    error: str | None = None
    kb: str | None = None
    status: str = "complete"  # complete | partial (interrupted) | error
    malformed: list[str] = field(default_factory=list)  # replies that were not the structured form (any stage)
    reply_problem: str | None = None  # why the answer's reply was not the structured form
    reply: str = ""  # the model's structured reply, as it wrote it
    model_answer: str = ""  # the answer text of the reply
    cited: list[int] = field(default_factory=list)  # the unit ids the reply rests on
    verification: dict[str, Any] = field(default_factory=dict)  # {status, reasons, unsupported, support}
    outcome: str = ""  # answer | evidence | refusal | tool_result | error
    lead: str = ""  # the text above the quotes
    shown: list[dict[str, Any]] = field(default_factory=list)  # the quoted units, as cited sources
    # exactly what the model was sent on its last turn and its reply: feedback trains on this
    transcript: list[dict[str, Any]] = field(default_factory=list)
    tools: list[dict[str, Any]] = field(default_factory=list)
    started: float = 0.0  # time.perf_counter() when the question was asked
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage
    cached_from: int | None = None  # served from the answer cache: the audit id of the turn that made the answer
    cache: dict[str, Any] = field(default_factory=dict)  # {created, similarity} of a cache hit
    channel: str = "ui"  # ui | cli | api

    @property
    def sources(self) -> list[dict[str, Any]]:
        return self.shown

    @property
    def guard(self) -> dict[str, Any]:  # the audit column that records the verdict
        return {"outcome": self.outcome, **self.verification}

    def to_dict(self) -> dict[str, Any]:
        return {
            "answer": self.answer, "lead": self.lead, "outcome": self.outcome,
            "model_answer": self.model_answer, "verification": self.verification,
            "verified": self.verification.get("status") == "verified" if self.verification.get("status")
            not in (None, "off", "skipped") else None,
            "sources": self.shown, "standalone": self.standalone,
            "tool_calls": [{"name": t.name, "arguments": t.arguments, "ok": t.ok, "status": t.status,
                            "result": t.result if t.ok else None, "error": t.error, "denied": t.denied,
                            "duration_s": t.duration_s} for t in self.tool_calls],
            "thinking": self.thinking, "latency_s": round(self.latency_s, 3),
            "first_token_s": None if self.first_token_s is None else round(self.first_token_s, 3),
            "retrieved": [asdict(p) | {"score": round(p.score, 4)} for p in self.passages],
            "units": [asdict(u) for u in self.units], "cited": self.cited, "reply": self.reply,
            "relevant": self.relevant, "model": self.model, "adapter": self.adapter, "audit_id": self.audit_id,
            "retrieval_ms": round(self.retrieval_ms, 1), "prefill_s": self.prefill_s,
            "tokens_per_s": self.tokens_per_s, "error": self.error, "kb": self.kb, "status": self.status,
            "transcript": self.transcript, "tools": self.tools,
            "timings": {k: round(v, 3) for k, v in self.timings.items()},
            "prompt_tokens": self.prompt_tokens, "new_tokens": self.new_tokens,
            "cached": self.cached_from is not None, "cached_from": self.cached_from, "cache": self.cache,
        }
