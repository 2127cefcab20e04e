"""`assistant engine`: the project's llama.cpp engine as an OpenAI-compatible model server, for app servers on other
machines (`ASSISTANT_BACKEND=openai`, `ASSISTANT_OPENAI_BASE_URLS`). What llama.cpp's `llama-server` does, with the
project's own engine: several requests decoded at once (one llama.cpp context each), a LoRA adapter per request
chosen by the model name (`NAME@vN`, loaded by version from the adapters folder every node reads), the JSON schema
of `response_format` enforced token by token, the Qwen chat template of the model rendering the messages.

The reply is the model's raw text (the client parses tool calls and structure, as from any such server); a streamed
reply ends with a chunk carrying `finish_reason` ("length" when the budget ran out) and, when asked, `usage`.
No keys, no user data: it listens on 127.0.0.1 unless told otherwise, behind the network the app servers share.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

from core.errors import AssistantError
from core.settings import Settings

__all__ = ["create_engine_app"]


def _template_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """OpenAI messages -> the chat template's (tool-call arguments as objects, content never null)."""
    out = []
    for m in messages:
        content = m.get("content") or ""
        if isinstance(content, list):  # content parts: the text ones
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
        d: dict[str, Any] = {"role": m["role"], "content": content}
        if m.get("tool_calls"):
            d["tool_calls"] = [{"type": "function", "function": {
                "name": c["function"]["name"], "arguments": json.loads(c["function"].get("arguments") or "{}")}}
                for c in m["tool_calls"]]
        out.append(d)
    return out


def _schema(body: dict[str, Any]) -> dict[str, Any] | None:
    fmt = body.get("response_format") or {}
    if fmt.get("type") == "json_schema":
        return (fmt.get("json_schema") or {}).get("schema")
    if fmt.get("type") == "json_object":
        return fmt.get("schema")
    return None


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": "invalid_request_error" if status < 500
                                   else "server_error"}}, status_code=status)


def create_engine_app(settings: Settings, backend: Any = None, base_name: str = "base") -> FastAPI:
    """The engine server over `backend` (a LlamaCppBackend; default: loaded from the settings' model), serving the
    base model as `base_name` and every registered adapter version as `NAME@vN`."""
    from assistant.backends.base import TurnStats
    from assistant.backends.constrained import Constraint
    from assistant.backends.llamacpp import LlamaCppBackend
    from core import registry
    from core.models import render_chat

    state: dict[str, Any] = {"backend": backend}
    lock = threading.Lock()

    def engine() -> LlamaCppBackend:
        with lock:
            if state["backend"] is None:
                state["backend"] = LlamaCppBackend.load(settings.model, settings)
            return state["backend"]

    app = FastAPI(title="domain-assistant engine", docs_url=None, redoc_url=None)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        refs = [base_name]
        for name in registry.list_names(settings):
            refs += [v.ref for v in registry.list_versions(settings, name)]
        return {"object": "list", "data": [{"id": r, "object": "model", "owned_by": "domain-assistant"}
                                           for r in refs]}

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Any:
        try:
            body = await request.json()
            messages = _template_messages(body["messages"])
        except (ValueError, KeyError, TypeError) as exc:
            return _error(400, f"a chat completion needs a JSON body with 'messages' ({exc})")
        model = body.get("model") or base_name
        adapter = None if model in (base_name, settings.model) else model
        think = bool((body.get("chat_template_kwargs") or {}).get("enable_thinking", False))
        budget = int(body.get("max_completion_tokens") or body.get("max_tokens") or settings.max_new_tokens)
        loop = asyncio.get_running_loop()

        def start() -> tuple[Any, TurnStats]:  # in a worker thread: loading and prefilling block
            eng = engine()
            prompt = render_chat(eng.engine.tokenizer, messages, body.get("tools") or None, think)
            ids = eng.engine.tokenizer(prompt, add_special_tokens=False)["input_ids"]
            lora = eng.engine.ensure_adapter(adapter) if adapter else None
            schema = _schema(body)
            constraint = Constraint(eng.engine.tokenizer, eng.engine.n_vocab, schema, think) if schema else None
            stats = TurnStats()
            return eng.engine.stream(ids, lora, budget, stats, constraint=constraint), stats

        try:
            pieces, stats = await loop.run_in_executor(None, start)
        except AssistantError as exc:
            return _error(400 if "adapter" in str(exc) or "exceed" in str(exc) else 500, str(exc))
        cid, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())
        held = threading.Lock()  # one step of the generator at a time; closing waits for a step under way
        done = object()

        def step() -> Any:
            with held:
                return next(pieces, done)

        def stop() -> None:
            with held:
                pieces.close()

        def usage() -> dict[str, int]:
            return {"prompt_tokens": stats.prompt_tokens, "completion_tokens": stats.new_tokens,
                    "total_tokens": stats.prompt_tokens + stats.new_tokens}

        def finish() -> str:
            return "length" if stats.new_tokens >= budget else "stop"

        if not body.get("stream"):
            try:
                text = await loop.run_in_executor(None, lambda: "".join(iter(step, done)))
            finally:
                await loop.run_in_executor(None, stop)
            return {"id": cid, "object": "chat.completion", "created": created, "model": model,
                    "choices": [{"index": 0, "finish_reason": finish(),
                                 "message": {"role": "assistant", "content": text}}], "usage": usage()}

        def chunk(delta: dict[str, Any], reason: str | None = None, **extra: Any) -> str:
            return "data: " + json.dumps({"id": cid, "object": "chat.completion.chunk", "created": created,
                                          "model": model, "choices": [{"index": 0, "delta": delta,
                                                                       "finish_reason": reason}], **extra},
                                         ensure_ascii=False) + "\n\n"

        async def events() -> Any:
            try:
                yield chunk({"role": "assistant", "content": ""})
                while (piece := await loop.run_in_executor(None, step)) is not done:
                    yield chunk({"content": piece})
                yield chunk({}, finish())
                if (body.get("stream_options") or {}).get("include_usage"):
                    yield "data: " + json.dumps({"id": cid, "object": "chat.completion.chunk", "created": created,
                                                 "model": model, "choices": [], "usage": usage()}) + "\n\n"
                yield "data: [DONE]\n\n"
            finally:  # a client that hangs up frees its context at once
                await loop.run_in_executor(None, stop)

        return StreamingResponse(events(), media_type="text/event-stream")

    return app
