"""The project's own vector store: real FAISS, JSON docstore, BM25 saved with each version, and the
migration of knowledge bases written in the LangChain community layout (index.faiss + index.pkl)."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest

from assistant.chain.retrieval import HybridRetriever
from core.errors import AssistantError
from core.settings import Settings
from ingest import lexical, pipeline
from ingest.embeddings import load_embeddings
from ingest.store import KnowledgeBase
from ingest.vectorstore import LocalVectorStore

# the FAISS store's own files (CURRENT, the BM25 file, a legacy pickle): not there when the suite runs on Milvus
faiss_files = pytest.mark.skipif(os.environ.get("ASSISTANT_VECTOR_STORE", "faiss") == "milvus",
                                 reason="reads the FAISS store's own files")

DOCS = {
    "claims.md": "# 理赔规则\n\n## 第一条 报案\n\n出险后十日内拨打 95500-88 报案，并提供保单号。\n\n"
                 "## 第二条 审批\n\n5 万元以内由理赔专员审批，30 万元以上报理赔负责人审批。\n",
    "hr.md": "# Staff handbook\n\n## 1. Leave\n\nEmployees get 15 days of annual leave per year.\n\n"
             "## 2. Expenses\n\nTravel expenses are reimbursed within 30 days with receipts.\n",
}


def _unit(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    v = rng.normal(size=(n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_store_add_delete_filter_and_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    vecs = _unit(rng, 6, 16)
    store = LocalVectorStore(None, 16)
    ids = store.add_embeddings(
        [(f"text {i}", v.tolist()) for i, v in enumerate(vecs)],
        metadatas=[{"chunk_id": f"c{i}", "dept": "a" if i % 2 else "b"} for i in range(6)],
        ids=[f"c{i}" for i in range(6)],
    )
    assert ids == [f"c{i}" for i in range(6)]
    top = store.similarity_search_with_score_by_vector(vecs[3].tolist(), k=2)
    assert top[0][0].id == "c3" and top[0][1] == pytest.approx(1.0, abs=1e-5)
    # the filter restricts the FAISS search itself: the best allowed chunk, not c3
    filtered = store.similarity_search_with_score_by_vector(vecs[3].tolist(), k=6, filter={"dept": "b"})
    assert {d.id for d, _ in filtered} == {"c0", "c2", "c4"}
    store.delete(["c1", "c3"])
    assert store.ids == ["c0", "c2", "c4", "c5"] and store.index.ntotal == 4
    assert store.similarity_search_with_score_by_vector(vecs[4].tolist(), k=1)[0][0].id == "c4"
    with pytest.raises(ValueError, match="duplicate"):
        store.add_embeddings([("again", vecs[0].tolist())], ids=["c0"])
    store.save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["docstore.json", "index.faiss"]
    again = LocalVectorStore.load(tmp_path)
    assert again.ids == store.ids and again.get_by_ids(["c5"])[0].page_content == "text 5"
    assert again.similarity_search_with_score_by_vector(vecs[5].tolist(), k=1)[0][0].id == "c5"


def test_store_is_a_langchain_vectorstore(tmp_path: Path) -> None:
    emb = load_embeddings("multilingual-e5-small")
    store = LocalVectorStore.from_texts(["Employees get 15 days of annual leave.", "出险后十日内报案。"], emb,
                                        metadatas=[{"n": 1}, {"n": 2}], ids=["leave", "claim"])
    docs = store.as_retriever(search_kwargs={"k": 1}).invoke("几天内报案？")
    assert docs[0].id == "claim" and docs[0].metadata == {"n": 2}


@faiss_files
def test_version_carries_its_bm25_index_and_readers_load_it(settings: Settings, docs_dir: Path) -> None:
    for name, text in DOCS.items():
        (docs_dir / name).write_text(text, encoding="utf-8")
    pipeline.add_paths(settings, [docs_dir])
    kb = KnowledgeBase(settings)
    folder = kb.version_dir()
    assert (folder / "bm25" / "ids.json").exists() and (folder / "docstore.json").exists()
    assert not list(folder.glob("*.pkl"))
    retriever = HybridRetriever(settings)
    assert retriever.bm25_loaded
    # prove the reader uses the saved file, not the docstore: replace the saved index by one in which
    # only the first chunk holds a made-up word; the BM25 leg must then find exactly that chunk
    ids = json.loads((folder / "bm25" / "ids.json").read_text())["ids"]
    swapped = lexical.build_bm25([["zqxjk"]] + [["other"]] * (len(ids) - 1))
    shutil.rmtree(folder / "bm25")
    lexical.save_bm25(folder, swapped, ids, {})
    res = HybridRetriever(settings).retrieve("zqxjk", k=3)
    assert [p.hit.chunk_id for p in res.passages if p.bm25] == [ids[0]]
    # a version whose BM25 files are gone still answers (rebuilt in memory), and says so
    shutil.rmtree(folder / "bm25")
    fallback = HybridRetriever(settings)
    assert not fallback.bm25_loaded
    assert fallback.retrieve("30 万元以上谁审批", k=1).passages[0].hit.source == "claims.md"


def _write_legacy_version(kb: KnowledgeBase) -> str:
    """Rewrite the live version the way the code before this store did: LangChain community FAISS
    `save_local` (index.faiss + a pickled InMemoryDocstore), same manifest, no BM25 files."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from langchain_community.docstore.in_memory import InMemoryDocstore
        from langchain_community.vectorstores import FAISS
        from langchain_community.vectorstores.utils import DistanceStrategy

    snap = kb.load()
    store = snap.store
    old = FAISS(embedding_function=load_embeddings("multilingual-e5-small"), index=store.index,
                docstore=InMemoryDocstore({d.id: d for d in store.documents()}),
                index_to_docstore_id=dict(store.index_to_docstore_id),
                distance_strategy=DistanceStrategy.MAX_INNER_PRODUCT)
    version = "20250101T000000-legacy00"
    target = kb.versions_dir / version
    old.save_local(str(target))
    shutil.copy(kb.version_dir() / "manifest.json", target / "manifest.json")
    for p in kb.versions_dir.iterdir():
        if p.name != version:
            shutil.rmtree(p)
    (kb.dir / "CURRENT").write_text(version + "\n")
    return version


