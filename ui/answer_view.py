"""How one answer is shown: thinking (collapsed); the lead (the model's verified answer with its [n] marks, or
the title over the documents' own words or a look-up's record, or the refusal); the units it rests on, each a
block quote of its literal text with its citation; the sources with the passage and the PDF page; "Answer
details" (collapsed: the verdict and its reasons, the question as searched, the tool calls, the timings); that
it came from the answer cache, if it did; what was shown and the timing under it; the feedback controls. A turn
saved before the structured answer path (no `outcome`) is shown as it was: its `answer` text, the tool trace and
the sources.

Everything that came from the model, a document or a tool is shown as literal text (ui.safe_markdown): no
image, link or HTML in it can make the browser fetch anything. A cited file is served by document id, only
if this user may see that document now and the file is still the one ingested (assistant.app.cited_files)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import streamlit as st

from assistant.app.cited_files import open_cited
from assistant.app.feedback import turn_example
from assistant.app.users import Account
from core.access import AccessPolicy
from core.answer_cache import normalise
from core.errors import AssistantError
from core.feedback import add_feedback, feedback_for
from core.settings import Settings
from ui import safe_markdown as md

# a shown page never holds more pixels than this, whatever size the PDF declares for it
PAGE_VIEW_MAX_PIXELS = 4_000_000


@st.cache_data(max_entries=32, show_spinner=False)
def pdf_page_png(sha256: str, page: int, _data: bytes) -> bytes:
    """One PDF page as a PNG (pdfium, the renderer pdfplumber already ships) at about 100 dpi, less where the
    page would exceed PAGE_VIEW_MAX_PIXELS; cached by content hash."""
    import io

    import pypdfium2 as pdfium

    from ingest.loaders.pdf import bounded_scale

    doc = pdfium.PdfDocument(_data)
    try:
        pdf_page = doc[page]
        scale = bounded_scale(*pdf_page.get_size(), 100.8, PAGE_VIEW_MAX_PIXELS)
        image = pdf_page.render(scale=scale).to_pil()
    finally:
        doc.close()
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


quote = md.quote

# what the user was shown, said under the answer (the verdict itself is in "Answer details")
SHOWN = {
    "answer": ":material/verified: checked against the cited documents",
    "answer_off": "not checked against the documents (verification is off)",
    "evidence": ":material/format_quote: the documents' own words: the model's answer could not be verified",
    "tool_result": ":material/build: the record as the look-up returned it: the model's wording could not be "
                   "verified",
    "refusal": ":material/block: the documents available to you do not answer this",
}
VERDICT = {
    "verified": "verified: every figure and condition of the answer stands in the units it cites",
    "failed": "failed: the answer is not shown",
    "refusal": "no answer: nothing in the documents answers the question",
    "malformed": "not checked: the model's reply was not in the structured form (the answer is not shown)",
    "off": "off: the answer was not checked",
}


def _page(s: dict[str, Any]) -> str:
    if s.get("page_label"):
        return str(s["page_label"])
    return f"p.{s['page'] + 1}" if isinstance(s.get("page"), int) else ""


def _source_label(s: dict[str, Any]) -> str:
    page = f" · {_page(s)}" if _page(s) else ""
    clause = f" · {s['clause']}" if s.get("clause") else ""
    return md.text(f"[{s['n']}] {s['source']}{page}{clause}")


def _is_legacy(payload: dict[str, Any]) -> bool:
    """Saved by the release before the structured answer path: `answer` is all there is to show."""
    return not payload.get("outcome")


def _call_of(payload: dict[str, Any], s: dict[str, Any]) -> dict[str, Any] | None:
    """The tool call a tool unit's record came from: by its index where the unit names it, else the one call of
    that tool this turn (several calls of one tool: the unit's text names its arguments)."""
    calls = payload.get("tool_calls") or []
    if isinstance(s.get("call"), int) and 0 <= s["call"] < len(calls):
        return calls[s["call"]]
    same = [c for c in calls if c.get("name") == s.get("source")]
    return same[0] if len(same) == 1 else None


def _unit_label(payload: dict[str, Any], s: dict[str, Any]) -> str:
    """`[n] file · page/sheet/slide · clause`, or `[n] tool NAME · arguments` for a look-up's record."""
    if s.get("kind") == "tool":
        call = _call_of(payload, s)
        args = f" · {json.dumps(call.get('arguments') or {}, ensure_ascii=False)}" if call else ""
        return md.text(f"[{s['n']}] tool {s.get('source', '')}{args}")
    return _source_label(s)


def _cells(line: str | None) -> list[str] | None:
    line = (line or "").strip()
    if len(line) < 2 or not (line.startswith("|") and line.endswith("|")):
        return None
    return [c.strip() for c in line[1:-1].split("|")]


def _table(lines: list[str]) -> str | None:
    """Pipe-table lines (the first the header row) as a quoted Markdown table, every cell literal (an escaped
    '|' cannot split a cell); None when the rows do not all have the header's cells."""
    rows = [_cells(line) for line in lines]
    if len(rows) < 2 or any(not r or len(r) != len(rows[0]) for r in rows):
        return None
    lines = ["| " + " | ".join(md.text(c) for c in r) + " |" for r in rows]
    lines.insert(1, "|" + "---|" * len(rows[0]))
    return "\n".join(f"> {line}" for line in lines)


def _quoted(s: dict[str, Any]) -> str:
    """A unit as a block quote of its literal text; a table row under its header row as a one-row table, a
    small table whole as a table."""
    text = str(s.get("text") or "")
    if s.get("kind") == "row" and s.get("header"):
        return _table([s["header"], text]) or quote(f"{s['header']}\n{text}")
    if s.get("kind") == "table":
        return _table([line for line in text.splitlines() if line.strip()]) or quote(text)
    return quote(text)


def quotes(payload: dict[str, Any]) -> None:
    """The units the answer rests on (or, in place of an answer, the documents' units or the record), each a
    quote of its literal text with its citation under it."""
    for s in payload.get("sources") or []:
        st.markdown(_quoted(s))
        st.caption(_unit_label(payload, s))


def _passage_text(payload: dict[str, Any], s: dict[str, Any]) -> str:
    """The whole passage a unit stands in (its chunk, as retrieved), else the unit's own text (a turn saved
    before units, where `text` was the passage)."""
    for p in payload.get("retrieved") or []:
        if s.get("chunk_id") and p.get("chunk_id") == s["chunk_id"] and p.get("text"):
            return str(p["text"])
    return str(s.get("text") or "")


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
    """One expander per cited document unit: the passage it stands in, the file (and PDF page) if this user may
    open it now. A look-up's record is no document: it is in the quote above and the answer details."""
    if payload.get("outcome") in ("refusal", "error"):
        return
    cited = [s for s in payload.get("sources") or [] if s.get("kind") != "tool"]
    if not cited:
        return
    st.markdown("**Sources**")
    for s in cited:
        with st.expander(_source_label(s)):
            st.markdown(quote(_passage_text(payload, s)))
            if settings is not None and account is not None:
                _cited_file(settings, account, payload, s, key)


def _call_status(c: dict[str, Any]) -> str:
    if c.get("status"):
        return str(c["status"])
    if c.get("ok") is not None:
        return "ok" if c["ok"] else "denied" if c.get("denied") else "dropped" if c.get("dropped") else "error"
    return "denied" if c.get("denied") else ("ok" if c.get("result") is not None else "error")  # older turns


def _call_lines(c: dict[str, Any]) -> tuple[str, str]:
    head = (f"**{md.text(c['name'])}** {md.text(json.dumps(c.get('arguments') or {}, ensure_ascii=False))} → "
            f"{_call_status(c)} · {(c.get('duration_s') or 0) * 1000:.0f} ms")
    body = c["result"] if c.get("result") is not None else {"error": c.get("error")}
    return head, json.dumps(body, ensure_ascii=False, indent=1, default=str)


def tool_trace(payload: dict[str, Any]) -> None:
    """The tool calls of a turn saved before "Answer details" (which now holds them)."""
    calls = payload.get("tool_calls") or []
    if not calls:
        return
    names = ", ".join(c["name"] for c in calls)
    with st.expander("Tools: " + md.text(names), icon=":material/build:"):
        for c in calls:
            head, body = _call_lines(c)
            st.markdown(head)
            st.code(body, language="json")


def _seconds(v: Any) -> str:
    return f"{v:.2f} s" if isinstance(v, int | float) else "-"


def details(payload: dict[str, Any]) -> None:
    """Collapsed: the verdict and its reasons, the question as searched, every tool call with what became of
    it, and where the time went."""
    v = payload.get("verification") or {}
    with st.expander("Answer details", icon=":material/info:", expanded=False):
        status = v.get("status") or "-"
        st.markdown(f"**Verification:** {md.text(VERDICT.get(status, status))}")
        for reason in v.get("reasons") or []:
            st.markdown("- " + md.text(reason))
        if isinstance(v.get("support"), int | float):
            st.caption(f"similarity of the answer to its cited units: {v['support']:.2f}")
        asked, searched = payload.get("question"), payload.get("standalone")
        if searched and asked and searched.strip() != asked.strip():
            st.markdown("**Searched as:** " + md.text(searched))
        calls = payload.get("tool_calls") or []
        if calls:
            st.markdown("**Tool calls**")
            for c in calls:
                head, body = _call_lines(c)
                st.markdown(head)
                st.code(body, language="json")  # the record, or why the call did not run
        t = payload.get("timings") or {}
        stages = " · ".join(f"{md.text(k)} {_seconds(s)}" for k, s in t.items())
        st.markdown("**Time:** " + (stages or "-"))
        more = [f"total {_seconds(payload.get('latency_s'))}"]
        if payload.get("first_token_s") is not None:
            more.append(f"first word after {_seconds(payload['first_token_s'])}")
        if payload.get("prefill_s") is not None:
            more.append(f"prefill {_seconds(payload['prefill_s'])}")
        if payload.get("tokens_per_s"):
            more.append(f"{payload['tokens_per_s']:.1f} tok/s")
        if payload.get("retrieval_ms") is not None:
            more.append(f"search {payload['retrieval_ms']:.0f} ms")
        st.caption(" · ".join(more))
        st.caption(md.text(f"model {payload.get('model') or '-'} · adapter {payload.get('adapter') or 'none'} · "
                           f"{len(payload.get('retrieved') or [])} passages retrieved"))


def _footer(payload: dict[str, Any], shown: str | None) -> None:
    timing = [shown] if shown else []
    timing.append(f"{payload.get('latency_s', 0):.1f} s")
    if payload.get("tokens_per_s"):
        timing.append(f"{payload['tokens_per_s']:.1f} tok/s")
    timing.append(md.text(f"adapter {payload.get('adapter') or 'none'}"))
    if payload.get("audit_id"):
        timing.append(f"audit #{payload['audit_id']}")
    st.caption(" · ".join(timing))


def cached_note(payload: dict[str, Any]) -> str | None:
    """A served-from-the-cache answer says so: when it was first answered (local time), by which turn, and the
    question it was first asked as where that was worded otherwise; None for an answer made now (or saved before
    the cache)."""
    if not payload.get("cached"):
        return None
    cache = payload.get("cache") or {}
    first = []
    if isinstance(cache.get("created"), int | float):
        first.append(datetime.fromtimestamp(cache["created"]).strftime("%Y-%m-%d %H:%M"))
    if payload.get("cached_from"):
        first.append(f"turn #{payload['cached_from']}")
    note = ":material/bolt: Answered from the cache"
    if first:
        note += f" (first answered {md.text(', '.join(first))})"
    asked, similarity = cache.get("question"), cache.get("similarity")
    if asked and normalise(str(asked)) != normalise(str(payload.get("question") or "")):  # a paraphrase's hit
        note += " for the question " + md.text(f"\u201c{asked}\u201d")
        if isinstance(similarity, int | float):
            note += f" (similarity {similarity:.2f})"
    return note + "; the documents it cites are unchanged since."


def _legacy(payload: dict[str, Any], key: str, settings: Settings | None, account: Account | None) -> None:
    """A turn saved by the release before: its `answer` as it was shown then ('> words [n]' lines as quotes)."""
    if payload.get("error"):
        st.warning(md.text(payload["answer"]))
    else:
        st.markdown(md.text(payload["answer"]) if payload.get("answer") else "_(empty answer)_")
    tool_trace(payload)
    sources(payload, key, settings, account)
    _footer(payload, None)


def shown_as(payload: dict[str, Any]) -> str | None:
    """What the user was shown, in words (None for an error: its message says it)."""
    outcome = payload.get("outcome")
    if outcome == "answer" and (payload.get("verification") or {}).get("status") != "verified":
        return SHOWN["answer_off"]
    return SHOWN.get(str(outcome))


def answer(payload: dict[str, Any], key: str, settings: Settings | None = None, account: Account | None = None) -> None:
    """One answer; with `settings` and `account` its cited files can be opened (checked for that account).

    answer: the model's words with their [n] marks, then the units they rest on, quoted; evidence: the title and
    the documents' units; tool_result: the title and the record; refusal: the sentence alone, no sources."""
    if payload.get("thinking"):
        with st.expander("💭 Thinking", expanded=False):
            st.markdown(md.text(payload["thinking"]))
    if _is_legacy(payload):
        _legacy(payload, key, settings, account)
        return
    outcome = payload["outcome"]
    lead = payload.get("lead") or ""
    if outcome == "error":
        st.warning(md.text(payload.get("answer") or payload.get("error") or "error"))
    elif outcome in ("evidence", "tool_result"):
        if lead:  # the title over the documents' own words (or the record): nothing of the model's
            st.markdown(f"**{md.text(lead)}**")
    else:
        st.markdown(md.text(lead) if lead else "_(empty answer)_")
    if outcome not in ("refusal", "error"):
        quotes(payload)
        sources(payload, key, settings, account)
    details(payload)
    note = cached_note(payload)
    if note:
        st.caption(note)
    _footer(payload, shown_as(payload))


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
