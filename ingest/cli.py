"""`ingest` CLI: a thin Typer shell over `ingest.pipeline`."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from core import access
from core.audit import record_event
from core.clikit import err, out, safe
from core.clikit import print_json as _print_json
from core.clikit import settings_or_exit as _settings
from core.clikit import user_errors as _user_errors
from ingest import pipeline
from ingest.textutil import flatten

app = typer.Typer(
    help="Build and query the assistant's knowledge bases.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

KbOpt = Annotated[str | None, typer.Option("--kb", help="Knowledge base name (default: 'default').")]
HomeOpt = Annotated[Path | None, typer.Option("--home", help="Data home (ASSISTANT_HOME).")]
EmbOpt = Annotated[str | None, typer.Option("--embedding-model", help="Embedding model (ASSISTANT_EMBEDDING_MODEL).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


def _run_with_progress(run, title: str) -> pipeline.IngestReport:
    """Files advance the bar; pages parsed and chunks embedded update live, with their rates."""
    t0 = time.perf_counter()
    totals = {"pages": 0, "chunks": 0}
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("files"),
        TextColumn("{task.fields[pages]} pages · {task.fields[chunks]} chunks · {task.fields[rate]}"),
        TimeElapsedColumn(),
        console=err,
        transient=False,
    )
    task = progress.add_task(title, total=None, pages=0, chunks=0, rate="")

    def refresh(advance: int = 0) -> None:
        dt = max(time.perf_counter() - t0, 1e-6)
        rate = f"{totals['pages'] / dt:.1f} pages/s, {totals['chunks'] / dt:.1f} chunks/s"
        progress.update(task, advance=advance, pages=totals["pages"], chunks=totals["chunks"], rate=rate)

    def on_start(n: int) -> None:
        progress.update(task, total=n)

    def on_step(kind: str, n: int) -> None:
        totals["pages" if kind == "page" else "chunks"] += n
        refresh()

    def on_file(r: pipeline.FileResult) -> None:
        refresh(advance=1)
        style = {"failed": "red", "unchanged": "dim", "duplicate": "yellow"}.get(r.status, "green")
        detail = f"{r.chunks} chunks" if r.status in ("added", "updated") else (r.reason or "")
        progress.console.print(f"[{style}]{r.status:>9}[/{style}] {safe(r.path)}  {safe(detail)}")
        for w in r.warnings:
            progress.console.print(f"          [yellow]warning:[/yellow] {safe(w)}")

    with progress:
        return run(on_start=on_start, on_file=on_file, on_step=on_step)


def _summary(report: pipeline.IngestReport) -> None:
    t = Table(title=f"knowledge base '{safe(report.kb)}'", show_header=False, box=None)
    for status in ("added", "updated", "unchanged", "duplicate", "failed"):
        if report.count(status):
            t.add_row(status, str(report.count(status)))
    t.add_row("pages / chunks", f"{report.pages} / {report.chunks}")
    t.add_row("time", f"{report.seconds:.1f} s")
    t.add_row("version", safe(report.version))
    err.print(t)
    for w in report.warnings:
        err.print(f"[yellow]warning:[/yellow] {safe(w)}")
    if report.failed:
        err.print(f"[red]{len(report.failed)} file(s) could not be ingested:[/red]")
        for r in report.failed:
            err.print(f"  [red]✗[/red] {safe(r.path)}: {safe(r.reason)}")


@app.command()
def add(
    paths: Annotated[list[Path], typer.Argument(help="Files or folders (recursive).")],
    kb: KbOpt = None,
    department: Annotated[
        str | None, typer.Option("--department", "-d", help="Access tag for these documents.")
    ] = None,
    home: HomeOpt = None,
    embedding_model: EmbOpt = None,
    chunk_size: Annotated[int | None, typer.Option(help="Max tokens per chunk.")] = None,
    chunk_overlap: Annotated[int | None, typer.Option(help="Token overlap of split clauses.")] = None,
    workers: Annotated[int, typer.Option(min=1, max=64, help="Processes that parse and embed in parallel; one "
                                         "commit stores their work as one version.")] = 1,
    json_out: JsonOpt = False,
) -> None:
    """Add or update documents; unchanged files are skipped, bad files reported."""
    s = _settings(home=home, embedding_model=embedding_model, chunk_size=chunk_size, chunk_overlap=chunk_overlap)
    with _user_errors():
        report = _run_with_progress(lambda **cb: pipeline.add_paths(s, paths, kb, department, workers=workers, **cb),
                                    "ingesting")
    record_event(s.audit_db, "document_ingest", _cli_user(), kb=report.kb, department=access.tag(department),
                 files=[{"file": r.path.name, "status": r.status, "doc_id": r.doc_id, "reason": r.reason}
                        for r in report.results])
    if json_out:
        _print_json(_report_dict(report))
    _summary(report)
    if report.failed:
        raise typer.Exit(1)


def _cli_user() -> str:
    """Who ran the command, for the audit log (the same form as `finetune promote`)."""
    import getpass

    return f"cli:{getpass.getuser()}"


def _report_dict(report: pipeline.IngestReport) -> dict[str, Any]:
    return {
        "kb": report.kb,
        "version": report.version,
        "seconds": round(report.seconds, 3),
        "warnings": report.warnings,
        "files": [
            {
                "path": str(r.path),
                "status": r.status,
                "doc_id": r.doc_id,
                "pages": r.pages,
                "chunks": r.chunks,
                "reason": r.reason,
                "warnings": r.warnings,
            }
            for r in report.results
        ],
    }


@app.command("list")
def list_cmd(kb: KbOpt = None, home: HomeOpt = None, json_out: JsonOpt = False) -> None:
    """List the documents of a knowledge base."""
    s = _settings(home=home)
    with _user_errors():
        docs = pipeline.list_documents(s, kb)
    if json_out:
        _print_json(docs)
        return
    t = Table("doc id", "source", "format", "pages", "chunks", "department", "ingested")
    for d in docs:
        t.add_row(
            safe(d["doc_id"]),
            safe(d["source"]),
            safe(d["format"]),
            str(d["pages"] or "-"),
            str(d["chunks"]),
            safe(d.get("department") or "-"),
            safe(d["ingested_at"]),
        )
    out.print(t)


@app.command()
def remove(
    doc: Annotated[str, typer.Argument(help="Doc id, file name or path (see `ingest list`).")],
    kb: KbOpt = None,
    home: HomeOpt = None,
) -> None:
    """Remove a document and its chunks."""
    s = _settings(home=home)
    with _user_errors():
        removed = pipeline.remove_document(s, doc, kb)
    record_event(s.audit_db, "document_remove", _cli_user(), kb=kb or s.default_kb, doc_id=removed.get("doc_id"),
                 source=removed["source"], department=removed.get("department"))
    err.print(f"removed {safe(removed['source'])} ({removed['chunks']} chunks)")


@app.command()
def stats(kb: KbOpt = None, home: HomeOpt = None, embedding_model: EmbOpt = None, json_out: JsonOpt = False) -> None:
    """Show the size and settings of a knowledge base."""
    s = _settings(home=home, embedding_model=embedding_model)
    with _user_errors():
        data = pipeline.kb_stats(s, kb)
    if json_out:
        _print_json(data)
        return
    t = Table(show_header=False, box=None)
    for key, value in data.items():
        t.add_row(safe(key), safe(json.dumps(value, ensure_ascii=False) if isinstance(value, dict) else value))
    out.print(t)


@app.command()
def search(
    query: Annotated[str, typer.Argument(help="Question or keywords.")],
    k: Annotated[int, typer.Option("--k", "-k", min=1, help="Number of hits.")] = 5,
    kb: KbOpt = None,
    department: Annotated[list[str] | None, typer.Option("--department", "-d", help="Only these access tags.")] = None,
    home: HomeOpt = None,
    embedding_model: EmbOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Semantic search over a knowledge base."""
    s = _settings(home=home, embedding_model=embedding_model)
    with _user_errors():
        hits = pipeline.search(s, query, k=k, kb_name=kb, departments=department)
    if json_out:
        _print_json([h.to_dict() | _page_fields(h) for h in hits])
        return
    if not hits:
        out.print("no results")
    for i, h in enumerate(hits, 1):
        page = h.metadata.get("page_label") or (f"p.{h.page + 1}" if h.page is not None else "")
        out.print(f"[bold]{i}. {safe(h.source)}[/bold] {safe(page)} [cyan]{safe(h.clause)}[/cyan]  score={h.score:.3f}")
        snippet = flatten(h.text)
        out.print(f"   {safe(snippet[:300])}{'…' if len(snippet) > 300 else ''}")


