"""Knowledge bases on Milvus (real Milvus Lite in each test's home, the real embedding model): ingest and
search inside the user's access, atomic versions behind an alias, incremental re-ingest, FAISS → Milvus
migration, parallel ingest workers, and a Milvus that cannot be reached."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from assistant.backends.scripted import ScriptedChat
from assistant.chain import Assistant
from assistant.chain.retrieval import HybridRetriever
from assistant.tools.demo.business_db import ensure_business_db
from assistant.tools.demo.tools import demo_registry
from core.audit import AuditLog
from core.errors import KnowledgeBaseBusy, KnowledgeBaseUnavailable
from core.identity import User
from core.settings import Settings
from ingest import milvus_store, pipeline
from ingest.cli import app
from ingest.milvus_store import MilvusKnowledgeBase
from ingest.store import KnowledgeBase

DOCS = {
    "claims.md": "# 理赔规则\n\n## 第一条 报案\n\n出险后十日内拨打 95500-88 报案，并提供保单号。\n\n"
                 "## 第二条 审批\n\n5 万元以内由理赔专员审批，30 万元以上报理赔负责人审批。\n",
    "codes.txt": "内部代码表\n\n产品代码 AX-7731 对应安心意外伤害保险。\n",
}
# many HR passages that answer the attack question far better than anything the claims staff may read
HR = "".join(f"## {i}. Salary band {i}\n\nThe salary of grade {i} staff is {40 + i},000 per year, paid monthly; "
             f"salary reviews for grade {i} happen every April.\n\n" for i in range(1, 13))


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home", vector_store="milvus")


@pytest.fixture
def built(settings: Settings, docs_dir: Path) -> Settings:
    for name, text in DOCS.items():
        (docs_dir / name).write_text(text, encoding="utf-8")
    (docs_dir / "salaries.md").write_text("# Salary handbook\n\n" + HR, encoding="utf-8")
    pipeline.add_paths(settings, [docs_dir / "claims.md", docs_dir / "codes.txt"], department="claims")
    pipeline.add_paths(settings, [docs_dir / "salaries.md"], department="hr")
    return settings


def test_kb_is_in_milvus_and_search_finds_the_clause(built: Settings) -> None:
    kb = KnowledgeBase(built)
    assert isinstance(kb, MilvusKnowledgeBase) and kb.exists()
    assert not (built.kb_dir("default") / "versions").exists()  # no version files: all of it is in Milvus
    assert kb.read_manifest()["documents"]
    res = HybridRetriever(built).retrieve("谁审批30万元以上的理赔", k=3)
    assert res.passages[0].hit.source == "claims.md" and "理赔负责人" in res.passages[0].hit.text
    assert res.passages[0].dense is not None and res.passages[0].bm25 is not None
    assert pipeline.list_documents(built) and pipeline.kb_stats(built)["chunks"] > 4


def test_a_reader_holds_codes_and_fetches_the_passages_it_returns(built: Settings,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A reader keeps per chunk only integer codes (document, department, page); the texts and metadata of the
    chunks a query returns come from Milvus by position, through a bounded cache, and equal what was stored."""
    kb = KnowledgeBase(built)
    version = kb.current_version()
    stored = {r["pos"]: r for r in kb.rows(version, ["chunk_id", "text", "meta"])}
    index = kb.open_index(version)
    assert len(index) == len(stored) and not hasattr(index, "texts")
    assert {index.doc_code.dtype, index.dept_code.dtype, index.page.dtype} == {np.dtype(np.int32)}
    index._cache_rows = 2
    got = index.rows(list(stored))
    assert got == {i: (r["chunk_id"], r["text"], r["meta"]) for i, r in stored.items()}
    assert len(index._cache) == 2
    vec = np.asarray(kb.rows(version, ["vector"])[0]["vector"], dtype=np.float32)
    cos = index.dense_of(vec, list(stored))  # from the fetched vectors; Milvus's own search agrees
    assert cos[0] == pytest.approx(1.0, abs=1e-5)
    assert all(cos[i] == pytest.approx(s, abs=1e-5) for i, s in index.dense(vec, len(stored)))
    hr = index.mask(["HR"], None)  # departments compare lowercased, as the Milvus filter does
    assert hr.sum() == sum(r["meta"]["department"] == "hr" for r in stored.values()) > 0
    assert index.mask(None, ["codes.txt"]).sum() == sum(r["meta"]["source"] == "codes.txt" for r in stored.values())
    assert index.texts_of([stored[0]["chunk_id"], "gone"]) == {stored[0]["chunk_id"]: stored[0]["text"]}

    # a version written without its columns blob: the reader reads them from the rows
    read_blob = MilvusKnowledgeBase._read_blob
    monkeypatch.setattr(MilvusKnowledgeBase, "_read_blob", lambda self, c, v, kind: None if kind == "columns"
                        else read_blob(self, c, v, kind))
    older = kb.open_index(version)
    for name in ("doc_code", "dept_code", "page"):
        assert getattr(older, name).tolist() == getattr(index, name).tolist()
    assert (older.doc_ids, older.sources, older.departments) == (index.doc_ids, index.sources, index.departments)
    assert [older.doc_ids[c] for c in older.doc_code] == [stored[i]["meta"]["doc_id"] for i in range(len(stored))]


