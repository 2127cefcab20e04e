"""Login: name + password against the hashed accounts (`assistant users add`), throttled per account and per
client address in the database; the forced password change of a first login."""

from __future__ import annotations

import streamlit as st

from assistant.app.users import (
    PASSWORD_RULE,
    Account,
    LoginThrottled,
    authenticate,
    list_users,
    login,
    set_password,
)
from core.audit import record_event
from core.errors import AssistantError
from core.settings import Settings
from ui import session


def render(settings: Settings) -> None:
    st.title("Domain assistant")
    st.caption("Answers from your company's documents, with sources. Sign in with your staff account.")
    if ended := st.session_state.get(session.ENDED):
        st.warning(ended)
    if not list_users(settings.app_db):
        st.info("No accounts yet. An administrator creates them with "
                "`.venv/bin/assistant users add NAME --role admin` (or `assistant users demo`).")
    name = st.text_input("User name", key="login_name")
    password = st.text_input("Password", type="password", key="login_password")
    if st.button("Log in", key="login", type="primary"):
        address = session.client_address()
        try:
            acc = login(settings.app_db, name, password, address)
        except LoginThrottled as exc:
            record_event(settings.audit_db, "login_throttled", name.strip(), address=address)
            st.error(str(exc))
            return
        if acc is None:
            record_event(settings.audit_db, "login_failed", name.strip(), address=address)
            st.error("Wrong user name or password.")
            return
        record_event(settings.audit_db, "login", acc.name, role=acc.role, department=acc.department,
                     address=address)
        st.session_state.clear()
        st.session_state["account"] = acc
        st.rerun()


def change_password(settings: Settings, account: Account) -> None:
    """A first login (or one after a reset): nothing else opens until the account has its own password."""
    st.title("Choose a new password")
    st.info(f"**{account.name}**: this account's password was set by someone else (or is a published demo "
            "password). Choose your own before going on.")
    st.caption(PASSWORD_RULE)
    new = st.text_input("New password", type="password", key="new_password", help=PASSWORD_RULE)
    again = st.text_input("New password again", type="password", key="new_password_again")
    c1, c2 = st.columns(2)
    if c1.button("Set password", key="change_password", type="primary"):
        if new != again:
            st.error("The two passwords differ.")
            return
        if authenticate(settings.app_db, account.name, new):
            st.error("That is the current password: choose a new one.")
            return
        try:
            set_password(settings.app_db, account.name, new)
        except AssistantError as exc:
            st.error(str(exc))
            return
        record_event(settings.audit_db, "password_changed", account.name, forced=True)
        st.rerun()
    if c2.button("Log out", key="logout_change"):
        st.session_state.clear()
        st.rerun()
