"""Login: name + password against the hashed accounts (`assistant users add`)."""

from __future__ import annotations

import time

import streamlit as st

from assistant.app.users import authenticate, list_users
from core.settings import Settings

MAX_FAILURES, LOCKOUT_S = 5, 60


def render(settings: Settings) -> None:
    st.title("Domain assistant")
    st.caption("Answers from your company's documents, with sources. Sign in with your staff account.")
    if not list_users(settings.app_db):
        st.info("No accounts yet. An administrator creates them with "
                "`.venv/bin/assistant users add NAME --role admin` (or `assistant users demo`).")
    name = st.text_input("User name", key="login_name")
    password = st.text_input("Password", type="password", key="login_password")
    if st.button("Log in", key="login", type="primary"):
        failures = st.session_state.get("login_failures", [])
        recent = [t for t in failures if time.time() - t < LOCKOUT_S]
        if len(recent) >= MAX_FAILURES:  # slows password guessing from one browser session
            st.error(f"Too many failed attempts. Wait {LOCKOUT_S - int(time.time() - recent[0])} s and try again.")
            return
        acc = authenticate(settings.app_db, name, password)
        if acc is None:
            st.session_state["login_failures"] = [*recent, time.time()]
            st.error("Wrong user name or password.")
            return
        st.session_state.clear()
        st.session_state["account"] = acc
        st.rerun()