def test_staff_never_get_another_departments_chunk(built: Settings) -> None:
    """The attack: a claims user asks what only HR's chunks answer, naming HR's document; the filter is inside
    both Milvus searches, so every passage is the claims department's and k of them still come back."""
    retriever = HybridRetriever(built)
    allowed = sum(d["chunks"] for d in KnowledgeBase(built).read_manifest()["documents"].values()
                  if d["department"] == "claims")
    for question in ["What is the salary of grade 3 staff in the Salary handbook?", "salary review April",
                     "AX-7731 salary"]:
        res = retriever.retrieve(question, k=3, departments=["claims"])
        assert res.passages, question
        assert {p.hit.metadata["department"] for p in res.passages} == {"claims"}, question
        hits = pipeline.search(built, question, k=3, departments=["claims"])
        assert len(hits) == min(3, allowed) and {h.metadata["department"] for h in hits} == {"claims"}
    assert retriever.retrieve("salary of grade 3", k=3, departments=["finance"]).passages == []
    everyone = retriever.retrieve("salary of grade 3", k=3)
    assert everyone.passages[0].hit.metadata["department"] == "hr"


def test_reader_during_a_commit_sees_the_old_version_whole(built: Settings, docs_dir: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    kb = KnowledgeBase(built)
    old_version = kb.current_version()
    old_docs = set(kb.read_manifest()["documents"])
    seen: dict[str, object] = {}
    write_blob = MilvusKnowledgeBase._write_blob

    def mid_commit(self: MilvusKnowledgeBase, c: object, version: str, kind: str, value: object) -> None:
        write_blob(self, c, version, kind, value)
        if kind == "manifest":  # the new collection and its manifest are written; the alias has not moved yet
            reader = HybridRetriever(built)
            seen["version"] = reader.searcher.snapshot.version
            seen["docs"] = set(reader.searcher.snapshot.documents)
            seen["sources"] = set(reader.searcher.index.sources)

    monkeypatch.setattr(MilvusKnowledgeBase, "_write_blob", mid_commit)
    (docs_dir / "new.md").write_text("# 新规\n\n## 第一条\n\n犹豫期为十五天。\n", encoding="utf-8")
    pipeline.add_paths(built, [docs_dir / "new.md"], department="claims")
    assert seen == {"version": old_version, "docs": old_docs, "sources": {"claims.md", "codes.txt", "salaries.md"}}
    after = HybridRetriever(built)
    assert after.searcher.snapshot.version != old_version and "new.md" in after.searcher.index.sources


def test_a_commit_that_dies_changes_nothing_and_leaves_nothing(built: Settings, docs_dir: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    kb = KnowledgeBase(built)
    before = kb.current_version()

    def dies(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt  # a kill after the chunks were written, before the manifest and the alias

    monkeypatch.setattr(MilvusKnowledgeBase, "_write_blob", dies)
    (docs_dir / "new.md").write_text("# 新规\n\n犹豫期为十五天。\n", encoding="utf-8")
    with pytest.raises(KeyboardInterrupt):
        pipeline.add_paths(built, [docs_dir / "new.md"])
    monkeypatch.undo()
    assert kb.current_version() == before and "new.md" not in {d["source"] for d in kb.read_manifest()["documents"]
                                                              .values()}
    client = milvus_store.client(built, kb.name)
    assert len([c for c in client.list_collections() if c.startswith(kb.prefix)]) == 3  # 2 kept + the orphan
    pipeline.add_paths(built, [docs_dir / "new.md"])  # the next writer drops the orphan
    kept = [c for c in client.list_collections() if c.startswith(kb.prefix)]
    assert len(kept) == 2 and kb.collection(kb.current_version()) in kept


def test_reingest_embeds_only_changed_documents(built: Settings, docs_dir: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    embedded: list[str] = []
    embed = pipeline.Ingestor.embed

    def counting(self: pipeline.Ingestor, texts: list[str], tokens: list[int] | None = None) -> list[list[float]]:
        embedded.extend(texts)
        return embed(self, texts, tokens)

    monkeypatch.setattr(pipeline.Ingestor, "embed", counting)
    report = pipeline.add_paths(built, [docs_dir])
    assert report.count("unchanged") == 3 and embedded == []
    (docs_dir / "codes.txt").write_text("内部代码表\n\n产品代码 AX-7731 对应安心意外伤害保险。\n\n产品代码 BX-1 对应团体险。\n",
                                        encoding="utf-8")
    report = pipeline.add_paths(built, [docs_dir])
    assert report.count("updated") == 1 and embedded and all("代码" in t or "codes" in t for t in embedded)
    res = HybridRetriever(built).retrieve("BX-1 对应什么", k=2)
    assert res.passages[0].hit.source == "codes.txt" and "BX-1" in res.passages[0].hit.text
    # the salaries (unchanged) were copied from the previous version's collection with their vectors
    assert HybridRetriever(built).retrieve("salary of grade 3", k=1).passages[0].hit.source == "salaries.md"


def test_migrate_copies_a_faiss_kb_without_reembedding(tmp_path: Path, docs_dir: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    faiss = Settings(home=tmp_path / "home", vector_store="faiss")
    for name, text in DOCS.items():
        (docs_dir / name).write_text(text, encoding="utf-8")
    pipeline.add_paths(faiss, [docs_dir], department="claims")
    question = "30万元以上谁审批"
    expected = [(p.hit.chunk_id, round(p.score, 4)) for p in HybridRetriever(faiss).retrieve(question, 3).passages]

    def no_embedding(*args: object, **kwargs: object) -> None:
        raise AssertionError("migration must reuse the vectors")

    monkeypatch.setattr(pipeline.Ingestor, "embed", no_embedding)
    monkeypatch.setenv("ASSISTANT_HOME", str(tmp_path / "home"))
    result = CliRunner().invoke(app, ["migrate", "--to", "milvus", "--kb", "default"])
    assert result.exit_code == 0, result.output
    assert "default" in result.output and "Milvus" in result.output
    milvus = Settings(home=tmp_path / "home", vector_store="milvus")
    assert KnowledgeBase(milvus).read_manifest()["documents"] == KnowledgeBase(faiss).read_manifest()["documents"]
    got = [(p.hit.chunk_id, round(p.score, 4)) for p in HybridRetriever(milvus).retrieve(question, 3).passages]
    assert got == expected
    assert CliRunner().invoke(app, ["migrate", "--to", "pgvector"]).exit_code == 2


def test_parallel_workers_fill_one_version(settings: Settings, docs_dir: Path) -> None:
    for name, text in DOCS.items():
        (docs_dir / name).write_text(text, encoding="utf-8")
    (docs_dir / "salaries.md").write_text("# Salary handbook\n\n" + HR, encoding="utf-8")
    kb = KnowledgeBase(settings)
    report = pipeline.add_paths(settings, [docs_dir], department="claims", workers=2)
    assert report.count("added") == 3 and not report.failed
    assert kb.current_version() == report.version  # one commit for all the workers' files
    one = Settings(home=settings.home.parent / "one", vector_store="milvus")
    pipeline.add_paths(one, [docs_dir], department="claims")
    ids = lambda s: sorted(c for d in KnowledgeBase(s).read_manifest()["documents"].values()  # noqa: E731
                           for c in d["chunk_ids"])
    assert ids(settings) == ids(one)
    question = "Who reviews salaries in April?"
    assert ([p.hit.chunk_id for p in HybridRetriever(settings).retrieve(question, 3).passages]
            == [p.hit.chunk_id for p in HybridRetriever(one).retrieve(question, 3).passages])


def test_unreachable_milvus_stops_ingest_and_the_chat_says_so(tmp_path: Path, docs_dir: Path) -> None:
    down = Settings(home=tmp_path / "home", vector_store="milvus", milvus_uri="http://127.0.0.1:9")
    (docs_dir / "claims.md").write_text(DOCS["claims.md"], encoding="utf-8")
    with pytest.raises(KnowledgeBaseUnavailable) as caught:
        pipeline.add_paths(down, [docs_dir])
    message = str(caught.value)
    assert "http://127.0.0.1:9" in message and "ASSISTANT_MILVUS_URI" in message and "Nothing was changed" in message
    result = CliRunner().invoke(app, ["add", str(docs_dir)], env={"ASSISTANT_HOME": str(tmp_path / "home"),
                                                                  "ASSISTANT_VECTOR_STORE": "milvus",
                                                                  "ASSISTANT_MILVUS_URI": "http://127.0.0.1:9"})
    assert result.exit_code == 2 and "127.0.0.1:9" in result.output and "Traceback" not in result.output
    chain = Assistant(down, ScriptedChat(replies=["made up"], seen=[]),
                      demo_registry(ensure_business_db(tmp_path / "business.db")), AuditLog(tmp_path / "audit.db"),
                      "scripted")
    ans = chain.ask("谁审批理赔?", User("ann", department="claims"))
    assert ans.status == "error" and "unavailable" in ans.answer and "made up" not in ans.answer
    assert not ans.passages


def test_processes_of_one_machine_share_a_milvus_lite_file(built: Settings, docs_dir: Path, tmp_path: Path) -> None:
    """Milvus Lite opens its file in one process: the UI, an ingest and a training job of one machine share it
    through the process that serves it, and the next one takes over when that process is gone."""
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parent.parent
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASSISTANT_")} | {
        "ASSISTANT_HOME": str(built.home), "ASSISTANT_VECTOR_STORE": "milvus", "PYTHONPATH": str(root)}
    (docs_dir / "more").mkdir()
    (docs_dir / "more" / "leave.md").write_text("# 休假\n\n年假为每年十五天，须提前一周申请。\n", encoding="utf-8")
    assert milvus_store.client(built, "default")  # this process serves the file
    ingest = subprocess.run([sys.executable, "-m", "ingest", "add", str(docs_dir / "more")], env=env, cwd=tmp_path,
                            capture_output=True, text=True, timeout=300)
    assert ingest.returncode == 0, ingest.stderr  # another process wrote through this one's server
    assert {d["source"] for d in pipeline.list_documents(built)} >= {"claims.md", "leave.md"}
    assert "年假" in HybridRetriever(built).retrieve("年假有几天", k=1).passages[0].hit.text

    # this process lets the file go (as when it exits): a reader process takes over and serves it itself
    opened = HybridRetriever(built)
    assert opened.retrieve("年假有几天", k=1).passages
    path = str(Path(built.milvus_target).absolute())
    milvus_store.forget_client(built)
    milvus_store._release(path)
    reader = ("from core.settings import Settings; from ingest import pipeline; "
              "print(sorted(d['source'] for d in pipeline.list_documents(Settings())))")
    listed = subprocess.run([sys.executable, "-c", reader], env=env, cwd=tmp_path, capture_output=True, text=True,
                            timeout=300)
    assert listed.returncode == 0, listed.stderr
    assert "leave.md" in listed.stdout and "claims.md" in listed.stdout
    # and this process comes back through whoever serves it now, its open version searchable (loaded again)
    assert "leave.md" in {d["source"] for d in pipeline.list_documents(built)}
    assert "年假" in opened.retrieve("年假有几天", k=1).passages[0].hit.text


def test_writers_on_two_machines_exclude_each_other_through_postgresql(tmp_path: Path, postgres_url: str) -> None:
    """Two ingest nodes (each its own disk, so each its own file lock) share one Milvus and one PostgreSQL: the
    advisory lock there lets one write at a time, the busy error names the holder, and a holder that is killed
    frees it (PostgreSQL ends its session)."""
    node_a = Settings(home=tmp_path / "node-a", vector_store="milvus", milvus_uri=str(tmp_path / "shared.db"),
                      database_url=postgres_url, lock_timeout_s=0.5)
    node_b = node_a.model_copy(update={"home": tmp_path / "node-b"})
    with KnowledgeBase(node_a).acquire():
        with pytest.raises(KnowledgeBaseBusy, match=f"assistant ingest .* pid {os.getpid()}"):
            KnowledgeBase(node_b).acquire()
    with KnowledgeBase(node_b).acquire():
        pass

    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom core.settings import Settings\nfrom ingest.store import "
         "KnowledgeBase\nheld = KnowledgeBase(Settings.model_validate_json(sys.argv[1])).acquire()\n"
         "print('held', flush=True)\ntime.sleep(300)\n", node_a.model_dump_json()],
        cwd=Path(__file__).resolve().parents[1], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(KnowledgeBaseBusy, match=f"pid {holder.pid}"):
            KnowledgeBase(node_b).acquire()
    finally:
        holder.kill()
        holder.wait()
    with KnowledgeBase(node_b.model_copy(update={"lock_timeout_s": 10.0})).acquire():
        pass
