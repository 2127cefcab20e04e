"""The assistant chain: retrieve -> prompt with numbered passages -> model (with the user's adapter) ->
tool loop -> cited answer, streamed, permission-checked and audited.

Retrieved text and tool results only ever enter the prompt as data, with chat-template control-token strings
neutralised (core.control_tokens); what a user may do and see (knowledge bases, documents, tools) is decided
by core.access from the user alone, for chat retrieval and the search tool alike, so a poisoned document
cannot grant itself anything. Every turn is audited, also when it is interrupted or fails.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage

from assistant.backends import ChatBackend, ModelTurn, as_backend
from assistant.backends.base import TurnStats, to_template_messages
from assistant.chain.guard import apply_guard, as_history, figures, restates, source_keys
from assistant.chain.retrieval import HybridRetriever, RetrievalResult
from assistant.chain.routing import route
from assistant.chain.sentences import focus
from assistant.tools.registry import ToolContext, ToolRegistry, ToolResult
from core.access import AccessPolicy
from core.audit import AuditLog, record_event
from core.control_tokens import neutralise
from core.errors import AssistantError
from core.identity import User
from core.prompts import CITATION, Passage, chat_messages, is_chinese, is_refusal, no_answer, system_prompt
from core.settings import Settings
from core.toolcalls import parse_output

Emit = Callable[[str, Any], None]  # (kind, payload): token | thinking | tool | sources | status
_THINK_OPEN, _THINK_CLOSE, _CALL = "<think>", "</think>", "<tool_call>"


def _neutral(value: Any) -> Any:
    """`neutralise` on every string inside a JSON-like value."""
    if isinstance(value, str):
        return neutralise(value)
    if isinstance(value, dict):
        return {neutralise(str(k)): _neutral(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_neutral(v) for v in value]
    return value


class CallStarted(Exception):
    """Raised from the stream when the model starts a tool call that the chain would not run anyway."""


class Looping(Exception):
    """Raised from the stream when the answer has fallen into repeating itself ("1000000000…")."""


def loop_start(text: str) -> int | None:
    """Where a text's trailing repetition begins, if it ends in one: 32+ characters made of 10+ copies of one unit
    of 1-8 characters (a small model's greedy decoding falls into such loops, "1000000000…", and would otherwise
    run to the token limit: 40 s of zeros on a 2-core CPU)."""
    best: int | None = None
    for size in range(1, 9):
        unit = text[-size:]
        if len(unit) < size:
            break
        at = len(text) - size
        while at >= size and text[at - size:at] == unit:
            at -= size
        if len(text) - at >= 32 and (len(text) - at) // size >= 10:
            best = at if best is None else min(best, at)
    return best


class StreamRouter:
    """Splits streamed model text into thinking and answer pieces; tool-call markup is never shown.
    With `stop_on_call`, the start of a call ends the turn at once (CallStarted): no tokens are spent on it.
    With `stop_looping`, an answer that starts repeating itself ends the turn (Looping); `shown` keeps the text
    before the loop."""

    def __init__(self, emit: Emit, stop_on_call: bool = False, stop_looping: bool = False) -> None:
        self.emit = emit
        self.buf = ""
        self.state = "start"  # start | think | answer | tool
        self.stop_on_call = stop_on_call
        self.stop_looping = stop_looping
        self.shown = ""
        self.t0 = time.perf_counter()
        self.first_piece_s: float | None = None

    def _answer(self, text: str) -> None:
        self.emit("token", text)
        self.shown += text
        if self.stop_looping:
            at = loop_start(self.shown)
            if at is not None:
                self.shown = self.shown[:at]
                raise Looping

    def _safe(self, tags: tuple[str, ...]) -> int:
        """How much of the buffer can go out now: keep back a tail that may begin one of `tags`."""
        for n in range(min(len(self.buf), max(len(t) for t in tags) - 1), 0, -1):
            if any(t.startswith(self.buf[-n:]) for t in tags):
                return len(self.buf) - n
        return len(self.buf)

    def feed(self, piece: str) -> None:
        if self.first_piece_s is None:
            self.first_piece_s = time.perf_counter() - self.t0
        self.buf += piece
        while self.buf:
            if self.state == "start":
                stripped = self.buf.lstrip()
                if not stripped:
                    return
                if stripped.startswith(_THINK_OPEN):
                    self.buf, self.state = stripped[len(_THINK_OPEN):], "think"
                elif _THINK_OPEN.startswith(stripped):
                    return  # could still become <think>
                elif stripped.startswith("{"):
                    self.state = "json"  # small models write bare JSON tool calls: hold it until it is whole
                    if self.stop_on_call:
                        raise CallStarted
                else:
                    self.state = "answer"
            elif self.state == "think":
                idx = self.buf.find(_THINK_CLOSE)
                if idx >= 0:
                    self.emit("thinking", self.buf[:idx])
                    self.buf, self.state = self.buf[idx + len(_THINK_CLOSE):].lstrip("\n"), "answer"
                    continue
                n = self._safe((_THINK_CLOSE,))
                if n:
                    self.emit("thinking", self.buf[:n])
                    self.buf = self.buf[n:]
                return
            elif self.state == "answer":
                m = re.search(r"<tool_call>|```", self.buf)
                if m:
                    before = self.buf[: m.start()]
                    self.buf, self.state = "", "tool"
                    if before:
                        self._answer(before)
                    if self.stop_on_call:
                        raise CallStarted
                    return
                n = self._safe((_CALL, "```"))
                if n:
                    out, self.buf = self.buf[:n], self.buf[n:]
                    self._answer(out)
                return
            elif self.state == "json":
                return
            else:  # tool: swallowed; the chain reports the parsed call instead
                self.buf = ""
                return

    def finish(self) -> None:
        if self.state == "json":
            parsed = parse_output(self.buf)
            if parsed.calls or parsed.errors:
                self.buf = ""  # a tool call (or a broken one): the chain reports it, the user never sees JSON
            self.state = "answer"
        if self.buf and self.state in ("answer", "start"):
            self.emit("token", self.buf)
            self.shown += self.buf
        elif self.buf and self.state == "think":
            self.emit("thinking", self.buf)
        self.buf = ""


@dataclass
class Source:
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


@dataclass
class Answer:
    question: str
    answer: str
    passages: list[Source]
    tool_calls: list[ToolResult]
    thinking: str = ""
    relevant: bool = True
    model: str = ""
    adapter: str | None = None
    latency_s: float = 0.0
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
    malformed: list[str] = field(default_factory=list)  # malformed tool calls the model wrote
    # exactly what the model was sent on its last turn (system, history, question, tool calls with any text
    # beside them, tool results and malformed-call errors) and the tools it was shown: feedback trains on this
    transcript: list[dict[str, Any]] = field(default_factory=list)
    tools: list[dict[str, Any]] = field(default_factory=list)
    guard: dict[str, Any] | None = None  # the grounding guard's verdict: {status, unsupported figures}

    @property
    def sources(self) -> list[Source]:
        return [p for p in self.passages if p.cited]

    def to_dict(self) -> dict[str, Any]:
        return {
            "answer": self.answer,
            "sources": [{"n": s.n, "source": s.source, "page": s.page, "page_label": s.page_label,
                         "clause": s.clause, "text": s.text, "score": round(s.score, 4), "chunk_id": s.chunk_id,
                         "doc_id": s.doc_id, "path": s.path} for s in self.sources],
            "tool_calls": [{"name": t.name, "arguments": t.arguments, "result": t.result if t.ok else None,
                            "error": t.error, "denied": t.denied, "duration_s": t.duration_s}
                           for t in self.tool_calls],
            "thinking": self.thinking,
            "latency_s": round(self.latency_s, 3),
            "retrieved": [asdict(p) | {"score": round(p.score, 4)} for p in self.passages],
            "relevant": self.relevant, "model": self.model, "adapter": self.adapter, "audit_id": self.audit_id,
            "retrieval_ms": round(self.retrieval_ms, 1), "prefill_s": self.prefill_s,
            "tokens_per_s": self.tokens_per_s, "error": self.error, "kb": self.kb, "status": self.status,
            "transcript": self.transcript, "tools": self.tools, "guard": self.guard,
        }


def thinking_switch(question: str, default: bool) -> tuple[str, bool]:
    """Qwen3's soft switches: a trailing or leading /think or /no_think overrides the default."""
    think = default
    for tag, value in (("/no_think", False), ("/think", True)):
        if re.search(rf"(^|\s){re.escape(tag)}(\s|$)", question):
            think = value
            question = re.sub(rf"(^|\s){re.escape(tag)}(?=\s|$)", " ", question)
    return question.strip(), think


