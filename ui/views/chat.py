"""Chat: the user's saved conversations, streamed answers with thinking, tool trace, sources, feedback.
Every text a user, the model or a document wrote is shown literally (ui.safe_markdown)."""

from __future__ import annotations

import logging
import threading
from typing import Any

import streamlit as st

from assistant.app import conversations
from assistant.app.users import Account
from core.settings import Settings
from ui import answer_view, csp, state
from ui import safe_markdown as md

log = logging.getLogger("ui.chat")
AUTO = "automatic (department's adapter)"
BASE = "none (base model)"
WRITING = ":material/edit: writing the answer … it is checked against the documents before it stands"
# the chain's `status` events while a turn runs (the finished turn then says what was shown: answer_view.shown_as)
STATUS = {
    "followup_resolved": ":material/forum: follow-up question written out in full · searching …",
    "tool_routed": ":material/build: looking up the record the question names …",
    "no_relevant_documents": ":material/search_off: no passage you may see answers this",
    "verifying": ":material/fact_check: checking the answer against the documents …",
    "outcome_answer": ":material/check: the answer stands",
    "outcome_evidence": ":material/format_quote: the answer could not be verified: the documents' own words "
                        "are shown instead",
    "outcome_tool_result": ":material/build: the answer could not be verified: the record is shown as returned",
    "outcome_refusal": ":material/block: the documents do not answer this",
    "outcome_error": ":material/error: the question could not be answered",
}


def _conversation(settings: Settings, acc: Account) -> tuple[conversations.Conversation, list]:
    db = settings.app_db
    convs = conversations.list_for(db, acc.name)
    if not convs:
        convs = [conversations.create(db, acc.name)]
    ids = {c.id for c in convs}
    if st.session_state.get("conv") not in ids:
        st.session_state["conv"] = convs[0].id
    current = next(c for c in convs if c.id == st.session_state["conv"])
    return current, convs


def _sidebar(settings: Settings, acc: Account, current: Any, convs: list) -> dict[str, Any]:
    db = settings.app_db
    with st.sidebar:
        st.subheader("Conversations")
        if st.button("New conversation", key="new_conv", icon=":material/add:", width="stretch"):
            st.session_state["conv"] = conversations.create(db, acc.name).id
            st.rerun()
        for c in convs:
            if st.button(md.text(c.title), key=f"conv_{c.id}", width="stretch",
                         type="primary" if c.id == current.id else "secondary"):
                st.session_state["conv"] = c.id
                st.rerun()
        with st.expander("Rename or delete this conversation"):
            title = st.text_input("Title", value=current.title, key=f"title_{current.id}")
            c1, c2 = st.columns(2)
            if c1.button("Rename", key="rename_conv"):
                conversations.rename(db, current.id, acc.name, title)
                st.rerun()
            if c2.button("Delete", key="delete_conv"):
                conversations.delete(db, current.id, acc.name)
                st.session_state.pop("conv", None)
                st.rerun()
        st.subheader("Options")
        opts: dict[str, Any] = {"think": st.toggle("Thinking mode", value=settings.thinking, key="think",
                                                   help="Qwen3 reasons before answering (slower); "
                                                        "/think or /no_think in a question also switch it.")}
        kbs = state.accessible_kbs(settings, acc)
        opts["kb"] = settings.default_kb
        if len(kbs) > 1:
            default = kbs.index(settings.default_kb) if settings.default_kb in kbs else 0
            opts["kb"] = st.selectbox("Knowledge base", kbs, index=default, key="kb")
        elif kbs:
            opts["kb"] = kbs[0]
        opts["adapter"] = None
        if acc.role == "admin":  # staff get their department's adapter; admins may compare versions
            from core import registry

            refs = [v.ref for n in registry.list_names(settings) for v in registry.list_versions(settings, n)]
            choice = st.selectbox("Adapter", [AUTO, BASE, *refs], key="adapter")
            opts["adapter"] = None if choice == AUTO else ("none" if choice == BASE else choice)
    return opts


