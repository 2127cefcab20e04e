"""The login session, re-checked on every run: the account is reloaded from the database, and a session whose
account was removed or whose role or department changed ends at once (the next step shows the login)."""

from __future__ import annotations

import logging

import streamlit as st

from assistant.app.users import Account, get_user
from core.settings import Settings

log = logging.getLogger("ui")
ENDED = "session_ended"  # why the last session ended, shown once on the login page


def client_address() -> str | None:
    """The browser's address as the server sees it (None for localhost and in tests)."""
    try:
        return st.context.ip_address
    except Exception:  # no script run context (bare mode): no address to throttle on
        return None


def end(reason: str) -> None:
    st.session_state.clear()
    st.session_state[ENDED] = reason


def current_account(settings: Settings) -> Account | None:
    """The logged-in account as the database has it now, or None (login needed)."""
    held: Account | None = st.session_state.get("account")
    if held is None:
        return None
    fresh = get_user(settings.app_db, held.name)
    if fresh is None:
        end("Your account was removed. Ask an administrator if this is a mistake.")
        return None
    if (fresh.role, fresh.department) != (held.role, held.department):
        end("Your account's role or department changed: sign in again.")
        return None
    st.session_state["account"] = fresh  # e.g. must_change cleared by the password change
    return fresh