@faiss_files
def test_legacy_knowledge_base_is_migrated_on_first_open(settings: Settings, docs_dir: Path) -> None:
    for name, text in DOCS.items():
        (docs_dir / name).write_text(text, encoding="utf-8")
    pipeline.add_paths(settings, [docs_dir])
    kb = KnowledgeBase(settings)
    chunk_ids = set(kb.load().store.ids)
    legacy = _write_legacy_version(kb)
    assert sorted(p.name for p in (kb.versions_dir / legacy).iterdir()) == ["index.faiss", "index.pkl",
                                                                             "manifest.json"]
    hits = pipeline.search(settings, "How many days of annual leave?", k=1)  # the first open migrates
    assert hits[0].source == "hr.md" and hits[0].clause.endswith("1. Leave")
    migrated = kb.current_version()
    assert migrated != legacy
    files = {p.name for p in (kb.versions_dir / migrated).iterdir()}
    assert files == {"index.faiss", "docstore.json", "bm25", "manifest.json"}
    assert set(kb.load().store.ids) == chunk_ids
    assert kb.read_manifest()["documents"].keys() == {d["doc_id"] for d in pipeline.list_documents(settings)}
    retriever = HybridRetriever(settings)
    assert retriever.bm25_loaded
    assert retriever.retrieve("30 万元以上的案件谁审批？", k=1).passages[0].hit.source == "claims.md"
    # writes continue on the migrated version
    (docs_dir / "more.md").write_text("# Parking\n\nStaff park in lot B.\n", encoding="utf-8")
    statuses = {r.path.name: r.status for r in pipeline.add_paths(settings, [docs_dir]).results}
    assert statuses == {"claims.md": "unchanged", "hr.md": "unchanged", "more.md": "added"}
    assert pipeline.search(settings, "Where do staff park?", k=1)[0].source == "more.md"


class _Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@faiss_files
def test_tampered_legacy_pickle_is_refused_not_executed(settings: Settings, docs_dir: Path, tmp_path: Path) -> None:
    (docs_dir / "hr.md").write_text(DOCS["hr.md"], encoding="utf-8")
    pipeline.add_paths(settings, [docs_dir])
    kb = KnowledgeBase(settings)
    legacy = _write_legacy_version(kb)
    marker = tmp_path / "pwned"
    (kb.versions_dir / legacy / "index.pkl").write_bytes(pickle.dumps((_Exploit(marker), {})))
    with pytest.raises(AssistantError, match="damaged.*refusing to load posix.system"):
        kb.load()
    assert not marker.exists()
    assert kb.current_version() == legacy  # nothing half-migrated