def _ask(settings: Settings, acc: Account, conv_id: str, question: str, msgs: list[dict[str, Any]],
         opts: dict[str, Any]) -> None:
    with st.chat_message("user"):
        st.markdown(md.text(question))
    with st.chat_message("assistant"):
        try:
            assistant = state.assistant(settings)
        except Exception as exc:  # a missing or broken model is the admin's problem: say what to do
            st.error(f"The model is not loaded ({type(exc).__name__}: {exc}). An administrator runs "
                     "`bash scripts/setup.sh --model` or sets ASSISTANT_MODEL, then restarts the UI.")
            return
        live = st.empty()
        with live.container():
            status, thinking_box, answer_box = st.empty(), st.empty(), st.empty()
        buf = {"answer": "", "thinking": ""}

        def on_event(kind: str, payload: Any) -> None:
            if kind == "token":
                if not buf["answer"]:
                    status.caption(WRITING)
                buf["answer"] += payload
                answer_box.markdown(md.text(buf["answer"]) + "▌")
            elif kind == "thinking":
                buf["thinking"] += payload
                thinking_box.caption("💭 " + md.text(buf["thinking"][-400:]))
            elif kind == "sources":
                status.caption(f":material/search: {len(payload)} passages found · writing the answer …" if payload
                               else ":material/search: no relevant passage found")
            elif kind == "tool":
                status.caption(f":material/build: {md.text(payload.name)} → {payload.status}")
            elif kind == "status" and payload == "retracted":  # the engine died mid-answer: another starts afresh
                buf["answer"] = buf["thinking"] = ""
                answer_box.empty()
                thinking_box.empty()
            elif kind == "status":
                if str(payload).startswith("outcome_") and payload != "outcome_answer":
                    answer_box.empty()  # the streamed words are not what stands: gone at once
                if payload in STATUS:
                    status.caption(STATUS[payload])

        history = conversations.history(msgs)
        try:
            ans = assistant.ask(question, acc.user, history, opts["kb"], opts["adapter"], opts["think"], on_event,
                                conv_id)
        except Exception:  # the page says what failed: no unverified words stay on screen under it
            live.empty()
            raise
        payload = ans.to_dict() | {"question": ans.question}  # with the exact transcript the model was sent
        conversations.add_turn(settings.app_db, conv_id, acc.name, question, ans.answer, payload)
        # the streamed text gives way to the finished turn, whatever its outcome (the model's words with their
        # quotes, or in their place the documents' words, the record or the refusal), drawn exactly as a reload
        # draws it (no rerun: a rerun here would leave the streamed copy on screen until the next run finished)
        with live.container():
            answer_view.answer(payload, key=f"{conv_id}_{len(msgs) + 1}", settings=settings, account=acc)
            answer_view.feedback(settings, acc, payload)


def _warm(settings: Settings, acc: Account) -> None:
    """Once a session: load the model and prefill this user's constant prompt prefix in the background, while they
    read the page and type (llama.cpp; ~5 s less for the first answer on a 2-core machine)."""
    if st.session_state.get("warmed"):
        return
    st.session_state["warmed"] = True
    try:
        assistant = state.assistant(settings)
    except Exception:  # said at the first question, with what to do
        return

    def run() -> None:
        try:
            assistant.warm(acc.user)
        except Exception:  # only a head start: the question itself will prefill what is missing
            log.exception("warming the prompt prefix failed")

    threading.Thread(target=run, name="warm-prefix", daemon=True).start()


def render(settings: Settings, acc: Account) -> None:
    csp.install()  # before any text from the model or the documents is drawn
    _warm(settings, acc)
    current, convs = _conversation(settings, acc)
    opts = _sidebar(settings, acc, current, convs)
    top = st.empty()
    top.header(md.text(current.title))
    msgs = conversations.messages(settings.app_db, current.id, acc.name)
    if not msgs:
        hint = st.empty()
        hint.caption("Ask about policies, claims, contracts and manuals — e.g. “意外身故保险金怎么申请？”, "
                   "“Who must approve a claim above CNY 300,000?” or “查一下保单 POL-2024-0001 的状态”.")
    for i, m in enumerate(msgs):
        with st.chat_message(m["role"]):
            if m["role"] == "user":
                st.markdown(md.text(m["content"]))
            else:
                payload = m["payload"] or {"answer": m["content"]}
                answer_view.answer(payload, key=f"{current.id}_{i}", settings=settings, account=acc)
                answer_view.feedback(settings, acc, payload)
    question = st.chat_input("Ask a question (/think for step-by-step reasoning)", key="question")
    if question and question.strip():
        if not msgs:  # the first question names the conversation
            top.header(md.text(question.strip().splitlines()[0][:60]))
            hint.empty()
        _ask(settings, acc, current.id, question.strip(), msgs, opts)
