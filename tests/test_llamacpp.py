"""The llama.cpp engine on the tiny Qwen3 written as a GGUF, with the chain adapter converted to a GGUF LoRA:
the same structured replies (constrained by the same llguidance schema), look-ups, streaming and citations as the
transformers engine, per-request stats, two questions at once, and the adapter's greedy outputs agreeing with
transformers' on its training prompts."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import pytest

pytest.importorskip("llama_cpp")

from assistant.backends.base import TurnStats  # noqa: E402
from assistant.backends.llamacpp import LlamaCppBackend, _common, default_threads  # noqa: E402
from assistant.chain import Assistant  # noqa: E402
from core.models import render_chat, resolve_gguf  # noqa: E402
from core.testing.tiny_gguf import hf_to_gguf  # noqa: E402
from tests.chain_env import A_RAG, A_TOOL, Q_RAG, Q_TOOL, STAFF  # noqa: E402


@pytest.fixture(scope="module")
def llama(chain_env: dict, tmp_path_factory: pytest.TempPathFactory) -> dict:
    # a copy: a GGUF beside chain_env's tiny model would switch the other tests' 'auto' engine to llama.cpp
    tiny = tmp_path_factory.mktemp("gguf") / "tiny"
    shutil.copytree(chain_env["tiny"], tiny)
    hf_to_gguf(tiny)
    settings = chain_env["settings"].model_copy(update={"model": str(tiny), "engine": "llamacpp",
                                                        "llamacpp_contexts": 2, "n_threads": 1})
    backend = LlamaCppBackend.load(str(tiny), settings)
    base: Assistant = chain_env["assistant"]
    assistant = Assistant(settings, backend, base.tools, base.audit, backend.name)
    return {"settings": settings, "backend": backend, "assistant": assistant, "transformers": base}


def test_resolves_the_gguf_and_a_thread_default() -> None:
    assert default_threads() >= 1


def test_look_up_and_answer_through_the_chain(llama: dict) -> None:
    a: Assistant = llama["assistant"]
    tokens: list[str] = []
    ans = a.ask(Q_TOOL, STAFF, adapter="claims@v1", on_event=lambda k, p: k == "token" and tokens.append(p))
    assert ans.error is None and [t.name for t in ans.tool_calls] == ["get_policy_status"]
    assert ans.tool_calls[0].ok and ans.tool_calls[0].arguments == {"policy_id": "POL-2024-0001"}
    assert ans.model_answer == A_TOOL and "".join(tokens) == A_TOOL  # streamed, the JSON never shown
    assert ans.outcome == "answer" and ans.sources[0]["kind"] == "tool"
    assert ans.prompt_tokens and ans.prompt_tokens > 100 and ans.new_tokens and ans.prefill_s and ans.prefill_s > 0
    assert ans.adapter == "claims@v1" and (ans.model or "").endswith(Path(llama["settings"].model).name)


def test_cited_answer_matches_the_transformers_engine(llama: dict) -> None:
    ours = llama["assistant"].ask(Q_RAG, STAFF, adapter="claims@v1")
    theirs = llama["transformers"].ask(Q_RAG, STAFF, adapter="claims@v1")
    assert ours.model_answer == A_RAG and ours.sources and ours.sources[0]["source"] == "claims.md"
    assert ours.reply == theirs.reply and ours.answer == theirs.answer


def test_adapter_is_switched_per_request_without_reloading(llama: dict) -> None:
    a: Assistant = llama["assistant"]
    base = a.ask(Q_TOOL, STAFF, adapter="none")
    tuned = a.ask(Q_TOOL, STAFF, adapter="claims@v1")
    again = a.ask(Q_TOOL, STAFF, adapter="none")
    assert tuned.model_answer == A_TOOL

    def said(ans: object) -> str:
        return ans.reply  # type: ignore[attr-defined]

    assert said(base) == said(again) and said(base) != said(tuned)  # the KV cache is not reused across adapters
    converted = list((llama["settings"].home / "adapters" / "claims" / "versions" / "v1").glob("adapter-*.gguf"))
    assert len(converted) == 1  # converted once, cached beside the version


def test_two_questions_at_once_both_complete(llama: dict) -> None:
    a: Assistant = llama["assistant"]
    results: dict[str, object] = {}

    def ask(q: str) -> None:
        results[q] = a.ask(q, STAFF, adapter="claims@v1")

    threads = [threading.Thread(target=ask, args=(q,)) for q in (Q_TOOL, Q_RAG)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert results[Q_TOOL].model_answer == A_TOOL  # type: ignore[attr-defined]
    assert results[Q_RAG].model_answer == A_RAG  # type: ignore[attr-defined]
    assert llama["backend"].engine._opened <= 2


def test_adapter_greedy_outputs_agree_with_transformers(llama: dict, chain_env: dict) -> None:
    """Every training prompt of the chain adapter, up to its first assistant turn: greedy through both engines."""
    runtime = chain_env["runtime"]
    engine = llama["backend"].engine
    key = runtime.ensure_adapter("claims@v1")
    lora = engine.ensure_adapter("claims@v1")
    rows = [json.loads(x) for x in chain_env["data"].read_text(encoding="utf-8").splitlines()]
    agree = total = 0
    for row in rows:
        msgs = row["messages"]
        upto = next(i for i, m in enumerate(msgs) if m["role"] == "assistant")
        prompt = render_chat(engine.tokenizer, msgs[:upto], row.get("tools"), False)
        ids = engine.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        ours = "".join(engine.stream(ids, lora, 32, TurnStats()))
        theirs = "".join(runtime.stream(prompt, key, 32))
        total += 1
        agree += ours == theirs
    assert resolve_gguf(llama["settings"].model, llama["settings"]).gguf.suffix == ".gguf"
    print(f"greedy agreement llama.cpp vs transformers on {total} training prompts: {agree}/{total}")
    assert agree / total >= 0.9


def test_a_turn_ended_mid_stream_gives_its_context_back(llama: dict) -> None:
    """A turn abandoned mid-stream (the user pressed Stop, the page reran): the context must return to the pool
    at once (a context kept by an abandoned stream would make every later request queue)."""
    from assistant.chain.generation import to_langchain

    backend: LlamaCppBackend = llama["backend"]
    engine = backend.engine
    a: Assistant = llama["assistant"]
    msgs = to_langchain(a.prompt_for(Q_RAG, STAFF)[0])
    seen: list[str] = []

    class Stopped(Exception):
        pass

    def stop(piece: str) -> None:
        seen.append(piece)
        raise Stopped

    before = len(engine._idle) + (engine.n_contexts - engine._opened)
    with pytest.raises(Stopped):
        backend.turn(msgs, [], think=False, adapter=None, on_text=stop)
    assert len(seen) == 1 and engine._active == 0
    assert len(engine._idle) + (engine.n_contexts - engine._opened) == before  # nothing held
    assert backend.turn(msgs, [], think=False, adapter=None, on_text=lambda p: None).message.content


def test_prompts_with_different_prefixes_keep_their_own_warm_context(llama: dict) -> None:
    """A Chinese and an English question (different system prompts) alternate without evicting each other."""
    engine = llama["backend"].engine
    tok = engine.tokenizer
    zh = tok("<|im_start|>system\n你是助手，只根据资料回答。" * 8, add_special_tokens=False)["input_ids"]
    en = tok("<|im_start|>system\nYou are an assistant; answer from the passages." * 8,
             add_special_tokens=False)["input_ids"]
    stats = TurnStats()
    for ids in (zh, en, zh + zh[:5], en + en[:5]):
        for _ in engine.stream(ids, None, 2, stats):
            pass
    cached = sorted(max(c.common_prefix(ids) for c in engine._idle) for ids in (zh, en))
    assert cached == sorted([len(zh), len(en)])  # both prefixes are still in some idle context


def test_warming_at_login_leaves_only_the_passages_to_prefill(llama: dict) -> None:
    """Assistant.warm prefills the rules and the user's tool schemas in both languages and keeps them: a first
    question then finds its whole constant prefix kept, whichever context it gets."""
    from core.models import render_chat as render

    a: Assistant = llama["assistant"]
    engine = llama["backend"].engine
    a.warm(STAFF)
    assert a.warm(STAFF) == 0  # both languages' prefixes are kept: nothing is prefilled twice
    msgs, _, _ = a.prompt_for(Q_RAG, STAFF)
    ids = engine.tokenizer(render(engine.tokenizer, msgs, None, False), add_special_tokens=False)["input_ids"]
    system = render(engine.tokenizer, msgs[:1], None, False)
    system = system[:system.rfind("<|im_start|>assistant")]  # the system turn (its rules list the tools)
    prefix = len(engine.tokenizer(system, add_special_tokens=False)["input_ids"])
    ref = a.resolve_adapter(STAFF, None)  # prefixes are kept per adapter: the one this user's questions use
    lora = engine.ensure_adapter(ref) if ref else None
    kept = [toks for lo, toks in engine._snapshots if lo == lora]
    assert prefix > 300 and max(_common(toks, ids) for toks in kept) >= prefix


def test_a_kept_prefix_is_taken_up_by_whichever_context_a_question_gets(llama: dict) -> None:
    """With several staff asking, a question often gets a context holding another prompt: it takes up the kept
    snapshot of its constant prefix (milliseconds) instead of prefilling it, and answers exactly as from scratch."""
    from core.models import render_chat as render

    a: Assistant = llama["assistant"]
    engine = llama["backend"].engine
    msgs, _, _ = a.prompt_for(Q_RAG, STAFF)
    ids = engine.tokenizer(render(engine.tokenizer, msgs, None, False), add_special_tokens=False)["input_ids"]
    ref = a.resolve_adapter(STAFF, None)  # the chain's claims adapter: prefixes are kept per adapter
    lora = engine.ensure_adapter(ref) if ref else None

    def fresh_answer() -> tuple[str, TurnStats]:
        for ctx in engine._idle:
            ctx.llm.reset()  # every context now holds something else as far as this prompt is concerned
        stats = TurnStats()
        return "".join(engine.stream(ids, lora, 16, stats)), stats

    kept = dict(engine._snapshots)
    engine._snapshots.clear()
    scratch, cold = fresh_answer()
    assert cold.cached_tokens == 0
    engine._snapshots.update(kept)
    a.warm(STAFF)
    answer, warm = fresh_answer()
    assert answer == scratch
    assert warm.cached_tokens > 300 and warm.cached_tokens < len(ids)  # the rules and tools; the passages remain


def test_a_prefix_being_kept_is_waited_for_not_prefilled_twice(llama: dict) -> None:
    """A staff member who asks while the login warm-up is still prefilling their prefix waits for it: on 2 cores,
    prefilling it twice at once would halve the speed of both."""
    engine = llama["backend"].engine
    ids = engine.tokenizer("<|im_start|>system\n两位同事同时登录，同时提问。" * 60, add_special_tokens=False)["input_ids"]
    results: list[bool] = []
    start = threading.Barrier(2)

    def keep() -> None:
        start.wait()
        results.append(engine.keep_prefix(ids))

    threads = [threading.Thread(target=keep) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False, True] and (None, tuple(ids)) in engine._snapshots and not engine._keeping


def test_adapter_none_serves_the_base_model_even_where_an_active_adapter_would_be_used(llama: dict) -> None:
    """ASSISTANT_ADAPTER=none: how the base model is measured once the demo adapter is trained (bench/answer_eval.py)."""
    import copy

    a: Assistant = llama["assistant"]
    base = copy.copy(a)
    base.settings = a.settings.model_copy(update={"adapter": "none"})
    assert a.resolve_adapter(STAFF, None) is not None and base.resolve_adapter(STAFF, None) is None
    assert base.resolve_adapter(STAFF, a.resolve_adapter(STAFF, None)) == a.resolve_adapter(STAFF, None)


def test_the_constraint_holds_on_llama_cpp_too(llama: dict) -> None:
    """Whatever the weights, the engine writes only what the schema allows: the base tiny model is noise."""
    from assistant.chain.generation import to_langchain
    from core.prompts import answer_fields, answer_schema, parse_reply, prompt_units

    backend: LlamaCppBackend = llama["backend"]
    prompt = llama["assistant"].prompt_for(Q_RAG, STAFF)[0]
    units = prompt_units(prompt)
    turn = backend.turn(to_langchain(prompt), [], think=False, adapter=None, on_text=lambda p: None,
                        schema=answer_schema(units))
    reply = parse_reply(turn.message.additional_kwargs["raw"])
    assert reply.error is None and set(reply.data) == {"evidence", "answer"}
    cited, answer, problem = answer_fields(reply.data, units)
    assert problem is None and (cited or answer == "")
