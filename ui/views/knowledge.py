"""Knowledge base (admin): upload files → ingest with progress and a per-file result; list; remove."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import streamlit as st

from assistant.app.users import Account
from core.errors import AssistantError
from core.files import atomic_write_bytes
from core.settings import Settings
from ingest import pipeline
from ingest.loaders import SUPPORTED_SUFFIXES
from ingest.store import KnowledgeBase, list_knowledge_bases

KB_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")


def save_uploads(settings: Settings, kb: str, files: list) -> list[Path]:
    """Uploaded files kept under $ASSISTANT_HOME/uploads/KB/ (the index cites them; the UI opens them)."""
    folder = settings.home / "uploads" / kb
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for f in files:
        target = folder / Path(f.name).name  # never a path the browser chose
        atomic_write_bytes(target, f.getvalue())
        paths.append(target)
    return paths


def _ingest(settings: Settings, kb: str, department: str | None, paths: list[Path]) -> None:
    bar = st.progress(0.0, text="starting …")
    rows: list[dict] = []
    total = {"n": len(paths)}

    def on_start(n: int) -> None:
        total["n"] = max(n, 1)

    def on_file(r: pipeline.FileResult) -> None:
        rows.append({"file": r.path.name, "result": r.status, "pages": r.pages, "chunks": r.chunks,
                     "seconds": round(r.seconds, 1), "problem": r.reason or "; ".join(r.warnings)})
        bar.progress(len(rows) / total["n"], text=f"{len(rows)}/{total['n']} · {r.path.name}: {r.status}")

    report = pipeline.add_paths(settings, paths, kb, department, on_file=on_file, on_start=on_start)
    bar.progress(1.0, text=f"done in {report.seconds:.1f} s")
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
    ok = report.count("added") + report.count("updated")
    msg = f"{ok} added or updated, {report.count('unchanged')} unchanged, {len(report.failed)} failed"
    (st.warning if report.failed else st.success)(msg)
    for w in report.warnings:
        st.info(w)


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
    if st.button("Ingest", key="kb_ingest", type="primary", disabled=not files):
        try:
            _ingest(settings, kb, dept.strip() or None, save_uploads(settings, kb, files))
        except AssistantError as exc:
            st.error(str(exc))

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
            st.success(f"removed {doc['source']}")
            st.rerun()
        except AssistantError as exc:
            st.error(str(exc))
