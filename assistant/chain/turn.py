"""The assistant: one pass through the answer path's stages, each a module with one job, one state object
(`Answer`) handed forward:

    standalone    the question as it must be searched (a follow-up written out in full)     chain.standalone
    retrieval     hybrid search within the user's access, and whether anything is relevant   chain.retrieval
    evidence      passages split into numbered units, each with its citation                 chain.evidence
    tools         look-ups and calculations; every attempted call recorded                    chain.calls
    generation    the structured reply: answer + the ids of its units, or a refusal          chain.generation
    verification  figures, conditions, support                                               chain.verification
    composition   answer + quoted units | the units alone | the record | the refusal          chain.composition

Text from outside the model enters prompts only as data (core.control_tokens); what a user may see and do is
decided by core.access from the user alone. Every turn is audited, also when it is interrupted or fails, with
every tool call the model attempted as an event.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, ExitStack
from dataclasses import asdict
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage, SystemMessage

from assistant.backends import ChatBackend, as_backend
from assistant.backends.base import to_template_messages
from assistant.chain import calls, composition, evidence, generation, standalone, verification
from assistant.chain.generation import to_langchain
from assistant.chain.retrieval import HybridRetriever, RetrievalResult
from assistant.chain.state import Answer, Emit, Source, Unit
from assistant.tools.registry import ToolContext, ToolRegistry, ToolResult
from core import db
from core.access import AccessPolicy
from core.answer_cache import AnswerCache, CacheScope
from core.audit import AuditLog, record_event
from core.errors import AssistantError, TurnRefused
from core.identity import User
from core.prompts import answer_messages, is_chinese, system_prompt
from core.settings import Settings

__all__ = ["Answer", "Assistant", "Source", "Unit", "build_assistant", "thinking_switch"]


class _Clock:
    """Seconds per stage into `ans.timings`."""

    def __init__(self, ans: Answer) -> None:
        self.ans, self.t = ans, time.perf_counter()

    def __call__(self, stage: str) -> None:
        now = time.perf_counter()
        self.ans.timings[stage] = now - self.t
        self.t = now


def thinking_switch(question: str, default: bool) -> tuple[str, bool]:
    """Qwen3's soft switches: a trailing or leading /think or /no_think overrides the default."""
    think = default
    for tag, value in (("/no_think", False), ("/think", True)):
        if re.search(rf"(^|\s){re.escape(tag)}(\s|$)", question):
            think = value
            question = re.sub(rf"(^|\s){re.escape(tag)}(?=\s|$)", " ", question)
    return question.strip(), think


Gate = Callable[[], AbstractContextManager[Any]]  # entered while the model is used (assistant.api.admission)

# settings that change no answer: where things run and how the cache and the API behave
_NOT_ANSWER_SETTINGS = {"home", "n_threads", "llamacpp_contexts", "llamacpp_repack", "openai_api_key", "lock_timeout_s"}


def _answer_options(settings: Settings, think: bool) -> str:
    fields = {k: v for k, v in settings.model_dump(mode="json").items()
              if k not in _NOT_ANSWER_SETTINGS and not k.startswith(("api_", "cache"))}
    return json.dumps(fields | {"think": think}, sort_keys=True, default=str)


