"""How one answer is shown: the text, thinking (collapsed), the tool trace, the sources with the cited
passage and the PDF page, timing, and the feedback controls."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import streamlit as st

from assistant.app.feedback import add_feedback, feedback_for, turn_example
from assistant.app.users import Account
from core.settings import Settings


@st.cache_data(max_entries=32, show_spinner=False)
def pdf_page_png(path: str, page: int, mtime: float) -> bytes:
    """One PDF page as a PNG (pdfium, the renderer pdfplumber already ships)."""
    import io

    import pypdfium2 as pdfium

    doc = pdfium.PdfDocument(path)
    try:
        image = doc[page].render(scale=1.4).to_pil()
    finally:
        doc.close()
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def quote(text: str) -> str:
    """A passage as a Markdown quote that shows its text literally (no headings, lists or links)."""
    lines = [re.sub(r"([\\`*_{}\[\]()#+\-.!|>~<$])", r"\\\1", line) for line in text.splitlines()]
    return "\n".join(f"> {line}  " if line.strip() else ">" for line in lines)


def _source_label(s: dict[str, Any]) -> str:
    page = f" · p.{s['page'] + 1}" if s.get("page") is not None else ""
    clause = f" · {s['clause']}" if s.get("clause") else ""
    return f"[{s['n']}] {s['source']}{page}{clause}"


def sources(payload: dict[str, Any], key: str) -> None:
    cited = payload.get("sources") or []
    if not cited:
        return
    st.markdown("**Sources**")
    for s in cited:
        with st.expander(_source_label(s)):
            st.markdown(quote(s["text"]))
            path = Path(s["path"]) if s.get("path") else None
            if path is None or s.get("page") is None or path.suffix.lower() != ".pdf":
                continue
            if not path.is_file():
                st.caption(f"the file {path} is no longer where it was ingested from")
                continue
            c1, c2 = st.columns(2)
            show = c1.toggle(f"Show page {s['page'] + 1}", key=f"page_{key}_{s['n']}")
            c2.download_button("Open the PDF", path.read_bytes(), file_name=path.name, mime="application/pdf",
                               key=f"pdf_{key}_{s['n']}")
            if show:
                st.image(pdf_page_png(str(path), s["page"], path.stat().st_mtime),
                         caption=f"{path.name}, page {s['page'] + 1}")


def tool_trace(payload: dict[str, Any]) -> None:
    calls = payload.get("tool_calls") or []
    if not calls:
        return
    names = ", ".join(c["name"] for c in calls)
    with st.expander(f"🔧 Tools: {names}"):
        for c in calls:
            state = "denied" if c.get("denied") else ("ok" if c.get("result") is not None else "error")
            st.markdown(f"**{c['name']}** `{json.dumps(c['arguments'], ensure_ascii=False)}` → {state} · "
                        f"{c.get('duration_s', 0) * 1000:.0f} ms")
            st.code(json.dumps(c["result"] if c.get("result") is not None else {"error": c.get("error")},
                               ensure_ascii=False, indent=1, default=str), language="json")


def answer(payload: dict[str, Any], key: str) -> None:
    if payload.get("thinking"):
        with st.expander("💭 Thinking", expanded=False):
            st.markdown(payload["thinking"])
    if payload.get("error"):
        st.warning(payload["answer"])
    else:
        st.markdown(payload["answer"] or "_(empty answer)_")
    tool_trace(payload)
    sources(payload, key)
    timing = [f"{payload.get('latency_s', 0):.1f} s"]
    if payload.get("tokens_per_s"):
        timing.append(f"{payload['tokens_per_s']:.1f} tok/s")
    timing.append(f"adapter {payload.get('adapter') or 'none'}")
    if payload.get("audit_id"):
        timing.append(f"audit #{payload['audit_id']}")
    st.caption(" · ".join(timing))


def _example(payload: dict[str, Any]) -> dict[str, Any]:
    return turn_example(payload.get("question", ""), payload.get("history", []), payload, payload.get("tools", []))


def feedback(settings: Settings, account: Account, payload: dict[str, Any]) -> None:
    """Thumbs up/down saved at once; a comment and a corrected answer saved with 'Save'."""
    audit_id = payload.get("audit_id")
    if not audit_id or payload.get("error"):
        return
    saved = feedback_for(settings.app_db, audit_id, account.name)
    default = None if saved is None else (1 if saved["rating"] == 1 else 0)

    def save_rating() -> None:
        value = st.session_state.get(f"thumbs_{audit_id}")
        if value is None:
            return
        old = feedback_for(settings.app_db, audit_id, account.name) or {}
        add_feedback(settings.app_db, audit_id, account.name, 1 if value == 1 else -1, _example(payload),
                     old.get("comment"), old.get("correction"), payload.get("adapter"))

    c1, c2 = st.columns([1, 4])
    with c1:
        st.feedback("thumbs", key=f"thumbs_{audit_id}", default=default, on_change=save_rating)
    with c2, st.popover("Comment / correct the answer", key=f"fbpop_{audit_id}"):
        comment = st.text_input("Comment", value=(saved or {}).get("comment") or "", key=f"comment_{audit_id}")
        correction = st.text_area("The correct answer (used to retrain the adapter)",
                                  value=(saved or {}).get("correction") or "", key=f"correction_{audit_id}")
        if st.button("Save feedback", key=f"fbsave_{audit_id}"):
            thumbs = st.session_state.get(f"thumbs_{audit_id}")
            rating = (1 if thumbs == 1 else -1) if thumbs is not None else (-1 if correction.strip() else 1)
            add_feedback(settings.app_db, audit_id, account.name, rating, _example(payload), comment, correction,
                         payload.get("adapter"))
            st.toast("Feedback saved — thank you")
