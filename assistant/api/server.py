"""The HTTP API over the chain (`assistant serve`): OpenAI's chat completions (plain and streamed), the models a key
may use, search alone, health, readiness and Prometheus metrics.

Every request is answered by the same `Assistant.ask` as the chat page: the same access rules (the key acts as its
user, read afresh on every request), tools, verification, answer cache and audit (channel `api`, the key's id).
What a response says beyond OpenAI's shape goes into extra top-level fields (`sources`, `tool_calls`,
`verification`, `outcome`, `cached`, `audit_id`), which OpenAI clients keep and ignore.

Streaming: the answer text is sent once it stands. With verification on (the default) the model's words are
checked before anyone reads them, so they go out after verification, followed by the quoted units; with
verification off they stream as the model writes them. A client that disconnects cancels the generation at the
next token, and the turn is audited as `partial`.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, contextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import ValidationError

from assistant.api import metrics
from assistant.api.admission import EngineBusy, EngineGate
from assistant.api.requests import BadRequest, ChatRequest, FeedbackRequest, RetrieveRequest, conversation
from assistant.app import api_keys
from assistant.app.api_keys import ApiKey, KeyRejected, LimitExceeded
from assistant.app.feedback import turn_example
from core import feedback as feedback_store
from core.access import AccessDenied
from core.audit import AuditLog, record_event
from core.errors import AssistantError
from core.identity import User
from core.settings import Settings

MAX_BODY = 4 * 1024 * 1024  # bytes; larger bodies are refused before they are read


class ClientGone(BaseException):  # noqa: N818 (BaseException: it ends the turn as an interruption, never an error)
    """The client disconnected: raised inside the chain at its next event, so the generation stops."""


def _error(status: int, message: str, code: str, param: str | None = None,
           retry_after: int | None = None) -> JSONResponse:
    kind = ("invalid_request_error" if status in (400, 404, 413, 422) else "authentication_error" if status == 401
            else "permission_error" if status == 403 else "rate_limit_error" if status == 429 else "server_error")
    headers = {"Retry-After": str(retry_after)} if retry_after else None
    return JSONResponse({"error": {"message": message, "type": kind, "param": param, "code": code}}, status,
                        headers=headers)


def parse_model(name: str, default_kb: str) -> tuple[str, str | None]:
    """'KB' or 'KB@ADAPTER' (ADAPTER: NAME, NAME@vN or 'none') -> (knowledge base, adapter or None)."""
    kb, _, adapter = (name or default_kb).partition("@")
    return kb or default_kb, adapter or None


class Api:
    """The state one worker process holds: the chain, the gate, the thread pool. Nothing else (keys, usage, cache,
    audit) lives in memory: the databases are shared by every process."""

    def __init__(self, settings: Settings, assistant: Any | None = None) -> None:
        self.settings = settings
        self.assistant = assistant
        slots = settings.api_concurrency or settings.llamacpp_contexts
        self.gate = EngineGate(slots, settings.api_queue)
        self.pool = ThreadPoolExecutor(max_workers=slots + settings.api_queue + 64, thread_name_prefix="api")
        self.load_error: str | None = None
        self.audit = AuditLog(settings.audit_db)  # one handle: events are appended without reopening the schema

    def load(self) -> None:
        """The model and the default knowledge base's index loaded (then /readyz answers 200); the prompt prefixes
        of the key holders' tool sets prefilled in the background (a head start, as the chat page gives)."""
        try:
            if self.assistant is None:
                from assistant.chain import build_assistant

                self.assistant = build_assistant(self.settings)
            from ingest.store import KnowledgeBase

            if KnowledgeBase(self.settings, self.settings.default_kb).exists():
                self.assistant.retriever(self.settings.default_kb)
        except Exception as exc:  # /readyz says why; requests get 503
            self.assistant, self.load_error = None, f"{type(exc).__name__}: {exc}"
            return
        threading.Thread(target=self._warm, name="warm-prefixes", daemon=True).start()

    warming = True

    def _warm(self) -> None:
        try:
            self._warm_prefixes()
        finally:
            self.warming = False

    def _warm_prefixes(self) -> None:
        from assistant.app.users import get_user

        seen = set()
        for key in api_keys.list_keys(self.settings.app_db):
            account = get_user(self.settings.app_db, key.user) if key.state == "active" else None
            if account is None or (account.role, account.department) in seen:
                continue
            seen.add((account.role, account.department))
            try:
                self.assistant.warm(account.user)
            except Exception:  # only a head start: a question prefills what is missing
                return

    async def call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.pool, lambda: fn(*args, **kwargs))

    # ---- who is asking ---------------------------------------------------------------------------------------
    def authenticate(self, header: str | None, scope: str | None, address: str | None) -> tuple[ApiKey, User]:
        token = (header or "").removeprefix("Bearer ").strip()
        try:
            key, account = api_keys.authenticate(self.settings.app_db, token, scope)
        except KeyRejected as exc:
            key_id = token.removeprefix(api_keys.PREFIX).split(".")[0][:16] if token else None
            record_event(self.audit, "api_key_rejected", "-", key_id=key_id, reason=str(exc),
                         address=address)
            raise
        api_keys.admit(self.settings.app_db, key)
        return key, account.user

    def models(self, user: User) -> list[str]:
        """The model names this user may use: each knowledge base they may use, alone (their adapter chosen as in
        the chat) and with its adapter named (admins: every adapter)."""
        from core import registry
        from ingest.store import list_knowledge_bases

        kbs = self.assistant.access.knowledge_bases(user, list_knowledge_bases(self.settings))
        names = registry.list_names(self.settings)
        own = self.assistant.resolve_adapter(user, None)
        adapters = names if user.is_admin else ([own.split("@")[0]] if own else [])
        return [m for kb in kbs for m in [kb, *(f"{kb}@{a}" for a in adapters)]]

    def check_model(self, name: str, user: User) -> tuple[str, str | None]:
        from ingest.store import KnowledgeBase

        kb, adapter = parse_model(name, self.settings.default_kb)
        if not KnowledgeBase(self.settings, kb).exists():
            raise BadRequest(f"model '{name}' does not exist; GET /v1/models lists the ones this key may use",
                             "model", 404, "model_not_found")
        self.assistant.check_kb(user, kb)  # AccessDenied: 403
        if adapter and not user.is_admin and adapter.split("@")[0] not in [
                m.split("@", 1)[1] for m in self.models(user) if "@" in m]:
            raise AccessDenied(f"user '{user.name}' may not choose adapter '{adapter}'; GET /v1/models lists the "
                               "model names this key may use")
        return kb, adapter


