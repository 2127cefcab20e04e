"""The staff chat: `streamlit run ui/app.py`. Log in, chat with sources and tool traces, give feedback;
admins also manage the knowledge base, the adapters (retraining) and the users."""

from __future__ import annotations

import logging

import streamlit as st
from pydantic import ValidationError

from core.errors import AssistantError, validation_problems
from ui import csp, session, state
from ui.views import adapters, chat, knowledge, login, users

st.set_page_config(page_title="Domain assistant", page_icon=":material/description:", layout="wide")
# Material Symbols ship with Streamlit (a local font): emoji icons showed as empty boxes in a browser without an
# emoji font
ICONS = {"Chat": ":material/chat:", "Knowledge base": ":material/library_books:",
         "Adapters": ":material/extension:", "Users": ":material/group:"}
log = logging.getLogger("ui")


def main() -> None:
    csp.install()  # first: nothing drawn on any page, login included, can fetch from another origin
    try:
        settings = state.settings()
    except ValidationError as exc:
        problems = validation_problems(exc, "settings")
        st.error(f"Invalid settings ({problems}). Check the ASSISTANT_* variables and .env, then restart.")
        return
    account = session.current_account(settings)  # reloaded from the database on every run
    if account is None:
        login.render(settings)
        return
    if account.must_change:
        login.change_password(settings, account)
        return
    pages = {"Chat": chat.render}
    if account.role == "admin":
        pages |= {"Knowledge base": knowledge.render, "Adapters": adapters.render, "Users": users.render}
    with st.sidebar:
        st.markdown(f"**{account.name}** · {account.role} · {account.department or 'no department'}")
        page = st.radio("Page", list(pages), key="page", label_visibility="collapsed",
                        format_func=lambda name: f"{ICONS[name]} {name}") if len(pages) > 1 else next(iter(pages))
        if st.button("Log out", key="logout"):
            st.session_state.clear()
            st.rerun()
    try:
        pages[page](settings, account)
    except AssistantError as exc:
        st.error(str(exc))
    except Exception as exc:  # never a traceback on a staff member's screen; the server log has it
        log.exception("page %s failed", page)
        st.error(f"Something went wrong ({type(exc).__name__}: {exc}). The details are in the server log.")


main()
