"""What the pages share across reruns: the settings, the loaded assistant (once per process), the user."""

from __future__ import annotations

import logging
from typing import Any

import streamlit as st

from assistant.app.users import Account
from core import db
from core.settings import Settings, load_settings

log = logging.getLogger("ui")


def settings() -> Settings:
    s = load_settings()
    db.use_settings(s)  # users, conversations, feedback and the audit in PostgreSQL when database_url is set
    return s


@st.cache_resource(show_spinner="Loading the model …")
def _assistant(home: str, model: str, backend: str, base_url: str | None) -> Any:
    from assistant.chain import build_assistant

    return build_assistant(load_settings())


def assistant(s: Settings) -> Any:
    """The chain over the configured model, loaded once per server process and shared by all sessions."""
    return _assistant(str(s.home), s.model, s.backend, s.openai_base_url)


def account() -> Account | None:
    return st.session_state.get("account")


def accessible_kbs(s: Settings, acc: Account) -> list[str]:
    """Knowledge bases that exist and that this user may use (core.access: ASSISTANT_KB_ACCESS)."""
    from core.access import AccessPolicy
    from ingest.store import list_knowledge_bases

    return AccessPolicy.from_settings(s).knowledge_bases(acc.user, list_knowledge_bases(s))