def create_app(settings: Settings, assistant: Any | None = None) -> FastAPI:
    """The API app over `assistant` (default: built from the settings when the server starts)."""
    from core import db

    db.use_settings(settings)  # keys, usage and the audit in PostgreSQL when database_url is set
    api = Api(settings, assistant)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> Any:
        await asyncio.get_running_loop().run_in_executor(None, api.load)
        if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            metrics.QUEUE.set_function(lambda: api.gate.waiting)
            metrics.BUSY.set_function(lambda: api.gate.busy)
        yield
        api.pool.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(title="Domain assistant API", version="1", lifespan=lifespan,
                  description="OpenAI-compatible chat completions over the company's documents, with citations.")
    app.state.api = api

    def audit_refusal(request: Request, user: str, status: int, code: str, message: str,
                      key_id: str | None = None) -> None:
        record_event(api.audit, "api_refused", user, status=status, code=code, error=message, key_id=key_id,
                     path=request.url.path, address=request.client.host if request.client else None)

    async def refuse(request: Request, exc: Exception, user: str = "-", key_id: str | None = None) -> JSONResponse:
        """Every refusal: a clear status and message, in OpenAI's error shape, and an audit event."""
        if isinstance(exc, KeyRejected):  # audited by authenticate with the reason
            return _error(401, str(exc), "invalid_api_key")
        if isinstance(exc, LimitExceeded):
            resp = _error(429, str(exc), "rate_limit_exceeded", retry_after=exc.retry_after_s)
        elif isinstance(exc, EngineBusy):
            resp = _error(503, str(exc), "engine_busy", retry_after=exc.retry_after_s)
        elif isinstance(exc, AccessDenied):
            resp = _error(403, str(exc), "access_denied", "model")
        elif isinstance(exc, BadRequest):
            resp = _error(exc.status, exc.message, exc.code, exc.param)
        else:
            raise exc
        metrics.RESPONSES.labels(request.url.path, str(resp.status_code)).inc()
        body = json.loads(resp.body)["error"]
        await api.call(audit_refusal, request, user, resp.status_code, body["code"], body["message"], key_id)
        return resp

    async def read_json(request: Request, model: type) -> Any:
        size = request.headers.get("content-length")
        if size and size.isdigit() and int(size) > MAX_BODY:
            raise BadRequest(f"the request body has {size} bytes; at most {MAX_BODY} are accepted", None, 413,
                             "body_too_large")
        raw = await request.body()
        if len(raw) > MAX_BODY:
            raise BadRequest(f"the request body is over {MAX_BODY} bytes", None, 413, "body_too_large")
        try:
            data = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            where = f" (line {exc.lineno}, column {exc.colno})" if isinstance(exc, json.JSONDecodeError) else ""
            raise BadRequest(f"the request body is not valid JSON{where}: {exc}", None, 400, "invalid_json") from None
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(p) for p in first["loc"]) or "body"
            raise BadRequest(f"{field}: {first['msg']} ({len(exc.errors())} problem(s) in the request)", field, 400,
                             "invalid_request") from None

    async def caller(request: Request, scope: str | None) -> tuple[ApiKey, User]:
        """The key and its user, the request counted against the key's limits (KeyRejected, LimitExceeded)."""
        return await api.call(api.authenticate, request.headers.get("authorization"), scope,
                              request.client.host if request.client else None)

    def not_ready() -> JSONResponse | None:
        if api.assistant is None:
            return _error(503, f"the assistant is not loaded: {api.load_error or 'still loading'}", "not_ready",
                          retry_after=5)
        return None

    # ---- endpoints ----------------------------------------------------------------------------------------------
    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        from ingest.store import KnowledgeBase

        if api.assistant is None:
            return JSONResponse({"ready": False, "reason": api.load_error or "loading"}, 503)
        if not KnowledgeBase(settings, settings.default_kb).exists():
            return JSONResponse({"ready": False, "reason": f"knowledge base '{settings.default_kb}' is empty"}, 503)
        return JSONResponse({"ready": True, "model": api.assistant.model_name, "queue": api.gate.waiting,
                             "busy": api.gate.busy, "slots": api.gate.slots, "warming": api.warming})

    @app.get("/metrics")
    async def metrics_endpoint() -> Response:
        body, kind = metrics.exposition()
        return Response(body, media_type=kind)

    @app.get("/v1/models")
    async def list_models(request: Request) -> Any:
        if (resp := not_ready()) is not None:
            return resp
        try:
            key, user = await caller(request, None)
        except (KeyRejected, LimitExceeded) as exc:
            return await refuse(request, exc)
        names = await api.call(api.models, user)
        return {"object": "list", "data": [{"id": n, "object": "model", "created": 0, "owned_by": "assistant"}
                                           for n in names]}

    @app.post("/v1/retrieve")
    async def retrieve(request: Request) -> Any:
        if (resp := not_ready()) is not None:
            return resp
        user, key_id = "-", None
        try:
            key, who = await caller(request, "retrieve")
            user, key_id = who.name, key.id
            req = await read_json(request, RetrieveRequest)
            kb, _ = await api.call(api.check_model, req.model or settings.default_kb, who)
            res = await api.call(api.assistant.search, req.query, who, kb, req.k)
        except (KeyRejected, LimitExceeded, BadRequest, AccessDenied) as exc:
            return await refuse(request, exc, user, key_id)
        hits = [{"n": i, "source": p.hit.source, "page": p.hit.page, "clause": p.hit.clause or None,
                 "text": p.hit.text, "score": round(p.score, 4), "chunk_id": p.hit.chunk_id, "doc_id": p.hit.doc_id}
                for i, p in enumerate(res.passages, 1)]
        await api.call(record_event, api.audit, "api_retrieve", user, key_id=key_id, kb=kb, query=req.query,
                       chunks=[h["chunk_id"] for h in hits])
        metrics.RESPONSES.labels("/v1/retrieve", "200").inc()
        return {"object": "list", "model": req.model or kb, "relevant": res.relevant, "data": hits}

    @app.post("/v1/feedback")
    async def feedback(request: Request) -> Any:
        """A rating (and optionally a comment and a corrected answer) of one of this user's answers, by its
        `audit_id`: the same feedback store as the chat page's thumbs, so retraining sees both."""
        user, key_id = "-", None
        try:
            key, who = await caller(request, "chat")
            user, key_id = who.name, key.id
            req = await read_json(request, FeedbackRequest)
            if req.correction and (problem := feedback_store.correction_problem(req.correction)):
                raise BadRequest(f"correction: {problem}", "correction", 400, "control_token")
            try:
                fid = await api.call(feedback_store.feedback_on_kept_turn, settings.app_db, req.audit_id, who.name,
                                     req.rating, req.comment, req.correction)
            except AssistantError as exc:
                raise BadRequest(str(exc), "audit_id", 404, "not_found") from None
        except (KeyRejected, LimitExceeded, BadRequest) as exc:
            return await refuse(request, exc, user, key_id)
        await api.call(record_event, api.audit, "api_feedback", user, key_id=key_id, audit_id=req.audit_id,
                       rating=req.rating, feedback_id=fid, correction=bool(req.correction))
        metrics.RESPONSES.labels("/v1/feedback", "200").inc()
        return {"object": "feedback", "id": fid, "audit_id": req.audit_id, "rating": req.rating}

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Any:
        if (resp := not_ready()) is not None:
            return resp
        t0 = time.perf_counter()
        user, key_id = "-", None
        try:
            key, who = await caller(request, "chat")
            user, key_id = who.name, key.id
            req = await read_json(request, ChatRequest)
            question, history = conversation(req, settings.api_max_message_chars, settings.api_max_turns,
                                             settings.api_history_turns)
            kb, adapter = await api.call(api.check_model, req.model, who)
        except (KeyRejected, LimitExceeded, BadRequest, AccessDenied) as exc:
            return await refuse(request, exc, user, key_id)

        turn = _Turn(api, request, key, who, req, question, history, kb, adapter)
        first = await turn.start()
        if isinstance(first, BaseException):
            if isinstance(first, EngineBusy):
                return await refuse(request, first, user, key_id)
            if isinstance(first, ClientGone):  # hung up while queued: audited as partial, nobody to answer
                return Response(status_code=499)
            raise first
        if req.stream:
            return StreamingResponse(turn.stream(t0), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        return await turn.plain(t0)

    return app


def app_from_env() -> FastAPI:
    """The app of one worker process of `assistant serve --workers N` (settings from ASSISTANT_* variables)."""
    from core.settings import load_settings

    return create_app(load_settings())


class _Turn:
    """One chat completion: the chain runs in a worker thread; events cross to the event loop through a queue."""

    def __init__(self, api: Api, request: Request, key: ApiKey, user: User, req: ChatRequest, question: str,
                 history: list[dict[str, str]], kb: str, adapter: str | None) -> None:
        self.api, self.request, self.key, self.user, self.req = api, request, key, user, req
        self.question, self.history, self.kb, self.adapter = question, history, kb, adapter
        self.cancel = threading.Event()
        self.loop = asyncio.get_running_loop()
        self.events: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self.live = not api.settings.verify  # the model's words stream only when they stand as written
        self.sent = False  # answer text went out (live streaming only)
        self.id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        self.future: asyncio.Future[Any] | None = None

    def _put(self, kind: str, payload: Any) -> None:
        self.loop.call_soon_threadsafe(self.events.put_nowait, (kind, payload))

    def _on_event(self, kind: str, payload: Any) -> None:
        if self.cancel.is_set():
            raise ClientGone()
        if kind == "status" and payload == "cached":
            self._put("admitted", None)
        elif kind == "token" and self.live:
            self.sent = self.sent or bool(payload)
            self._put("token", payload)
        elif kind == "status" and payload == "retracted" and self.sent:  # a stream cannot take text back
            raise AssistantError("the model server stopped after part of the answer was streamed; ask again")

    @contextmanager
    def _gate(self) -> Any:
        with self.api.gate():
            self._put("admitted", None)
            if self.cancel.is_set():
                raise ClientGone()
            yield

    def _run(self) -> Any:
        return self.api.assistant.ask(
            self.question, self.user, self.history, self.kb, self.adapter, self.req.think, self._on_event,
            None, channel="api", key_id=self.key.id, use_cache=False if self.req.cache is False else None,
            gate=self._gate)

    async def start(self) -> BaseException | None:
        """Run the turn until it is past the gate (or refused, or finished): a refusal is still a plain 503."""
        self.future = self.loop.run_in_executor(self.api.pool, self._run)
        got = asyncio.ensure_future(self.events.get())
        while True:  # waiting in the queue: a client that hangs up meanwhile leaves it
            done, _ = await asyncio.wait({got, self.future}, timeout=0.5, return_when=asyncio.FIRST_COMPLETED)
            if got in done:  # the first event is always the admission (past the gate, or a cache hit)
                return None
            if self.future in done:
                got.cancel()
                return self.future.exception()
            if await self.request.is_disconnected():
                self.cancel.set()

    async def _finished(self) -> Any:
        """The finished Answer; polls for a disconnect meanwhile (cancelling the generation)."""
        assert self.future is not None
        while True:
            done, _ = await asyncio.wait({self.future}, timeout=0.25)
            if done:
                return self.future.result()
            if await self.request.is_disconnected():
                self.cancel.set()

    def _extras(self, ans: Any) -> dict[str, Any]:
        d = ans.to_dict()
        return {"sources": d["sources"], "tool_calls": d["tool_calls"], "verification": d["verification"],
                "verified": d["verified"], "outcome": d["outcome"], "cached": d["cached"],
                "cached_from": d["cached_from"], "audit_id": d["audit_id"], "standalone": d["standalone"]}

    def _usage(self, ans: Any) -> dict[str, int]:
        p, c = (0, 0) if ans.cached_from is not None else (ans.prompt_tokens or 0, ans.new_tokens or 0)
        return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}

    async def _account(self, ans: Any, t0: float, status: int) -> None:
        usage = self._usage(ans)
        cached = ans.cached_from is not None
        metrics.TOKENS.labels("prompt").inc(usage["prompt_tokens"])
        metrics.TOKENS.labels("completion").inc(usage["completion_tokens"])
        metrics.CACHE.labels("hit" if cached else "miss").inc()
        metrics.REQUEST_S.labels("/v1/chat/completions", str(cached).lower()).observe(time.perf_counter() - t0)
        metrics.RESPONSES.labels("/v1/chat/completions", str(status)).inc()
        await self.api.call(api_keys.record_tokens, self.api.settings.app_db, self.key, usage["total_tokens"], cached)
        if status == 200 and ans.audit_id:
            await self.api.call(self._keep, ans)

    def _keep(self, ans: Any) -> None:
        """The answered turn as a training conversation, kept for POST /v1/feedback (any app server may get it)."""
        payload = ans.to_dict()
        example = turn_example(self.question, self.history, payload, payload.get("tools") or [])
        feedback_store.keep_turn(self.api.settings.app_db, ans.audit_id, self.user.name, example, ans.adapter,
                                 self.api.settings.api_feedback_days)

    async def plain(self, t0: float) -> Any:
        try:
            ans = await self._finished()
        except ClientGone:
            return Response(status_code=499)
        except Exception as exc:
            metrics.RESPONSES.labels("/v1/chat/completions", "500").inc()
            return _error(500, f"the answer failed ({type(exc).__name__}: {exc}); the turn is in the audit log",
                          "internal_error")
        if ans.status == "error":
            await self._account(ans, t0, 502)
            return _error(502, f"{ans.error} (audit turn {ans.audit_id})", "engine_error")
        await self._account(ans, t0, 200)
        return {"id": self.id, "object": "chat.completion", "created": int(time.time()), "model": self.req.model,
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": ans.answer}}],
                "usage": self._usage(ans), **self._extras(ans)}

    def _chunk(self, delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
        body = {"id": self.id, "object": "chat.completion.chunk", "created": int(time.time()), "model": self.req.model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}
        return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"

    async def stream(self, t0: float) -> Any:
        assert self.future is not None
        streamed, first = "", None
        try:
            yield self._chunk({"role": "assistant", "content": ""})
            while True:
                got = asyncio.ensure_future(self.events.get())
                done, _ = await asyncio.wait({got, self.future}, timeout=10, return_when=asyncio.FIRST_COMPLETED)
                if got in done:
                    kind, payload = got.result()
                    if kind == "token" and payload:
                        first = first or time.perf_counter()
                        streamed += payload
                        yield self._chunk({"content": payload})
                    continue
                got.cancel()
                if self.future in done:
                    break
                yield ": waiting for the answer\n\n"  # keeps proxies from closing an idle stream
            while not self.events.empty():  # tokens that crossed after the turn ended
                kind, payload = self.events.get_nowait()
                if kind == "token" and payload:
                    streamed += payload
                    yield self._chunk({"content": payload})
            try:
                ans = self.future.result()
            except Exception as exc:
                yield f"data: {json.dumps({'error': {'message': f'the answer failed ({exc})', 'type': 'server_error', 'code': 'internal_error'}})}\n\n"  # noqa: E501
                return
            if ans.status == "error":
                await self._account(ans, t0, 502)
                err = {"message": f"{ans.error} (audit turn {ans.audit_id})", "type": "server_error",
                       "code": "engine_error"}
                yield f"data: {json.dumps({'error': err}, ensure_ascii=False)}\n\n"
                return
            rest = ans.answer[len(streamed):] if ans.answer.startswith(streamed) else f"\n\n{ans.answer}"
            if rest:
                first = first or time.perf_counter()
                yield self._chunk({"content": rest})
            metrics.FIRST_TOKEN_S.labels(str(ans.cached_from is not None).lower()).observe(first - t0)
            await self._account(ans, t0, 200)
            usage = self._usage(ans) if (self.req.stream_options or {}).get("include_usage") else None
            yield self._chunk({}, "stop", usage=usage, **self._extras(ans))
            yield "data: [DONE]\n\n"
        finally:  # a disconnect cancels this generator: the chain stops at its next event
            if not self.future.done():
                self.cancel.set()
