"""The `openai` backend against a real OpenAI-compatible server: llama-cpp-python's (`python -m llama_cpp.server`)
serving the tiny Qwen3 as a GGUF, and under a second model name the same GGUF with the chain adapter as a GGUF
LoRA. Through real HTTP: the same structured replies (the server's own grammar from the schema the chain sends as
`response_format`), look-ups, answers and citations as the in-process engines, streamed; the adapter chosen per
request by the model name; and the prompt the server renders from the OpenAI messages with the GGUF's embedded chat
template has exactly as many tokens as our own rendering, on every model turn of the chain.

What llama-cpp-python's server does not do (the tests do not rely on it): it ignores the per-request
`chat_template_kwargs` (thinking is fixed per model in its config, off here: what the chain sends by default),
sends no usage in a stream (the token count comes from a non-streamed request), and loads a model per name (a
request for another adapter reloads the model; an unknown name silently gets the first model)."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("llama_cpp")

from assistant.backends import make_backend  # noqa: E402
from assistant.backends.base import to_template_messages  # noqa: E402
from assistant.backends.openai import OpenAICompatibleBackend  # noqa: E402
from assistant.chain import Assistant  # noqa: E402
from core.gguf_lora import peft_to_gguf_lora  # noqa: E402
from core.testing.tiny_gguf import hf_to_gguf  # noqa: E402
from tests.chain_env import A_RAG, A_TOOL, Q_RAG, Q_TOOL, STAFF  # noqa: E402

BASE = "tiny-qwen3"  # the model name the server serves the base under; the adapter is served as "claims@v1"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_until_serving(proc: subprocess.Popen, url: str, log: Path, timeout: float = 60.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        try:
            with urllib.request.urlopen(f"{url}/models", timeout=2) as r:
                return [m["id"] for m in json.loads(r.read())["data"]]
        except OSError:
            time.sleep(0.3)
    proc.kill()
    proc.wait(10)
    pytest.fail(f"llama_cpp.server did not answer {url}/models (exit code {proc.returncode}):\n"
                f"{log.read_text(encoding='utf-8', errors='replace')[-4000:]}")


@pytest.fixture(scope="module")
def served(chain_env: dict, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    # a copy: a GGUF beside chain_env's tiny model would switch the other tests' 'auto' engine to llama.cpp
    tiny = tmp_path_factory.mktemp("served") / "tiny"
    shutil.copytree(chain_env["tiny"], tiny)
    gguf = hf_to_gguf(tiny)
    lora = peft_to_gguf_lora(chain_env["adapter"].path, tiny.parent / "claims-v1.gguf", "qwen3")
    port = _free_port()
    # a config file, not flags: one server, two model names (the CLI takes one model); the tiny model's own context
    # (a runaway answer ends there); no logits kept for every position (logits_all: 1.2 GB at this context and
    # vocabulary); thinking off, as the chain asks by default
    model = {"model": str(gguf), "n_ctx": 2048, "n_threads": 1, "n_threads_batch": 1, "logits_all": False,
             "verbose": False, "chat_template_kwargs": {"enable_thinking": False}}
    config = tiny.parent / "server.json"
    config.write_text(json.dumps({"host": "127.0.0.1", "port": port, "models": [
        model | {"model_alias": BASE}, model | {"model_alias": "claims@v1", "lora_path": str(lora)}]}))
    log = tiny.parent / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--config_file", str(config)],
                                stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        models = _wait_until_serving(proc, url, log)
        settings = chain_env["settings"].model_copy(update={
            "backend": "openai", "openai_base_url": url, "openai_model": BASE,
            "openai_response_format": "json_object"})  # the form llama-cpp-python's server takes
        backend = make_backend(settings)
        base: Assistant = chain_env["assistant"]
        assistant = Assistant(settings, backend, base.tools, base.audit, backend.name)
        yield {"settings": settings, "backend": backend, "assistant": assistant, "local": base, "models": models,
               "log": log, "proc": proc}
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


@contextmanager
def _deadline(served: dict, seconds: float = 60.0) -> Iterator[None]:
    """Requests not answered in time kill the server, so that the test fails at once instead of waiting: a
    generation that ignores its budget runs until the context is full, for many minutes at this vocabulary."""
    timer = threading.Timer(seconds, served["proc"].kill)
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


def _ask(served: dict, question: str, adapter: str) -> tuple[Any, str]:
    tokens: list[str] = []
    with _deadline(served):
        ans = served["assistant"].ask(question, STAFF, adapter=adapter,
                                      on_event=lambda k, p: k == "token" and tokens.append(p))
    assert ans.error is None, f"{ans.error}\n{served['log'].read_text(errors='replace')[-3000:]}"
    return ans, "".join(tokens)


def test_serves_both_model_names(served: dict) -> None:
    assert isinstance(served["backend"], OpenAICompatibleBackend)
    assert served["models"] == [BASE, "claims@v1"]


def test_look_up_and_answer_through_the_server(served: dict) -> None:
    ans, streamed = _ask(served, Q_TOOL, "claims@v1")
    assert [t.name for t in ans.tool_calls] == ["get_policy_status"]
    assert ans.tool_calls[0].ok and ans.tool_calls[0].arguments == {"policy_id": "POL-2024-0001"}
    assert ans.model_answer == A_TOOL and streamed == A_TOOL  # streamed, the JSON never shown
    assert ans.adapter == "claims@v1" and ans.model == f"openai:{served['settings'].openai_base_url}"


def test_cited_answer_matches_the_transformers_engine(served: dict) -> None:
    ours, streamed = _ask(served, Q_RAG, "claims@v1")
    theirs = served["local"].ask(Q_RAG, STAFF, adapter="claims@v1")
    assert ours.model_answer == A_RAG and streamed == A_RAG
    assert ours.sources and ours.sources[0]["source"] == "claims.md"
    assert ours.answer == theirs.answer


def test_adapter_is_chosen_per_request_by_model_name(served: dict) -> None:
    base, base_text = _ask(served, Q_TOOL, "none")
    tuned, tuned_text = _ask(served, Q_TOOL, "claims@v1")
    again, again_text = _ask(served, Q_TOOL, "none")
    assert base.adapter is None
    # the untrained base writes greedy noise inside the schema, the same each time, until the answer budget cuts it
    # (max_tokens: llama-cpp-python does not read max_completion_tokens, and would generate until the context is
    # full); a reply cut short is no reply: the record is shown
    assert base.reply == again.reply and base_text == again_text and base.outcome == "tool_result"
    assert tuned.reply != base.reply and tuned.model_answer == A_TOOL


def test_prompts_the_server_renders_are_ours(served: dict, chain_env: dict) -> None:
    """Every model turn of a looked-up question (the answer from the record) and a cited question: the server's
    prompt token count (usage of a non-streamed request for the same messages and model) equals our rendering's
    (core.models.render_chat, the tokenizer's chat template); and the answer budget reaches the server (one token
    asked, one generated)."""
    with _deadline(served, 120):
        _check_prompts(served, chain_env)


def _check_prompts(served: dict, chain_env: dict) -> None:
    backend: OpenAICompatibleBackend = make_backend(served["settings"])  # type: ignore[assignment]
    turns: list[tuple[list, bool, str | None]] = []
    inner = backend.turn

    def recording(messages: list, tools: list, *, think: bool, adapter: str | None, on_text: Any,
                  schema: Any = None) -> Any:
        turns.append((list(messages), think, adapter))
        return inner(messages, tools, think=think, adapter=adapter, on_text=on_text, schema=schema)

    backend.turn = recording  # type: ignore[method-assign]
    local: Assistant = served["local"]
    a = Assistant(served["settings"], backend, local.tools, local.audit, backend.name)
    tool = a.ask(Q_TOOL, STAFF, adapter="claims@v1")
    assert tool.error is None and [t.name for t in tool.tool_calls] == ["get_policy_status"], tool.error
    assert a.ask(Q_RAG, STAFF, adapter="claims@v1").error is None
    assert len(turns) == 2 and any("工具结果" in str(m.content) for m in turns[0][0])  # the record as units
    runtime = chain_env["runtime"]
    once = backend.chat.model_copy(update={"streaming": False})  # the server sends usage only when not streaming
    for messages, think, adapter in turns:
        reply = once.invoke(messages, model=adapter or BASE, max_tokens=1)
        usage = reply.usage_metadata or {}
        prompt = runtime.render(to_template_messages(messages), None, think)
        ours = len(runtime.lm.tokenizer(prompt, add_special_tokens=False)["input_ids"])
        assert usage.get("input_tokens", 0) > 100 and usage["input_tokens"] == ours, (adapter, [m.type for m in messages])
        assert usage["output_tokens"] == 1


def test_a_server_that_dies_mid_answer_gives_an_error_answer_not_a_crash(served: dict) -> None:
    """Last in this module: it kills the server. The staff member sees what happened; the chat does not crash."""
    a: Assistant = served["assistant"]

    def on_event(kind: str, _: object) -> None:
        if kind == "token" and served["proc"].poll() is None:
            served["proc"].kill()
            served["proc"].wait(10)

    ans = a.ask(Q_RAG, STAFF, on_event=on_event)
    assert ans.status == "error" and "stopped answering" in (ans.error or "") and ans.answer.startswith("⚠")
    ans = a.ask(Q_RAG, STAFF)  # refused outright now
    assert ans.status == "error" and "stopped answering" in (ans.error or "")