def _page_fields(hit: Any) -> dict[str, Any]:
    """The citation label of sheets and slides and the OCR confidence of scanned pages, where present."""
    return {k: hit.metadata[k] for k in ("page_label", "ocr_confidence") if k in hit.metadata}


@app.command()
def rebuild(
    kb: KbOpt = None,
    home: HomeOpt = None,
    embedding_model: EmbOpt = None,
    chunk_size: Annotated[int | None, typer.Option(help="Max tokens per chunk.")] = None,
) -> None:
    """Re-chunk and re-embed everything (after changing the embedding model or chunk settings)."""
    s = _settings(home=home, embedding_model=embedding_model, chunk_size=chunk_size)
    with _user_errors():
        report = _run_with_progress(lambda **cb: pipeline.rebuild(s, kb, **cb), "rebuilding")
    _summary(report)
    if report.failed:
        raise typer.Exit(1)


@app.command()
def migrate(
    to: Annotated[str, typer.Option("--to", help="Target store: milvus (ASSISTANT_MILVUS_URI).")],
    kb: Annotated[str | None, typer.Option("--kb", help="Knowledge base name (default: every one).")] = None,
    home: HomeOpt = None,
) -> None:
    """Copy FAISS knowledge bases into Milvus as new versions (vectors reused, nothing re-embedded)."""
    if to != "milvus":
        err.print(f"[red]--to {safe(to)}: only 'milvus' is a migration target[/red]")
        raise typer.Exit(2)
    s = _settings(home=home)
    with _user_errors():
        from ingest.milvus_store import migrate as to_milvus
        from ingest.store import list_knowledge_bases

        names = [kb] if kb else list_knowledge_bases(s.model_copy(update={"vector_store": "faiss"}))
        if not names:
            err.print(f"no FAISS knowledge base under {safe(s.kb_root)} to migrate")
            raise typer.Exit(1)
        for name in names:
            done = to_milvus(s, name)
            out.print(f"{safe(done['kb'])}: {done['documents']} documents, {done['chunks']} chunks -> Milvus at "
                      f"{safe(done['uri'])} (version {done['version']}); set ASSISTANT_VECTOR_STORE=milvus to serve it")


def main() -> None:  # pragma: no cover
    app()
