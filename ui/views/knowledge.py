"""Knowledge base (admin): upload files → ingest with progress and a per-file result; list; remove.

Each upload is stored under its own folder (`uploads/KB/<random id>/NAME`), so a file never replaces another
one's bytes behind its citations; a file with the name of a document already in the knowledge base is refused
unless the admin explicitly replaces that document. Ingests and removals are audited."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pandas as pd
import streamlit as st

from assistant.app.users import Account
from core.audit import record_event
from core.errors import AssistantError
from core.files import atomic_write_bytes
from core.settings import Settings
from ingest import pipeline
from ingest.loaders import SUPPORTED_SUFFIXES
from ingest.store import KnowledgeBase, list_knowledge_bases
from ui import safe_markdown as md

KB_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")


def save_upload(settings: Settings, kb: str, name: str, data: bytes) -> Path:
    """One uploaded file kept as $ASSISTANT_HOME/uploads/KB/<random id>/NAME: a new document (own doc id,
    own file) however many uploads share its name."""
    folder = settings.home / "uploads" / kb / uuid.uuid4().hex[:12]
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / Path(name).name  # never a path the browser chose
    atomic_write_bytes(target, data)
    return target


def plan_uploads(settings: Settings, kb: str, files: list, replace: bool) -> tuple[list, dict[str, dict], list[str]]:
    """(files to ingest, {file name: document it replaces}, refusals). A name already in the knowledge base
    (or twice in one upload) is refused unless `replace` says to replace that document with the new file."""
    existing: dict[str, list[dict]] = {}
    if KnowledgeBase(settings, kb).exists():
        for d in pipeline.list_documents(settings, kb):
            existing.setdefault(d["source"], []).append(d)
    take, replaces, refused, seen = [], {}, [], set()
    for f in files:
        name = Path(f.name).name
        if name in seen:
            refused.append(f"{name}: uploaded twice in one go; only the first is ingested")
            continue
        seen.add(name)
        olds = existing.get(name, [])
        if olds and not replace:
            tags = ", ".join(d.get("department") or "everyone" for d in olds)
            refused.append(f"{name}: a document of this name is already in '{kb}' (visible to {tags}); not "
                           "ingested. Rename the file, or tick 'Replace documents of the same name' to replace it")
            continue
        if len(olds) > 1:
            refused.append(f"{name}: several documents have this name; remove the one to replace first")
            continue
        if olds:
            replaces[name] = olds[0]
        take.append(f)
    return take, replaces, refused


def _ingest(settings: Settings, kb: str, department: str | None, paths: list[Path]) -> pipeline.IngestReport:
    bar = st.progress(0.0, text="starting …")
    rows: list[dict] = []
    total = {"n": len(paths)}

    def on_start(n: int) -> None:
        total["n"] = max(n, 1)

    def on_file(r: pipeline.FileResult) -> None:
        rows.append({"file": r.path.name, "result": r.status, "pages": r.pages, "chunks": r.chunks,
                     "seconds": round(r.seconds, 1), "problem": r.reason or "; ".join(r.warnings)})
        bar.progress(len(rows) / total["n"], text=md.text(f"{len(rows)}/{total['n']} · {r.path.name}: {r.status}"))

    pages = {"n": 0}

    def on_step(kind: str, n: int) -> None:  # per page: a scanned PDF being read by OCR shows it moves
        if kind == "page":
            pages["n"] += n
            bar.progress(len(rows) / total["n"], text=f"{len(rows)}/{total['n']} files · {pages['n']} pages read")

    report = pipeline.add_paths(settings, paths, kb, department, on_file=on_file, on_start=on_start,
                                on_step=on_step)
    bar.progress(1.0, text=f"done in {report.seconds:.1f} s")
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
    ok = report.count("added") + report.count("updated")
    msg = f"{ok} added or updated, {report.count('unchanged')} unchanged, {len(report.failed)} failed"
    (st.warning if report.failed else st.success)(msg)
    for w in report.warnings:
        st.info(md.text(w))
    return report


def _upload(settings: Settings, account: Account, kb: str, department: str | None, files: list,
            replace: bool) -> None:
    take, replaces, refused = plan_uploads(settings, kb, files, replace)
    for r in refused:
        st.error(md.text(r))
    results: list[pipeline.FileResult] = []
    removed = []
    if take:
        paths = [save_upload(settings, kb, f.name, f.getvalue()) for f in take]
        results = _ingest(settings, kb, department, paths).results
    for r in results:
        old = replaces.get(r.path.name)
        if old is not None and r.status in ("added", "updated"):  # the new version is in: the old one goes
            pipeline.remove_document(settings, old["doc_id"], kb)
            removed.append({"doc_id": old["doc_id"], "source": old["source"], "department": old.get("department")})
            st.info(md.text(f"{r.path.name}: replaced the earlier document of this name ({old['doc_id']})"))
    record_event(settings.audit_db, "document_ingest", account.name, role=account.role, kb=kb, department=department,
                 files=[{"file": r.path.name, "status": r.status, "doc_id": r.doc_id, "reason": r.reason}
                        for r in results], replaced=removed, refused=refused)


def render(settings: Settings, account: Account) -> None:
    st.header("Knowledge base")
    choices = sorted(set(list_knowledge_bases(settings)) | {settings.default_kb})
    c1, c2 = st.columns(2)
    kb = c1.selectbox("Knowledge base", choices, index=choices.index(settings.default_kb), key="kb_admin")
    new = c2.text_input("…or a new one (lowercase name)", key="kb_new").strip()
    if new:
        if not KB_NAME.match(new):
            st.error("knowledge base names: lowercase letters, digits, '-' or '_' (up to 40)")
            return
        kb = new

    st.subheader("Add documents")
    dept = st.text_input("Department tag (only that department sees them; empty: everyone)", key="kb_dept")
    files = st.file_uploader("PDF, DOCX, Markdown, text, HTML — several at once, drag and drop",
                             type=[s.lstrip(".") for s in SUPPORTED_SUFFIXES], accept_multiple_files=True,
                             key="kb_files")
    replace = st.checkbox("Replace documents of the same name", key="kb_replace",
                          help="Off: a file named like a document already in this knowledge base is refused. "
                               "On: the new file replaces that document (its old version is removed).")
    if st.button("Ingest", key="kb_ingest", type="primary", disabled=not files):
        try:
            _upload(settings, account, kb, dept.strip() or None, files, replace)
        except AssistantError as exc:
            st.error(md.text(str(exc)))

    st.subheader(f"Documents in '{kb}'")
    if not KnowledgeBase(settings, kb).exists():
        st.info("empty: add documents above")
        return
    docs = pipeline.list_documents(settings, kb)
    st.dataframe(pd.DataFrame([{"document": d["source"], "format": d["format"], "pages": d["pages"],
                                "chunks": d["chunks"], "department": d.get("department") or "",
                                "ingested": d["ingested_at"], "doc id": d["doc_id"]} for d in docs]),
                 hide_index=True, width="stretch")
    victim = st.selectbox("Remove a document", [d["doc_id"] for d in docs], index=None, key="kb_remove_doc",
                          format_func=lambda i: next(f"{d['source']} ({i})" for d in docs if d["doc_id"] == i))
    if st.button("Remove", key="kb_remove", disabled=victim is None):
        try:
            doc = pipeline.remove_document(settings, victim, kb)
            record_event(settings.audit_db, "document_remove", account.name, role=account.role, kb=kb,
                         doc_id=doc["doc_id"], source=doc["source"], department=doc.get("department"))
            st.success(md.text(f"removed {doc['source']}"))
            st.rerun()
        except AssistantError as exc:
            st.error(md.text(str(exc)))