MAX_CALLS_PER_TURN = 4
_CALL_TEXT = re.compile(r'^\s*(?:```(?:json)?\s*)?[\[{]|"name"\s*:\s*"[^"]+"\s*,\s*"arguments"|<tool_call>')
_RECORD_ID = re.compile(r"(?<![A-Za-z0-9])[A-Z]{2,}-\d[A-Z0-9]*(?:-[A-Z0-9]+)*")


def _looks_like_a_call(text: str) -> bool:
    """Tool-call JSON or a bare JSON object where an answer should be (a small model's loop)."""
    return bool(_CALL_TEXT.search(text))


def _call_key(call: dict[str, Any]) -> str:
    """A call as name + arguments: what makes two calls the same look-up."""
    return json.dumps([call["name"], call["args"]], sort_keys=True, ensure_ascii=False)


def _unasked_ids(arguments: dict[str, Any], asked: str) -> list[str]:
    """Record ids (POL-2024-0001, ORD-5001) in a call's arguments that the user never wrote."""
    found = [m.group(0) for v in arguments.values() if isinstance(v, str) for m in _RECORD_ID.finditer(v.upper())]
    return [x for x in dict.fromkeys(found) if x not in asked]


_FIGURE = re.compile(r"(?<![A-Za-z0-9_.,])(\d[\d,]*(?:\.\d+)?)(?![\d])\s*([%％折])?")


