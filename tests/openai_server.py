"""A small OpenAI-compatible chat server over our runtime (what vLLM does with `--enable-lora`, at test
scale): `/v1/chat/completions`, streaming (SSE) or not, the adapter chosen by the request's model name,
`chat_template_kwargs` honoured, `response_format` with a JSON schema enforced (guided decoding, as vLLM and
llama.cpp's server do). It lets the tests drive the `openai` backend through real HTTP; `seen` keeps each request."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from assistant.backends.runtime import ModelRuntime


def _template_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for m in messages:
        d = {"role": m["role"], "content": m.get("content") or ""}
        if m.get("tool_calls"):
            d["tool_calls"] = [{"type": "function", "function": {
                "name": c["function"]["name"], "arguments": json.loads(c["function"]["arguments"] or "{}")}}
                for c in m["tool_calls"]]
        out.append(d)
    return out


def serve(runtime: ModelRuntime, base_model_name: str, seen: list[dict[str, Any]] | None = None,
          models: list[str] | None = None, port: int = 0,
          die_after: str | None = None) -> tuple[ThreadingHTTPServer, str]:
    """`models`: the names GET /v1/models lists besides the base (the adapters the engine says it serves).
    `die_after`: a streamed reply stops once it has sent this text, without a finish reason (an engine that died)."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:  # quiet
            pass

        def do_GET(self) -> None:  # noqa: N802
            if self.path.rstrip("/") != "/v1/models":
                self.send_error(404)
                return
            data = json.dumps({"object": "list", "data": [{"id": m, "object": "model"}
                                                          for m in [base_model_name, *(models or [])]]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            model = body.get("model")
            key = runtime.ensure_adapter(model) if model and model != base_model_name else None
            think = bool((body.get("chat_template_kwargs") or {}).get("enable_thinking", False))
            prompt = runtime.render(_template_messages(body["messages"]), body.get("tools"), think)
            budget = body.get("max_completion_tokens") or body.get("max_tokens") or 64
            if seen is not None:
                seen.append(body)
            fmt = body.get("response_format") or {}
            schema = (fmt.get("json_schema") or {}).get("schema") if fmt.get("type") == "json_schema" else None
            constraint = runtime.constraint(schema, think) if schema else None
            pieces = runtime.stream(prompt, key, int(budget), constraint=constraint)
            if not body.get("stream"):
                text = "".join(pieces)
                payload = {"id": "cmpl", "object": "chat.completion", "created": int(time.time()), "model": model,
                           "choices": [{"index": 0, "finish_reason": "stop",
                                        "message": {"role": "assistant", "content": text}}]}
                data = json.dumps(payload).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()

            def send(delta: dict[str, Any], finish: str | None = None) -> None:
                chunk = {"id": "cmpl", "object": "chat.completion.chunk", "created": int(time.time()),
                         "model": model, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
                self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                self.wfile.flush()

            send({"role": "assistant", "content": ""})
            sent = ""
            for piece in pieces:
                send({"content": piece})
                sent += piece
                if die_after is not None and die_after in sent:
                    return  # the connection closes mid-answer
            send({}, "stop")
            self.wfile.write(b"data: [DONE]\n\n")

    ThreadingHTTPServer.allow_reuse_address = True  # an engine restarted on its port (a health check brings it back)
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/v1"
