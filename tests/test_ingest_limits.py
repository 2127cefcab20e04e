"""Hostile files at ingest (issue 10): each test performs the attack through the real loaders, the real
pipeline (worker process, real embeddings, real FAISS) or the real CLI."""

from __future__ import annotations

import time
import zipfile
from pathlib import Path

import docx
import pytest
from typer.testing import CliRunner

from core.errors import FileRejected
from core.settings import Settings
from ingest import pipeline
from ingest.cli import app
from ingest.loaders import ParseOptions, load_file

runner = CliRunner()
GOOD = "# Claims\n\nPaid claims are kept ten years in the archive.\n"


def _good(d: Path) -> Path:
    p = d / "good.md"
    p.write_text(GOOD, encoding="utf-8")
    return p


@pytest.mark.parametrize("tag", ["p", "dd", "h2", "blockquote"])
def test_html_nested_1000_deep_emits_each_text_once(docs_dir: Path, tag: str) -> None:
    depth = 1000
    path = docs_dir / "nested.html"
    body = "".join(f"<div><{tag}>level {i} words" for i in range(depth)) + f"</{tag}></div>" * depth
    path.write_text(f"<html><body>{body}</body></html>", encoding="utf-8")
    t0 = time.perf_counter()
    text = load_file(path).pages[0].text
    assert time.perf_counter() - t0 < 10
    for i in (0, 1, depth // 2, depth - 1):
        assert text.count(f"level {i} words") == 1
    # every text once: the output is no bigger than the text the file holds
    assert len(text) < 2 * sum(len(f"level {i} words") for i in range(depth))


def test_html_nested_tables_and_lists_keep_text_once(docs_dir: Path) -> None:
    path = docs_dir / "t.html"
    inner = "<table><tr><td>inner cell</td></tr></table>"
    path.write_text(
        "<html><body><ul><li>one<ul><li>two</li></ul></li></ul>"
        f"<table><tr><th>K</th><th>V</th></tr><tr><td>a</td><td>{inner}</td></tr></table></body></html>",
        encoding="utf-8",
    )
    text = load_file(path).pages[0].text
    assert text.count("two") == 1 and text.count("inner cell") == 1
    assert "| K | V |" in text and "| a | inner cell |" in text


def _docx(path: Path, text: str = "Rates are reviewed yearly.") -> Path:
    d = docx.Document()
    d.add_paragraph(text)
    d.save(str(path))
    return path


def _add_member(path: Path, name: str, data: bytes) -> None:
    with zipfile.ZipFile(path, "a", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(name, data)


def test_docx_zip_bomb_refused(docs_dir: Path) -> None:
    path = _docx(docs_dir / "bomb.docx")
    _add_member(path, "word/media/filler.bin", b"\0" * (24 * 2**20))  # 24 MB of zeros, ~24 kB zipped
    assert path.stat().st_size < 200_000
    with pytest.raises(FileRejected) as info:
        load_file(path, options=ParseOptions(max_unzipped_bytes=16 * 2**20))
    assert "zip bomb" in info.value.reason and "ASSISTANT_MAX_UNZIPPED_MB" in info.value.reason


def _million_empty_paragraphs(path: Path, n: int = 1_000_000) -> Path:
    """The attack: a small DOCX whose body is a million empty paragraphs."""
    _docx(path)
    with zipfile.ZipFile(path) as zf:
        parts = {i.filename: zf.read(i.filename) for i in zf.infolist()}
    xml = parts["word/document.xml"].decode("utf-8")
    start = xml.index("<w:body>") + len("<w:body>")
    parts["word/document.xml"] = (xml[:start] + "<w:p/>" * n + xml[start:]).encode("utf-8")
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in parts.items():
            zf.writestr(name, data)
    return path


def test_docx_million_empty_paragraphs_skipped_by_the_paragraph_cap(settings: Settings, docs_dir: Path) -> None:
    bomb = _million_empty_paragraphs(docs_dir / "empty-paras.docx")
    assert bomb.stat().st_size < 200_000
    s = settings.model_copy(update={"max_paragraphs": 50_000})
    t0 = time.perf_counter()
    report = pipeline.add_paths(s, [bomb, _good(docs_dir)])
    assert time.perf_counter() - t0 < 120
    status = {r.path.name: r for r in report.results}
    assert status["good.md"].status == "added"
    assert status["empty-paras.docx"].status == "failed"
    assert "ASSISTANT_MAX_PARAGRAPHS" in status["empty-paras.docx"].reason


def test_slow_parse_is_stopped_by_the_time_limit(settings: Settings, docs_dir: Path) -> None:
    bomb = _million_empty_paragraphs(docs_dir / "slow.docx")
    s = settings.model_copy(update={"parse_timeout_s": 2.0, "max_paragraphs": 10_000_000})
    t0 = time.perf_counter()
    report = pipeline.add_paths(s, [bomb, _good(docs_dir)])
    assert time.perf_counter() - t0 < 60  # the lock is not held while the parse would go on for minutes
    status = {r.path.name: r for r in report.results}
    assert status["slow.docx"].status == "failed"
    assert "ASSISTANT_PARSE_TIMEOUT_S" in status["slow.docx"].reason
    assert status["good.md"].status == "added"  # a fresh worker parsed the next file
    assert pipeline.search(s, "how long are paid claims kept", k=1)[0].source == "good.md"


def test_text_per_file_capped(docs_dir: Path) -> None:
    path = docs_dir / "big.md"
    path.write_text("word " * 50_000, encoding="utf-8")
    with pytest.raises(FileRejected) as info:
        load_file(path, options=ParseOptions(max_text_chars=100_000))
    assert "ASSISTANT_MAX_TEXT_CHARS" in info.value.reason


def test_nul_bytes_txt_refused_as_binary(settings: Settings, docs_dir: Path) -> None:
    path = docs_dir / "nul.txt"
    path.write_bytes(b"\x00" * 4096)
    with pytest.raises(FileRejected) as info:
        load_file(path)
    assert "binary" in info.value.reason
    report = pipeline.add_paths(settings, [path, _good(docs_dir)])
    assert [r.status for r in report.results] == ["failed", "added"]


def test_bomless_utf16_text_still_read(docs_dir: Path) -> None:
    path = docs_dir / "u16.txt"
    path.write_bytes("第一条 犹豫期十五日。Cooling-off is 15 days.\n".encode("utf-16-le"))
    assert load_file(path).pages[0].text.startswith("第一条 犹豫期十五日")


@pytest.mark.parametrize("name", ["report\u202egpj.md", "a\nb.md", "x\u2067y.md", "tab\there.md"])
def test_spoofing_file_names_refused(settings: Settings, docs_dir: Path, name: str) -> None:
    path = docs_dir / name
    path.write_text(GOOD, encoding="utf-8")
    report = pipeline.add_paths(settings, [path, _good(docs_dir)])
    bad = report.results[0]
    assert bad.status == "failed" and "rename" in bad.reason
    assert report.results[1].status == "added"
    result = runner.invoke(app, ["add", str(path), "--home", str(settings.home)])
    assert result.exit_code == 1
    assert "\u202e" not in result.output and "\u2067" not in result.output
    assert "rename the file" in result.output


def test_rich_markup_in_paths_does_not_crash_the_cli(settings: Settings, docs_dir: Path) -> None:
    folder = docs_dir / "drafts["
    folder.mkdir()
    path = folder / "v2].md"  # the path reads drafts[/v2].md: a Rich closing tag
    path.write_text(GOOD, encoding="utf-8")
    (folder / "[bold]nul.txt").write_bytes(b"\x00" * 64)
    result = runner.invoke(app, ["add", str(folder), "--home", str(settings.home)])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert "drafts[/v2].md" in result.output
    assert "drafts[/[bold]nul.txt" in result.output and "binary" in result.output
    assert [d["source"] for d in pipeline.list_documents(settings)] == ["v2].md"]
    listed = runner.invoke(app, ["list", "--home", str(settings.home)])
    assert listed.exit_code == 0 and "v2].md" in listed.output
    found = runner.invoke(app, ["search", "paid claims archive", "--home", str(settings.home)])
    assert found.exit_code == 0 and "v2].md" in found.output