def _value(text: str) -> float | None:
    try:
        return round(float(text.replace(",", "")), 9)
    except ValueError:
        return None


def left_out_figures(expression: str, question: str) -> list[str]:
    """Figures the question states that a calculation does not use (record ids and years aside): a small model
    computes part of a word problem ("850 - 100" for "850 元扣除 100 元免赔额后按 90% 赔付") and words it as the
    answer.
    A percentage counts as used as p or p/100, a discount (8 折, 95 折) also as its fraction."""
    used = {v for m in _FIGURE.finditer(expression) if (v := _value(m.group(1))) is not None}
    missing = []
    for m in _FIGURE.finditer(_RECORD_ID.sub(" ", question)):
        v = _value(m.group(1))
        if v is None or (not m.group(2) and re.fullmatch(r"(?:19|20)\d\d", m.group(1))):
            continue
        forms = {v}
        if m.group(2):
            forms.add(round(v / (10 if m.group(2) == "折" and v < 10 else 100), 9))
        if not forms & used:
            missing.append(m.group(0).strip())
    return list(dict.fromkeys(missing))


def _words_the_results(answer: str, question: str, results: list[ToolResult],
                       history: list[dict[str, str]]) -> bool:
    """Whether an answer to a looked-up question says something of its own (not the question again) and every
    figure in it stands in a result, the question or the user's earlier words."""
    if restates(answer, question):
        return False
    known = source_keys([t.for_model() for t in results] + [question] +
                        [h["content"] for h in history if h.get("role") == "user"])
    return all(keys & known for _, keys in figures(answer))