def cacheable(ans: Answer) -> bool:
    """A finished answer that rests on documents alone: no tool call (a record's state changes at any time), not
    interrupted, no error."""
    return (ans.status == "complete" and not ans.error and not ans.tool_calls
            and ans.outcome in ("answer", "evidence", "refusal"))


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
        """One tool call for `user`, as the tools stage runs it (its context built for this user and turn)."""
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
        channel: str = "ui",
        key_id: str | None = None,
        use_cache: bool | None = None,
        gate: Gate | None = None,
    ) -> Answer:
        """One turn for `user`. `channel` (ui | cli | api) and `key_id` go into the audit; `use_cache` (default: the
        setting) lets a repeated question be answered from the answer cache (core.answer_cache)."""
        t0 = time.perf_counter()
        emit: Emit = on_event or (lambda kind, payload: None)
        question, think = thinking_switch(question, self.settings.thinking if think is None else think)
        kb = kb or self.settings.default_kb
        history = history or []
        ans = Answer(question, "", [], [], model=self.model_name, kb=kb, started=t0, channel=channel)
        scope = None
        try:
            self.check_kb(user, kb)
            ans.adapter = self.resolve_adapter(user, adapter)
            if self.settings.cache if use_cache is None else use_cache:
                scope = self.cache_scope(user, kb, ans.adapter, think)
            self._answer(ans, user, history, kb, think, emit, scope, gate)
        except AssistantError as exc:
            ans.error = str(exc)
            ans.answer = ans.answer or f"⚠ {exc}"
            ans.status, ans.outcome = "error", "error"
        except TurnRefused:  # nothing was done: the caller records the refusal
            ans.status = "refused"
            raise
        except Exception as exc:  # recorded below, then raised: the caller shows it
            ans.error, ans.status, ans.outcome = f"{type(exc).__name__}: {exc}", "error", "error"
            raise
        except BaseException as exc:  # Streamlit's stop/rerun, a closed stream, Ctrl-C: the turn was cut short
            ans.error, ans.status = f"interrupted ({type(exc).__name__})", "partial"
            raise
        finally:  # every turn leaves its record, whatever ended it: tools may already have acted
            if ans.status != "refused":
                self._audit(ans, user, think, conversation_id, time.perf_counter() - t0, key_id)
        if scope is not None and ans.cached_from is None and cacheable(ans):
            self._cache_put(scope, ans)
        return ans

    def _answer(self, ans: Answer, user: User, history: list[dict[str, str]], kb: str, think: bool,
                emit: Emit, scope: CacheScope | None = None, gate: Gate | None = None) -> None:
        """The stages, in order, each once (a question the cache answers ends after the first). `gate` is entered
        before the model is first needed (backpressure), so a cached answer never waits for the engine."""
        s = self.settings
        clock = _Clock(ans)
        with ExitStack() as held:
            if gate is not None and history and s.resolve_followups:
                held.enter_context(gate())
                gate = None
            standalone.resolve(ans, history, self.backend if s.resolve_followups else None)
            if ans.standalone != ans.question:
                emit("status", "followup_resolved")
            clock("standalone")
            if scope is not None and self._cache_get(scope, ans):
                clock("cache")
                emit("status", "cached")
                emit("status", f"outcome_{ans.outcome}")
                return
            if gate is not None:
                held.enter_context(gate())
                clock("queue")
            self._stages(ans, user, kb, think, emit, clock)

    def _stages(self, ans: Answer, user: User, kb: str, think: bool, emit: Emit, clock: _Clock) -> None:
        s = self.settings
        retriever = self._retrieve(ans, user, kb)
        emit("sources", ans.passages)
        scores = evidence.build(ans, ans.standalone, self._scorer(retriever, ans.standalone), s.prompt_passages,
                                s.evidence_units, s.evidence_tokens) if ans.relevant else {}
        clock("retrieval")
        # values a look-up may use: the user's words of this turn (a follow-up's rewrite holds what it refers back to)
        said = " ".join(dict.fromkeys([ans.question, ans.standalone]))
        ans.tools = self.tools.schemas(user, offered_only=True)
        if ans.units or s.route_tools:
            self.warm(user, (is_chinese(ans.standalone),), ans.adapter or "none")
        clock("warm")
        calls.run(ans, self.tools, user, self.tool_context(user, kb), said, self.backend, think, emit, s.route_tools)
        clock("tools")
        if not ans.units:  # nothing relevant and nothing looked up: the model is not asked to improvise
            emit("status", "no_relevant_documents")
        else:
            generation.generate(ans, self.backend, ans.tools, think, emit)
        clock("generation")
        emit("status", "verifying")
        verification.verify(ans, retriever.embed_texts if s.verify_support else None, s.verify_min_support,
                            enabled=s.verify)
        clock("verification")
        composition.compose(ans, scores)
        emit("status", f"outcome_{ans.outcome}")

    def _retrieve(self, ans: Answer, user: User, kb: str) -> HybridRetriever:
        from ingest.store import KnowledgeBase

        t = time.perf_counter()
        if not KnowledgeBase(self.settings, kb).exists():
            raise AssistantError(f"knowledge base '{kb}' is empty; add documents with `ingest add PATH --kb {kb}`")
        res = self.search(ans.standalone, user, kb, self.settings.retrieval_k)
        ans.retrieval_ms = (time.perf_counter() - t) * 1000
        ans.relevant = res.relevant
        if res.relevant:
            ans.passages = [Source(i, r.hit.source, r.hit.page, r.hit.clause or None, r.hit.text, r.score,
                                   r.hit.chunk_id, dense=r.dense, bm25=r.bm25,
                                   path=r.hit.metadata.get("path"), doc_id=r.hit.doc_id,
                                   page_label=r.hit.metadata.get("page_label"),
                                   clauses=list(r.hit.metadata.get("clauses") or []))
                            for i, r in enumerate(res.passages, 1)]
        return self.retriever(kb)

    def _scorer(self, retriever: HybridRetriever, question: str) -> evidence.UnitScorer:
        dense = self.settings.unit_ranking == "hybrid"
        return evidence.UnitScorer(question, retriever.idf, retriever.unit_vectors if dense else None,
                                   retriever.query_vector(question) if dense else None)

    # ---- the answer cache ----------------------------------------------------------------------------
    def cache_scope(self, user: User, kb: str, adapter: str | None, think: bool) -> CacheScope | None:
        """Everything besides the question that decides this user's answer (None: nothing to cache against)."""
        from core import registry
        from ingest.store import KnowledgeBase

        version = KnowledgeBase(self.settings, kb).current_version()
        if version is None:
            return None
        departments = self.access.departments(user)
        name = (adapter or "").split("@")[0]
        return CacheScope(
            kb=kb, kb_version=version,
            departments=("*",) if departments is None else tuple(sorted(d or "" for d in departments)),
            tools=tuple(sorted(t.name for t in self.tools.allowed(user))),
            adapter=name, adapter_state=f"{adapter}|{registry.state_stamp(self.settings, name)}" if name else "",
            model=self.model_name, options=_answer_options(self.settings, think))

    def _cache(self) -> AnswerCache:
        if getattr(self, "_answer_cache", None) is None:
            s = self.settings
            self._answer_cache = AnswerCache(s.cache_db, s.cache_ttl_s, s.cache_max_entries)
        return self._answer_cache

    def _cache_vector(self, kb: str, question: str) -> Any:
        return self.retriever(kb).query_vector(question) if self.settings.cache_semantic else None

    def _cache_get(self, scope: CacheScope, ans: Answer) -> bool:
        """Fill `ans` from the cache if this question has a valid entry in this scope."""
        texts = self.retriever(scope.kb).chunk_texts
        hit = self._cache().get(scope, ans.standalone, texts, self._cache_vector(scope.kb, ans.standalone),
                                self.settings.cache_semantic)
        if hit is None:
            return False
        p = hit.payload
        ans.answer, ans.lead, ans.outcome, ans.shown = p["answer"], p["lead"], p["outcome"], p["sources"]
        ans.model_answer, ans.verification, ans.cited, ans.reply = (p["model_answer"], p["verification"], p["cited"],
                                                                    p["reply"])
        ans.thinking, ans.relevant, ans.transcript = p["thinking"], p["relevant"], p["transcript"]
        ans.tools = p["tools"]
        ans.passages = [Source(**r) for r in p["retrieved"]]
        ans.units = [Unit(**u) for u in p["units"]]
        ans.cached_from = hit.audit_id if hit.audit_id is not None else -1
        ans.cache = {"created": hit.created, "question": hit.question, "similarity": hit.similarity}
        return True

    def _cache_put(self, scope: CacheScope, ans: Answer) -> None:
        # the chunks as stored (a passage may be a chunk widened by its neighbours): what a later hit is checked against
        evidence = self.retriever(scope.kb).chunk_texts([p.chunk_id for p in ans.passages if p.chunk_id])
        self._cache().put(scope, ans.standalone, ans.to_dict(), evidence, ans.audit_id,
                          self._cache_vector(scope.kb, ans.standalone))

    def _audit(self, ans: Answer, user: User, think: bool, conversation_id: str | None, latency_s: float,
               key_id: str | None = None) -> None:
        ans.latency_s = latency_s
        cited_chunks = list(dict.fromkeys(s["chunk_id"] for s in ans.shown if s.get("chunk_id")))
        for p in ans.passages:
            p.cited = p.chunk_id in cited_chunks
        ans.audit_id = self.audit.record(
            user=user.name, role=user.role, department=user.department, conversation_id=conversation_id,
            question=ans.question, kb=ans.kb, model=self.model_name, adapter=ans.adapter, thinking_mode=int(think),
            retrieved=[{"chunk_id": p.chunk_id, "source": p.source, "page": p.page, "score": p.score,
                        "dense": p.dense, "bm25": p.bm25} for p in ans.passages],
            tool_calls=[asdict(t) for t in ans.tool_calls], answer=ans.answer, thinking=ans.thinking,
            cited=cited_chunks, latency_s=ans.latency_s, retrieval_ms=ans.retrieval_ms,
            prefill_s=ans.prefill_s, tokens_per_s=ans.tokens_per_s, error=ans.error, status=ans.status,
            malformed_calls=ans.malformed, guard=ans.guard | {"standalone": ans.standalone, "reply": ans.reply},
            channel=ans.channel, key_id=key_id, cached_from=ans.cached_from,
        )
        who = {"role": user.role, "department": user.department, "turn_id": ans.audit_id}
        for t in ans.tool_calls:  # every attempted call is an event, whatever became of it
            record_event(self.audit, f"tool_{t.status}", user.name, **who, tool=t.name, arguments=t.arguments,
                         error=t.error)
        for problem in ans.malformed:
            record_event(self.audit, "reply_malformed", user.name, **who, error=problem)

    # ---- prompts, for training data and warm-up ------------------------------------------------------
    def prompt_for(self, question: str, user: User, history: list[dict[str, str]] | None = None,
                   kb: str | None = None) -> tuple[list[dict[str, Any]], list[dict], Answer]:
        """Exactly what the model would be sent for this question's answer (before any tool call): training data
        for the chain's behaviour. The follow-up is not resolved (that needs the model)."""
        kb = kb or self.settings.default_kb
        ans = Answer(question, "", [], [], standalone=question, kb=kb)
        self.check_kb(user, kb)
        retriever = self._retrieve(ans, user, kb)
        if ans.relevant:
            evidence.build(ans, question, self._scorer(retriever, question), self.settings.prompt_passages,
                           self.settings.evidence_units, self.settings.evidence_tokens)
        tools = self.tools.schemas(user, offered_only=True)
        messages = answer_messages([u.prompt() for u in ans.units], question, tools)
        return to_template_messages(to_langchain(messages)), tools, ans

    def warm(self, user: User, chinese: tuple[bool, ...] = (True, False), adapter: str | None = None) -> int:
        """Prefill the constant prompt prefix (the rules and the tools this user may be offered, with the adapter
        their questions use) per language, where the backend keeps it (llama.cpp): a question then prefills only
        its evidence. Returns how many prefixes were prefilled now (0 when all were kept already)."""
        warm = getattr(self.backend, "warm", None)
        if warm is None:
            return 0
        tools = self.tools.schemas(user, offered_only=True)
        adapter = self.resolve_adapter(user, adapter)
        done = 0
        for zh in chinese:  # the per-question part starts with the evidence's heading
            done += bool(warm([SystemMessage(system_prompt(zh, tools)), HumanMessage("资料：" if zh else "Documents:")],
                              [], adapter))
        return done


def build_assistant(settings: Settings, runtime: Any = None, chat: ChatBackend | BaseChatModel | None = None,
                    tools: ToolRegistry | None = None, kb_access: dict[str, set[str]] | None = None) -> Assistant:
    """The assistant over the configured backend, the configured tool plug-ins and the audit log."""
    from assistant.backends import make_backend
    from assistant.tools.plugins import load_tools

    db.use_settings(settings)  # every server process builds its chain here: its stores follow database_url
    backend = as_backend(chat, settings) if chat is not None else make_backend(settings, runtime)
    if kb_access is None:
        kb_access = {kb: set(depts) for kb, depts in settings.kb_access.items()}
    # search_documents gets no fixed search here: each turn hands it the asking user's (Assistant.tool_context)
    tools = tools if tools is not None else load_tools(settings)
    return Assistant(settings, backend, tools, AuditLog(settings.audit_db), backend.name, kb_access)
