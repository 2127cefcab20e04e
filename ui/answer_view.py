"""How one answer is shown: the text, thinking (collapsed), the tool trace, the sources with the cited
passage and the PDF page, timing, and the feedback controls.

Everything that came from the model, a document or a tool is shown as literal text (ui.safe_markdown): no
image, link or HTML in it can make the browser fetch anything. A cited file is served by document id, only
if this user may see that document now and the file is still the one ingested (assistant.app.cited_files)."""

from __future__ import annotations

import json
from typing import Any

import streamlit as st

from assistant.app.cited_files import open_cited
from assistant.app.feedback import turn_example
from assistant.app.users import Account
from core.access import AccessPolicy
from core.errors import AssistantError
from core.feedback import add_feedback, feedback_for
from core.settings import Settings
from ui import safe_markdown as md


@st.cache_data(max_entries=32, show_spinner=False)
def pdf_page_png(sha256: str, page: int, _data: bytes) -> bytes:
    """One PDF page as a PNG (pdfium, the renderer pdfplumber already ships); cached by content hash."""
    import io

    import pypdfium2 as pdfium

    doc = pdfium.PdfDocument(_data)
    try:
        image = doc[page].render(scale=1.4).to_pil()
    finally:
        doc.close()
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


quote = md.quote


def _source_label(s: dict[str, Any]) -> str:
    label = s.get("page_label") or (f"p.{s['page'] + 1}" if s.get("page") is not None else "")
    page = f" · {label}" if label else ""
    clause = f" · {s['clause']}" if s.get("clause") else ""
    return md.text(f"[{s['n']}] {s['source']}{page}{clause}")


def _cited_file(settings: Settings, account: Account, payload: dict[str, Any], s: dict[str, Any], key: str) -> None:
    """The cited document's file (and PDF page), after core.access and the hash check; else why not."""
    if not s.get("chunk_id"):
        return
    kb = payload.get("kb") or settings.default_kb  # turns saved before answers named their knowledge base
    try:
        f = open_cited(settings, AccessPolicy.from_settings(settings), account.user, kb, s["chunk_id"])
    except AssistantError as exc:
        st.caption(md.text(str(exc)))
        return
    pdf = f.document.get("format") == "pdf"
    c1, c2 = st.columns(2)
    show = pdf and s.get("page") is not None and c1.toggle(f"Show page {s['page'] + 1}", key=f"page_{key}_{s['n']}")
    c2.download_button("Open the PDF" if pdf else "Open the file", f.data, file_name=f.name,
                       mime="application/pdf" if pdf else "application/octet-stream", key=f"pdf_{key}_{s['n']}")
    if show:
        st.image(pdf_page_png(f.document["sha256"], s["page"], f.data),
                 caption=md.text(f"{f.name}, page {s['page'] + 1}"))


def sources(payload: dict[str, Any], key: str, settings: Settings | None = None,
            account: Account | None = None) -> None:
    cited = payload.get("sources") or []
    if not cited:
        return
    st.markdown("**Sources**")
    for s in cited:
        with st.expander(_source_label(s)):
            st.markdown(quote(s["text"]))
            if settings is not None and account is not None:
                _cited_file(settings, account, payload, s, key)


def tool_trace(payload: dict[str, Any]) -> None:
    calls = payload.get("tool_calls") or []
    if not calls:
        return
    names = ", ".join(c["name"] for c in calls)
    with st.expander("Tools: " + md.text(names), icon=":material/build:"):
        for c in calls:
            state = "denied" if c.get("denied") else ("ok" if c.get("result") is not None else "error")
            st.markdown(f"**{md.text(c['name'])}** {md.text(json.dumps(c['arguments'], ensure_ascii=False))} → "
                        f"{state} · {c.get('duration_s', 0) * 1000:.0f} ms")
            st.code(json.dumps(c["result"] if c.get("result") is not None else {"error": c.get("error")},
                               ensure_ascii=False, indent=1, default=str), language="json")


def answer(payload: dict[str, Any], key: str, settings: Settings | None = None, account: Account | None = None) -> None:
    """One answer; with `settings` and `account` its cited files can be opened (checked for that account)."""
    if payload.get("thinking"):
        with st.expander("💭 Thinking", expanded=False):
            st.markdown(md.text(payload["thinking"]))
    if payload.get("error"):
        st.warning(md.text(payload["answer"]))
    else:
        st.markdown(md.text(payload["answer"]) if payload.get("answer") else "_(empty answer)_")
    tool_trace(payload)
    sources(payload, key, settings, account)
    timing = [f"{payload.get('latency_s', 0):.1f} s"]
    if payload.get("tokens_per_s"):
        timing.append(f"{payload['tokens_per_s']:.1f} tok/s")
    timing.append(md.text(f"adapter {payload.get('adapter') or 'none'}"))
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
