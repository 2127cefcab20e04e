"""`assistant engine`: the project's llama.cpp engine as an OpenAI-compatible server (the tiny Qwen3 as a GGUF), for
app servers on other machines. Through real HTTP, the `openai` backend gets the same cited and looked-up answers as
the in-process engine, the adapter chosen per request by version from the adapters folder, several requests at once,
a streamed reply that ends with its finish reason, and clear errors for an unknown adapter or a bad body."""

from __future__ import annotations

import concurrent.futures
import shutil
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

pytest.importorskip("llama_cpp")

import uvicorn  # noqa: E402

from assistant.api.engine_server import create_engine_app  # noqa: E402
from assistant.backends import make_backend  # noqa: E402
from assistant.backends.llamacpp import LlamaCppBackend  # noqa: E402
from assistant.chain import Assistant  # noqa: E402
from core.testing.tiny_gguf import hf_to_gguf  # noqa: E402
from tests.chain_env import A_RAG, A_TOOL, Q_RAG, Q_TOOL, STAFF  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def engine(chain_env: dict, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    tiny = tmp_path_factory.mktemp("engine") / "tiny"  # a copy: a GGUF beside the shared tiny model would switch
    shutil.copytree(chain_env["tiny"], tiny)           # the other tests' 'auto' engine to llama.cpp
    hf_to_gguf(tiny)  # beside the HF weights: the engine serves the GGUF, adapters check the base by its weights
    settings = chain_env["settings"].model_copy(update={"model": str(tiny), "llamacpp_contexts": 2,
                                                        "llamacpp_n_ctx": 2048})
    app = create_engine_app(settings, LlamaCppBackend.load(str(tiny), settings))  # the folder: HF weights + GGUF
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    deadline = time.time() + 60
    while not server.started:
        assert time.time() < deadline, "the engine server did not start"
        time.sleep(0.05)
    url = f"http://127.0.0.1:{port}/v1"
    client = settings.model_copy(update={"backend": "openai", "openai_base_urls": [url], "openai_model": "base"})
    backend = make_backend(client)
    local: Assistant = chain_env["assistant"]
    yield {"url": url, "assistant": Assistant(client, backend, local.tools, local.audit, backend.name),
           "local": local}
    server.should_exit = True


def test_lists_the_base_and_every_adapter_version(engine: dict) -> None:
    names = [m["id"] for m in httpx.get(f"{engine['url']}/models").json()["data"]]
    assert names[0] == "base" and "claims@v1" in names


def test_answers_through_the_engine_server_match_the_engine_in_process(engine: dict) -> None:
    tokens: list[str] = []
    tool = engine["assistant"].ask(Q_TOOL, STAFF, adapter="claims@v1",
                                   on_event=lambda k, p: k == "token" and tokens.append(p))
    assert tool.error is None and [t.name for t in tool.tool_calls] == ["get_policy_status"]
    assert tool.model_answer == A_TOOL and "".join(tokens) == A_TOOL
    rag = engine["assistant"].ask(Q_RAG, STAFF, adapter="claims@v1")
    assert rag.model_answer == A_RAG
    assert rag.answer == engine["local"].ask(Q_RAG, STAFF, adapter="claims@v1").answer


def test_several_requests_at_once_and_the_stream_ends_with_its_reason(engine: dict) -> None:
    from openai import OpenAI

    client = OpenAI(base_url=engine["url"], api_key="none", max_retries=0)

    def ask(i: int) -> tuple[str, str | None]:
        text, reason = "", None
        for c in client.chat.completions.create(model="base", max_tokens=5 + i, stream=True,
                                                messages=[{"role": "user", "content": f"第{i}条"}]):
            if c.choices:
                text += c.choices[0].delta.content or ""
                reason = c.choices[0].finish_reason or reason
        return text, reason

    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        results = list(pool.map(ask, range(3)))
    assert all(text and reason in ("stop", "length") for text, reason in results)


def test_bad_requests_are_clear_errors(engine: dict) -> None:
    r = httpx.post(f"{engine['url']}/chat/completions", json={"model": "claims@v9", "messages": [
        {"role": "user", "content": "hi"}]})
    assert r.status_code == 400 and "v9" in r.json()["error"]["message"]
    r = httpx.post(f"{engine['url']}/chat/completions", content=b"not json")
    assert r.status_code == 400 and "messages" in r.json()["error"]["message"]