def _cell(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return text.replace("\n", " ")


def _record_markdown(value: Any) -> str:
    """A tool result for reading: a record as `field: value` lines, a list of records one per line."""
    if isinstance(value, dict):
        return "\n".join(f"- {k}: {_cell(v)}" for k, v in value.items())
    if isinstance(value, list) and value and all(isinstance(r, dict) for r in value):
        return "\n".join("- " + ", ".join(f"{k}: {_cell(v)}" for k, v in r.items()) for r in value)
    return _cell(value)


def tool_results_answer(results: list[ToolResult], question: str) -> str:
    """Successful tool results as the answer, verbatim and readable, when the model did not word them."""
    if not results:
        return ""
    zh = is_chinese(question)
    # plain text: the chat shows tool output literally (ui.safe_markdown), so no emphasis or code marks
    def called(t: ToolResult) -> str:  # what was looked up or computed, so a wrong argument is seen
        args = ", ".join(f"{k}: {_cell(v)}" for k, v in (t.arguments or {}).items())
        return f"{t.name}（{args}）" if zh and args else f"{t.name} ({args})" if args else t.name

    parts = [f"{'查询结果' if zh else 'Result of'} {called(t)}{'：' if zh else ':'}\n\n{_record_markdown(t.result)}"
             for t in results]
    return "\n\n".join(parts)


class Assistant:
    def __init__(
        self,
        settings: Settings,
        chat: ChatBackend | BaseChatModel,
        tools: ToolRegistry,
        audit: AuditLog,
        model_name: str,
        kb_access: dict[str, set[str]] | None = None,
    ) -> None:
        self.settings = settings
        self.backend = as_backend(chat, settings)
        self.tools = tools
        self.audit = audit
        self.model_name = model_name
        self.kb_access = kb_access if kb_access is not None else {}
        self.access = AccessPolicy(self.kb_access)  # the one access decision (shares the dict)
        self._retrievers: dict[tuple[str, str | None], HybridRetriever] = {}

    # ---- what the user may see -------------------------------------------------------------------
    def retriever(self, kb: str) -> HybridRetriever:
        from ingest.store import KnowledgeBase

        version = KnowledgeBase(self.settings, kb).current_version()
        key = (kb, version)
        if key not in self._retrievers:  # reloaded when the knowledge base changed
            self._retrievers = {k: v for k, v in self._retrievers.items() if k[0] != kb}
            self._retrievers[key] = HybridRetriever(self.settings, kb)
        return self._retrievers[key]

    def check_kb(self, user: User, kb: str) -> None:
        self.access.check_kb(user, kb)

    def search(self, query: str, user: User, kb: str, k: int) -> RetrievalResult:
        """The knowledge-base search of every path (chat retrieval, the search tool): the user's knowledge
        base and document filter, both decided by core.access."""
        self.check_kb(user, kb)
        return self.retriever(kb).retrieve(query, k, departments=self.access.departments(user))

    def tool_context(self, user: User, kb: str) -> ToolContext:
        """What the tools reach during this user's turn: `search_documents` searches exactly as the chat does."""

        def search(query: str) -> list[dict]:
            from ingest.store import KnowledgeBase

            if not KnowledgeBase(self.settings, kb).exists():
                return [{"error": f"knowledge base '{kb}' is empty"}]
            res = self.search(query, user, kb, 3)
            return [{"source": p.hit.source, "page": p.hit.page, "clause": p.hit.clause, "text": p.hit.text[:400]}
                    for p in res.passages]

        return ToolContext(user, kb, search)

    def run_tool(self, name: str, arguments: dict[str, Any], user: User, kb: str | None = None) -> ToolResult:
        """One tool call for `user`, as the tool loop runs it (its context built for this user and turn)."""
        return self.tools.execute(name, arguments, user, self.tool_context(user, kb or self.settings.default_kb))

    def resolve_adapter(self, user: User, requested: str | None) -> str | None:
        from core import registry

        if requested:
            return requested if requested != "none" else None
        if self.settings.adapter:
            return self.settings.adapter if self.settings.adapter != "none" else None
        names = registry.list_names(self.settings)
        for name in (user.department, self.settings.default_adapter):
            if name and name in names:
                try:
                    return registry.get(self.settings, name).ref
                except AssistantError:
                    continue  # no active version
        return None

    # ---- one turn ----------------------------------------------------------------------------------
    def ask(
        self,
        question: str,
        user: User,
        history: list[dict[str, str]] | None = None,
        kb: str | None = None,
        adapter: str | None = None,
        think: bool | None = None,
        on_event: Emit | None = None,
        conversation_id: str | None = None,
    ) -> Answer:
        t0 = time.perf_counter()
        emit: Emit = on_event or (lambda kind, payload: None)
        question, think = thinking_switch(question, self.settings.thinking if think is None else think)
        kb = kb or self.settings.default_kb
        history = history or []
        ans = Answer(question, "", [], [], model=self.model_name, kb=kb)
        try:
            self.check_kb(user, kb)
            ans.adapter = self.resolve_adapter(user, adapter)
            retrieved = self._retrieve(question, history, kb, user, ans)
            emit("sources", ans.passages)
            self._generate(question, history, retrieved, user, think, ans, emit)
        except AssistantError as exc:
            ans.error = str(exc)
            ans.answer = ans.answer or f"⚠ {exc}"
            ans.status = "error"
        except Exception as exc:  # recorded below, then raised: the caller shows it
            ans.error, ans.status = f"{type(exc).__name__}: {exc}", "error"
            raise
        except BaseException as exc:  # Streamlit's stop/rerun, a closed stream, Ctrl-C: the turn was cut short
            ans.error, ans.status = f"interrupted ({type(exc).__name__})", "partial"
            raise
        finally:  # every turn leaves its record, whatever ended it: tools may already have acted
            self._audit(ans, user, think, conversation_id, time.perf_counter() - t0)
        return ans

    def _audit(self, ans: Answer, user: User, think: bool, conversation_id: str | None, latency_s: float) -> None:
        ans.latency_s = latency_s
        ans.audit_id = self.audit.record(
            user=user.name, role=user.role, department=user.department, conversation_id=conversation_id,
            question=ans.question, kb=ans.kb, model=self.model_name, adapter=ans.adapter, thinking_mode=int(think),
            retrieved=[{"chunk_id": p.chunk_id, "source": p.source, "page": p.page, "score": p.score,
                        "dense": p.dense, "bm25": p.bm25} for p in ans.passages],
            tool_calls=[asdict(t) for t in ans.tool_calls], answer=ans.answer, thinking=ans.thinking,
            cited=[p.chunk_id for p in ans.sources], latency_s=ans.latency_s, retrieval_ms=ans.retrieval_ms,
            prefill_s=ans.prefill_s, tokens_per_s=ans.tokens_per_s, error=ans.error, status=ans.status,
            malformed_calls=ans.malformed, guard=ans.guard,
        )
        who = {"role": user.role, "department": user.department, "turn_id": ans.audit_id}
        for t in ans.tool_calls:  # also as events, so that refusals can be reviewed without reading every turn
            if t.denied:
                record_event(self.audit, "tool_denied", user.name, **who, tool=t.name, arguments=t.arguments,
                             error=t.error)
        for err in ans.malformed:
            record_event(self.audit, "tool_malformed", user.name, **who, error=err)

    def _retrieve(self, question: str, history: list[dict[str, str]], kb: str, user: User,
                  ans: Answer) -> RetrievalResult:
        from ingest.store import KnowledgeBase

        t = time.perf_counter()
        if not KnowledgeBase(self.settings, kb).exists():
            raise AssistantError(f"knowledge base '{kb}' is empty; add documents with `ingest add PATH --kb {kb}`")
        last_user = next((h["content"] for h in reversed(history) if h["role"] == "user"), "")
        res = None
        if last_user and len(question) < 40:
            # a short follow-up ("and for disability?") is searched together with the previous question; what
            # that finds counts only if it is relevant and holds some of the follow-up's own words (half the
            # coverage asked of a question alone: a follow-up leans on the previous one for the rest). 年终奖
            # asked after a claims question, or 犹豫期多长 after an off-topic one, is searched alone
            joint = self.search(f"{last_user} {question}", user, kb, self.settings.retrieval_k)
            own = self.retriever(kb).coverage(question, joint.passages[:2])
            res = joint if joint.relevant and own >= self.settings.min_coverage / 2 else None
        if res is None:
            res = self.search(question, user, kb, self.settings.retrieval_k)
        ans.retrieval_ms = (time.perf_counter() - t) * 1000
        ans.relevant = res.relevant
        if res.relevant:
            ans.passages = [Source(i, r.hit.source, r.hit.page, r.hit.clause or None, r.hit.text, r.score,
                                   r.hit.chunk_id, dense=r.dense, bm25=r.bm25,
                                   path=r.hit.metadata.get("path"), doc_id=r.hit.doc_id,
                                   page_label=r.hit.metadata.get("page_label"))
                            for i, r in enumerate(res.passages, 1)]
        return res

    def prompt_passages(self, ans: Answer) -> list[Source]:
        """The passages the model is shown: the best `prompt_passages` of those retrieved (numbered 1.., as cited)."""
        return ans.passages[:self.settings.prompt_passages]

    @staticmethod
    def messages(question: str, history: list[dict[str, str]], passages: list[Source],
                 passage_chars: int | None = None) -> list[BaseMessage]:
        """The prompt (core.prompts.chat_messages, as the training data renders it): the constant rules, the
        recent history, then this turn's numbered passages and question; text from outside the model cannot
        forge control tokens (core.control_tokens)."""
        # a long passage is cut to its sentences that answer the question: less to prefill, less to get lost in
        limit = passage_chars or 10**9
        numbered = [Passage(neutralise(p.source), neutralise(focus(p.text, question, limit)),
                            p.page, neutralise(p.clause) if p.clause else p.clause, p.page_label) for p in passages]
        recent = [{"role": h["role"], "content": neutralise(as_history(h["content"]) if h["role"] == "assistant"
                                                            else h["content"])} for h in history[-6:]]
        kinds = {"system": SystemMessage, "user": HumanMessage, "assistant": AIMessage}
        return [kinds[m["role"]](m["content"]) for m in chat_messages(numbered, neutralise(question), recent)]

    def prompt_for(self, question: str, user: User, history: list[dict[str, str]] | None = None,
                   kb: str | None = None) -> tuple[list[dict[str, Any]], list[dict], Answer]:
        """Exactly what the model would be sent for this question (training data for chain behaviour)."""
        ans = Answer(question, "", [], [])
        self.check_kb(user, kb or self.settings.default_kb)
        self._retrieve(question, history or [], kb or self.settings.default_kb, user, ans)
        msgs = self.messages(question, history or [], self.prompt_passages(ans), self.settings.passage_chars)
        return to_template_messages(msgs), self.tools.schemas(user), ans

    def warm(self, user: User, chinese: tuple[bool, ...] = (True, False), adapter: str | None = None) -> int:
        """Prefill the constant prompt prefix (the rules and this user's tool schemas, with the adapter their
        questions use) per language, where the backend keeps it (llama.cpp): a question then prefills only its
        passages. Returns how many prefixes were prefilled now (0 when all were kept already); meant for a
        background thread at login, and done before a question's first model turn otherwise."""
        warm = getattr(self.backend, "warm", None)
        if warm is None:
            return 0
        tools = self.tools.schemas(user)
        adapter = self.resolve_adapter(user, adapter)
        done = 0
        for zh in chinese:  # the per-question part starts with the passages' heading
            done += bool(warm([SystemMessage(system_prompt(zh)), HumanMessage("资料：" if zh else "Passages:")],
                              tools, adapter))
        return done

    def _model_turn(self, messages: list[BaseMessage], tools: list[dict], think: bool, adapter: str | None,
                    emit: Emit, stop_on_call: bool = False) -> ModelTurn:
        # only a backend that frees its engine when its stream is abandoned may be cut short (llama.cpp);
        # the transformers runtime's generate() thread would run on after the turn
        early = getattr(self.backend, "stops_early", False)
        router = StreamRouter(emit, stop_on_call and early, stop_looping=early)
        try:
            turn = self.backend.turn(messages, tools, think=think, adapter=adapter, on_text=router.feed)
        except (CallStarted, Looping) as stop:
            now = time.perf_counter() - router.t0
            cut = {"cut_at_call": True} if isinstance(stop, CallStarted) else {"cut_looping": True}
            # a loop keeps what came before it; the guard then judges that like any answer
            content = router.shown.rstrip() if isinstance(stop, Looping) else ""
            return ModelTurn(AIMessage(content=content, additional_kwargs=cut),
                             TurnStats(prefill_s=router.first_piece_s or now, total_s=now))
        router.finish()
        return turn

    def _generate(self, question: str, history: list[dict[str, str]], retrieved: RetrievalResult, user: User,
                  think: bool, ans: Answer, emit: Emit) -> None:
        messages = self.messages(question, history, self.prompt_passages(ans), self.settings.passage_chars)
        tools = self.tools.schemas(user)
        thinking: list[str] = []
        final = ""
        done: set[str] = set()  # calls already run this turn, as name + arguments
        nudged: set[str] = set()  # calculations sent back once for a figure they left out
        routed = route(question, self.tools.allowed(user)) if self.settings.route_tools else []
        if routed:  # the question names the record (or the sum): look it up first, the model answers from it
            context = self.tool_context(user, ans.kb or self.settings.default_kb)
            calls = [{"name": c.name, "args": c.arguments, "id": f"call_routed_{i}", "type": "tool_call"}
                     for i, c in enumerate(routed)]
            messages.append(AIMessage(content="", tool_calls=[dict(c, args=_neutral(c["args"])) for c in calls]))
            for call in calls:
                self._run_call(call, user, context, ans, messages, emit)
                done.add(_call_key(call))
            emit("status", "tool_routed")
        # the constant prefix as a kept KV snapshot: whichever context this question gets, it prefills only the rest
        self.warm(user, (is_chinese(question),), ans.adapter or "none")
        for step in range(1, self.settings.max_tool_steps + 1):
            ans.steps = step
            # after a routed look-up the model's one job is to word the result: a call instead is not run, so it
            # is not waited for either (a 0.5B model wrote 384 tokens of invented calls here)
            turn = self._model_turn(messages, tools, think, ans.adapter, emit,
                                    stop_on_call=bool(routed) and any(t.ok for t in ans.tool_calls))
            msg = turn.message
            if ans.prefill_s is None:  # the first turn's figures: what the user waited for
                ans.prefill_s, ans.tokens_per_s = round(turn.stats.prefill_s, 3), round(turn.stats.tokens_per_s, 2)
                ans.prompt_tokens, ans.new_tokens = turn.stats.prompt_tokens, turn.stats.new_tokens
            if msg.additional_kwargs.get("reasoning_content"):
                thinking.append(msg.additional_kwargs["reasoning_content"])
            errors = msg.additional_kwargs.get("tool_call_errors") or []
            results = [t for t in ans.tool_calls if t.ok]
            if msg.tool_calls:  # one run per distinct call, a few per turn (a small model wrote one call 33 times)
                unique = {_call_key(c): c for c in msg.tool_calls}
                msg.tool_calls = list(unique.values())[:MAX_CALLS_PER_TURN]
            if not msg.tool_calls and not errors:
                final = str(msg.content)
                if results and (not final.strip() or _looks_like_a_call(final) or is_refusal(final)):
                    # nothing, JSON where the answer should be, or "the documents do not say" with the record in hand
                    final = tool_results_answer(results, question)
                break
            keys = [_call_key(c) for c in msg.tool_calls]
            if (routed and results) or (all(k in done for k in keys) and (msg.tool_calls or results)):
                # after a routed look-up the model's one job is to word the result, and a call instead means it will
                # not; or it asks again for what it already has, or writes a broken call after getting it (small
                # models loop here until the step limit): the answer is the result as it came back, or none
                final = tool_results_answer(results, question)
                emit("status", "tool_result_shown" if final else "tool_loop_stopped")
                break
            done.update(keys)
            # a turn with only malformed calls keeps its raw text, so the model sees what it got wrong
            shown = str(msg.content) if msg.tool_calls else str(msg.additional_kwargs.get("raw", msg.content))
            # the calls as the model will read them back: argument text (maybe copied from a passage) stays text
            messages.append(AIMessage(content=shown, tool_calls=[dict(c, args=_neutral(c["args"]))
                                                                 for c in msg.tool_calls]))
            context = self.tool_context(user, ans.kb or self.settings.default_kb)
            asked = " ".join([question, *(h["content"] for h in history if h.get("role") == "user")]).upper()
            if msg.tool_calls and all(_unasked_ids(c["args"], asked) for c in msg.tool_calls) and not errors:
                # only records nobody named: a model that invents a look-up seldom recovers from being told so;
                # the refusals are recorded and the answer comes from the passages (the guard) instead
                for call in msg.tool_calls:
                    self._run_call(call, user, context, ans, None, emit, asked)
                final = ""
                break
            for call in msg.tool_calls:
                if self._sent_back(call, question, ans, messages, emit, nudged):
                    done.discard(_call_key(call))  # the same call again is then run as written
                    continue
                self._run_call(call, user, context, ans, messages, emit, asked)
            for err in errors:  # tell the model what was wrong so it can retry
                ans.malformed.append(err)
                messages.append(ToolMessage(neutralise(json.dumps({"error": f"malformed tool call: {err}. Use "
                                                                   '<tool_call>{"name": ..., "arguments": {...}}'
                                                                   "</tool_call>."})),
                                            tool_call_id="invalid"))
        else:
            final = tool_results_answer([t for t in ans.tool_calls if t.ok], question)
        if _looks_like_a_call(final):
            final = ""  # never show call markup as an answer: the guard quotes a passage or refuses
        results = [t for t in ans.tool_calls if t.ok]
        if routed and results and final and not _words_the_results(final, question, results, history):
            # the record was looked up for this question: an answer that only echoes the question or states a
            # figure the record does not hold is worse than the record itself
            final = tool_results_answer(results, question)
            emit("status", "tool_result_shown")
        ans.thinking = "\n\n".join(t for t in thinking if t)
        ans.transcript, ans.tools = to_template_messages(messages), tools
        used_tools = any(t.ok for t in ans.tool_calls)
        if not retrieved.relevant and not used_tools and not ans.tool_calls:
            # nothing relevant retrieved and no business data looked up: do not let the model improvise
            final = no_answer(question)
            emit("status", "no_relevant_documents")
        ans.answer = self._cite(final, ans)
        apply_guard(ans, question, history, self.settings.guard_uncited, self.settings.guard_figures, emit)

    def _sent_back(self, call: dict[str, Any], question: str, ans: Answer, messages: list[BaseMessage],
                   emit: Emit, nudged: set[str]) -> bool:
        """A calculation that leaves out a figure of the question goes back to the model once, naming it; the model
        either completes it or repeats it (then it runs as written)."""
        t = self.tools.tools.get(call["name"])
        arg = ((t.metadata or {}).get("uses_figures") if t is not None else None)
        value = call["args"].get(arg) if arg and isinstance(call["args"], dict) else None
        key = _call_key(call)
        if not isinstance(value, str) or key in nudged or not (missing := left_out_figures(value, question)):
            return False
        nudged.add(key)
        if is_chinese(question):
            why = (f"未执行：问题中还有 {'、'.join(missing)}。"
                   f"请再次调用 {call['name']}，{arg} 要用上问题中所有相关的数字")
        else:
            why = (f"not run: the question also gives {', '.join(missing)}. Call {call['name']} again with one {arg} "
                   "that uses every figure of the question the answer depends on")
        result = ToolResult(call["name"], call["args"], ok=False, error=why)
        ans.tool_calls.append(result)
        emit("tool", result)
        messages.append(ToolMessage(neutralise(result.for_model()), tool_call_id=call["id"], name=call["name"]))
        return True

    def _run_call(self, call: dict[str, Any], user: User, context: ToolContext, ans: Answer,
                  messages: list[BaseMessage] | None, emit: Emit, asked: str | None = None) -> None:
        """One tool call of the turn: run it (a record id nobody in `asked` named is not looked up: small models
        copy the schema's example id), record and show it, and hand the result to the model (`messages`)."""
        unasked = _unasked_ids(call["args"], asked) if asked is not None else []
        if unasked:
            result = ToolResult(call["name"], call["args"], ok=False, error=(
                f"{', '.join(unasked)} was not given by the user: do not look up records the user did not name; "
                "answer from the passages, or ask for the number"))
        else:
            result = self.tools.execute(call["name"], call["args"], user, context)
        ans.tool_calls.append(result)  # before anything else can interrupt the turn: it may have acted
        emit("tool", result)
        if messages is not None:
            messages.append(ToolMessage(neutralise(result.for_model()), tool_call_id=call["id"], name=call["name"]))

    @staticmethod
    def _cite(text: str, ans: Answer) -> str:
        """Mark cited passages; drop [n] markers that point at no passage (a model's invention)."""
        valid = {p.n for p in ans.passages}

        def keep(m: re.Match[str]) -> str:
            n = int(m.group(1))
            if n in valid:
                ans.passages[n - 1].cited = True
                return m.group(0)
            return ""

        return CITATION.sub(keep, text).strip()


def build_assistant(settings: Settings, runtime: Any = None, chat: ChatBackend | BaseChatModel | None = None,
                    tools: ToolRegistry | None = None, kb_access: dict[str, set[str]] | None = None) -> Assistant:
    """The assistant over the configured backend, the configured tool plug-ins and the audit log."""
    from assistant.backends import make_backend
    from assistant.tools.plugins import load_tools

    backend = as_backend(chat, settings) if chat is not None else make_backend(settings, runtime)
    if kb_access is None:
        kb_access = {kb: set(depts) for kb, depts in settings.kb_access.items()}
    # search_documents gets no fixed search here: each turn hands it the asking user's (Assistant.tool_context)
    tools = tools if tools is not None else load_tools(settings)
    return Assistant(settings, backend, tools, AuditLog(settings.audit_db), backend.name, kb_access)
