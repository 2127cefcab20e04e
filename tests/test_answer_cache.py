"""The answer cache: the store's rules on a real SQLite file, and the chain serving (and not serving) from it with
the tiny Qwen3, its adapter registry and a real knowledge base."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from core.answer_cache import AnswerCache, CacheScope, normalise
from core.audit import AuditLog
from core.identity import User
from tests.chain_env import A_RAG, Q_RAG, Q_TOOL, STAFF


def _scope(**kw: Any) -> CacheScope:
    base = dict(kb="default", kb_version="v1", departments=("", "sales"), tools=("calculator",), adapter="claims",
                adapter_state="claims@v1|1", model="m", options="{}")
    return CacheScope(**(base | kw))


def test_normalise_keeps_words_and_figures() -> None:
    assert normalise("  Who approves a claim of CNY 300,000?? ") == normalise("who approves a claim of cny 300,000")
    assert normalise("出险后几天内报案？") == normalise("出险后几天内报案?") == normalise("出险后几天内报案")
    assert normalise("ＰＯＬ－２０２４") == normalise("POL-2024")  # full-width is half-width
    assert normalise("300 人的折扣") != normalise("1000 人的折扣")


def test_entries_are_served_only_within_their_scope_and_while_their_evidence_stands(tmp_path: Path) -> None:
    cache = AnswerCache(tmp_path / "cache.db", ttl_s=3600)
    texts = {"c1": "出险后十日内报案。"}
    cache.put(_scope(), "出险后几天内报案？", {"answer": "十日内"}, dict(texts), audit_id=7)
    hit = cache.get(_scope(), "出险后几天内报案", lambda ids: {i: texts[i] for i in ids if i in texts})
    assert hit and hit.payload == {"answer": "十日内"} and hit.audit_id == 7
    # any other part of the scope: another department, tool set, adapter state, model or settings
    for other in (dict(departments=("", "claims")), dict(departments=("*",)), dict(tools=()),
                  dict(adapter_state="claims@v2|2"), dict(model="m2"), dict(options='{"verify": false}')):
        assert cache.get(_scope(**other), "出险后几天内报案", lambda ids: texts) is None
    # the cited chunk changed (or is gone): dropped, not served again even if it changes back
    assert cache.get(_scope(), "出险后几天内报案", lambda ids: {"c1": "出险后十五日内报案。"}) is None
    assert cache.get(_scope(), "出险后几天内报案", lambda ids: texts) is None
    cache.put(_scope(), "q", {"a": 1}, dict(texts), 8)
    assert cache.get(_scope(), "q", lambda ids: {}) is None
    # a new knowledge-base version or adapter state written: the entries of the old one are dropped
    cache.put(_scope(), "q", {"a": 1}, {}, 9)
    cache.put(_scope(kb_version="v2"), "other", {"a": 2}, {}, 10)
    assert cache.stats()["entries"] == 1
    cache.put(_scope(kb_version="v2", adapter_state="claims@v1|3"), "third", {"a": 3}, {}, 11)
    assert cache.stats()["entries"] == 1


def test_ttl_size_bound_and_paraphrase_threshold(tmp_path: Path) -> None:
    cache = AnswerCache(tmp_path / "cache.db", ttl_s=0.2, max_entries=2)
    cache.put(_scope(), "a", {"n": 1}, {}, 1)
    time.sleep(0.3)
    assert cache.get(_scope(), "a", lambda ids: {}) is None
    for q in ("a", "b", "c"):
        cache.put(_scope(), q, {"q": q}, {}, 1)
    assert cache.stats()["entries"] == 2
    cache = AnswerCache(tmp_path / "semantic.db")
    v = np.array([1.0, 0.0, 0.0], np.float32)
    cache.put(_scope(), "waiting period of the policy", {"a": 1}, {}, 1, vector=v)
    near, far = np.array([0.99, 0.1, 0.0], np.float32), np.array([0.7, 0.7, 0.0], np.float32)
    hit = cache.get(_scope(), "the policy's waiting period", lambda ids: {}, near, 0.95)
    assert hit and hit.similarity and hit.similarity > 0.95
    assert cache.get(_scope(), "grace period", lambda ids: {}, far, 0.95) is None
    assert cache.get(_scope(departments=("*",)), "the policy's waiting period", lambda ids: {}, near, 0.95) is None


@pytest.fixture
def cached_chain(chain_env: dict, tmp_path: Path) -> Any:
    from assistant.chain import build_assistant
    from ingest import pipeline

    settings = chain_env["settings"].model_copy(update={"home": tmp_path / "home", "cache": True})
    shutil.copytree(chain_env["settings"].home / "adapters", settings.home / "adapters")
    docs = tmp_path / "docs"
    shutil.copytree(chain_env["settings"].home.parent / "docs", docs)
    pipeline.add_paths(settings, [docs])
    return build_assistant(settings, runtime=chain_env["runtime"], tools=chain_env["assistant"].tools), docs


def test_the_chain_serves_repeats_from_the_cache_and_drops_them_when_things_change(cached_chain: Any) -> None:
    from core import registry
    from ingest import pipeline

    a, docs = cached_chain
    first = a.ask(Q_RAG, STAFF)
    assert first.model_answer == A_RAG and first.cached_from is None
    events: list[tuple[str, Any]] = []
    again = a.ask(Q_RAG.replace("？", "?"), STAFF, on_event=lambda k, p: events.append((k, p)))
    assert again.cached_from == first.audit_id and again.answer == first.answer and again.shown == first.shown
    assert ("status", "cached") in events and not any(k == "token" for k, _ in events)
    assert "retrieval" not in again.timings  # the cache ended the turn after its first stage
    rec = AuditLog(a.settings.audit_db).get(again.audit_id)
    assert rec["cached_from"] == first.audit_id and rec["answer"] == first.answer and rec["channel"] == "ui"
    assert again.to_dict()["cached"] is True
    # another department's user: another scope
    assert a.ask(Q_RAG, User("li", "claims", "claims")).cached_from is None
    # asked not to, or thinking switched on: answered afresh
    assert a.ask(Q_RAG, STAFF, use_cache=False).cached_from is None
    # the adapter promoted (here: re-activated): its earlier answers are not served
    registry.promote(a.settings, "claims@v1")
    assert a.ask(Q_RAG, STAFF).cached_from is None
    assert a.ask(Q_RAG, STAFF).cached_from is not None
    # the cited document re-ingested with other words: a new version, the entry dropped
    claims = docs / "claims.md"
    claims.write_text(claims.read_text(encoding="utf-8").replace("十日内", "十五日内"), encoding="utf-8")
    pipeline.add_paths(a.settings, [docs])
    fresh = a.ask(Q_RAG, STAFF)
    assert fresh.cached_from is None and all("十日内" not in p.text for p in fresh.passages)
    # a look-up rests on a live record: never cached
    assert a.ask(Q_TOOL, STAFF).tool_calls and a.ask(Q_TOOL, STAFF).cached_from is None


def test_a_page_passage_widened_by_its_neighbours_is_served_again(chain_env: dict, tmp_path: Path) -> None:
    """A PDF page's passage joins its matching chunks: the entry is checked against the chunks as stored, so
    the repeat is served (and a change to the page's text is still noticed)."""
    from assistant.chain import build_assistant
    from core.testing.pdfs import make_pdf
    from ingest import pipeline

    settings = chain_env["settings"].model_copy(update={"home": tmp_path / "home", "cache": True, "chunk_size": 40,
                                                        "chunk_overlap": 0, "min_chunk_tokens": 0})
    docs = tmp_path / "docs"
    docs.mkdir()
    clauses = [f"Clause {i}. The waiting period for plan {i} is {10 * i} days after the policy starts, and claims "
               f"for illness that begins within the waiting period of plan {i} are declined." for i in range(1, 5)]
    make_pdf(docs / "plans.pdf", [" ".join(clauses)])
    pipeline.add_paths(settings, [docs])
    a = build_assistant(settings, runtime=chain_env["runtime"], tools=chain_env["assistant"].tools)
    question = "What is the waiting period for plan 2 and plan 3?"
    first = a.ask(question, STAFF)
    stored = a.retriever("default").chunk_texts([p.chunk_id for p in first.passages])
    assert any(p.text != stored[p.chunk_id] for p in first.passages)  # a widened passage
    assert a.ask(question, STAFF).cached_from == first.audit_id
