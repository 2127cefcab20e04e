"""Users (admin): list, add, remove accounts, change a role or department — the same functions as
`assistant users`; API keys: create one for an account (its token shown once), list, revoke, and the last week's
usage per key — the same functions as `assistant keys`. Every change is written to the audit log."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import pandas as pd
import streamlit as st

from assistant.app import api_keys
from assistant.app.users import MIN_PASSWORD, PASSWORD_RULE, Account, add_user, list_users, remove_user, set_role
from core.audit import record_event
from core.errors import AssistantError
from core.settings import Settings
from ui import safe_markdown as md

ROLES = ["staff", "claims", "underwriting", "service", "finance", "admin"]


USAGE_DAYS = 7


def render(settings: Settings, account: Account) -> None:
    st.header("Users")
    accounts_tab, keys_tab = st.tabs([":material/group: Accounts", ":material/key: API keys"])
    with accounts_tab:
        _accounts(settings, account)
    with keys_tab:
        _keys(settings, account)


def _accounts(settings: Settings, account: Account) -> None:
    accounts = list_users(settings.app_db)
    st.dataframe(pd.DataFrame([{"user": a.name, "role": a.role, "department": a.department or "",
                                "created": a.created, "must change password": "yes" if a.must_change else ""}
                               for a in accounts]), hide_index=True, width="stretch")
    c1, c2 = st.columns(2)
    with c1:
        st.subheader("Add a user")
        name = st.text_input("User name", key="new_user_name")
        password = st.text_input(f"Initial password ({MIN_PASSWORD}+ characters; changed at the first login)",
                                 type="password", key="new_user_password", help=PASSWORD_RULE)
        st.caption(PASSWORD_RULE)
        role = st.selectbox("Role", ROLES, key="new_user_role")
        dept = st.text_input("Department (e.g. claims, sales, hr)", key="new_user_dept")
        if st.button("Add user", key="add_user"):
            try:
                acc = add_user(settings.app_db, name, password, role, dept, must_change=True)
                record_event(settings.audit_db, "user_added", account.name, target=acc.name, role=acc.role,
                             department=acc.department)
                st.success(f"user {acc.name} added")
                st.rerun()
            except AssistantError as exc:
                st.error(str(exc))
    others = [a for a in accounts if a.name != account.name]
    with c2:
        st.subheader("Change a role or department")
        who = st.selectbox("User", [a.name for a in others], key="role_user_name", index=None)
        current = next((a for a in others if a.name == who), None)
        new_role = st.selectbox("New role", ROLES, key="role_user_role",
                                index=ROLES.index(current.role) if current and current.role in ROLES else 0)
        new_dept = st.text_input("New department", key="role_user_dept",
                                 placeholder=(current.department or "") if current else "")
        if st.button("Change", key="role_user", disabled=current is None):
            try:
                acc = set_role(settings.app_db, current.name, new_role, new_dept or current.department)
                record_event(settings.audit_db, "user_role_changed", account.name, target=acc.name,
                             role=acc.role, department=acc.department, was_role=current.role,
                             was_department=current.department)
                st.rerun()
            except AssistantError as exc:
                st.error(str(exc))
        st.subheader("Remove a user")
        victim = st.selectbox("User", [a.name for a in others], key="remove_user_name", index=None)
        if st.button("Remove", key="remove_user", disabled=victim is None):
            try:
                remove_user(settings.app_db, victim)
                record_event(settings.audit_db, "user_removed", account.name, target=victim)
                st.rerun()
            except AssistantError as exc:
                st.error(str(exc))


def _local(ts: float | str | None) -> str:
    """A unix time or an ISO timestamp (UTC) as the server's local time; '' for none."""
    if ts is None or ts == "":
        return ""
    try:
        when = datetime.fromtimestamp(ts) if isinstance(ts, int | float) else datetime.fromisoformat(ts).astimezone()
    except (ValueError, OSError, OverflowError):
        return str(ts)
    return when.strftime("%Y-%m-%d %H:%M")


def _revoke(settings: Settings, admin: str, key_id: str) -> None:
    """A revoke button's callback: runs before the page is drawn again, so the table shows the new state."""
    try:
        key = api_keys.revoke_key(settings.app_db, key_id)
    except AssistantError as exc:
        st.session_state["api_key_notice"] = ("error", str(exc))
        return
    record_event(settings.audit_db, "api_key_revoked", admin, key_id=key.id, target=key.user)
    st.session_state["api_key_notice"] = ("success", f"key {key.id} of {key.user} revoked")


def _create(settings: Settings, admin: str, user: str | None, scopes: list[str], expiry: str, rpm: int,
            daily_tokens: int, label: str) -> tuple[api_keys.ApiKey, str]:
    """The key and its token, audited as `assistant keys create` audits it; AssistantError for bad input."""
    if not user:
        raise AssistantError("Choose the account the key acts as.")
    if not scopes:  # the CLI's empty list means every scope: here an empty choice is a mistake, not "all"
        raise AssistantError(f"Choose at least one scope ({', '.join(api_keys.SCOPES)}).")
    expires = api_keys.parse_expiry(expiry.strip() or None)
    if expires is not None and expires <= time.time():
        raise AssistantError(f"The expiry '{expiry.strip()}' is already past: the key could never be used.")
    key, token = api_keys.create_key(settings.app_db, user, scopes, expires, int(rpm), int(daily_tokens),
                                     label.strip() or None)
    record_event(settings.audit_db, "api_key_created", admin, key_id=key.id, target=user, scopes=list(key.scopes),
                 rpm=key.rpm, daily_tokens=key.daily_tokens, expires=key.expires)
    return key, token


def _keys(settings: Settings, account: Account) -> None:
    """Create a key (its token shown once), the keys with their state, a revoke button per active key, usage."""
    st.subheader("Create an API key")
    st.caption("A key acts as its account (role and department as in the chat, read on every request) through "
               "`assistant serve`; only its hash is stored.")
    with st.form("api_key_form"):
        c1, c2 = st.columns(2)
        user = c1.selectbox("Account", [a.name for a in list_users(settings.app_db)], index=None,
                            key="api_key_user")
        scopes = c2.multiselect("Scopes", list(api_keys.SCOPES), default=list(api_keys.SCOPES),
                                key="api_key_scopes")
        expiry = c1.text_input("Expires after (30d, 12h or a date such as 2027-01-31; empty: never)",
                               key="api_key_expiry")
        label = c2.text_input("Label (what the key is for)", key="api_key_label")
        rpm = c1.number_input("Requests per minute", min_value=1, value=settings.api_rpm, step=1,
                              key="api_key_rpm")
        daily = c2.number_input("Model tokens per day (UTC)", min_value=1, value=settings.api_daily_tokens,
                                step=1000, key="api_key_daily_tokens")
        submitted = st.form_submit_button("Create key", key="api_key_create", icon=":material/key:")
    if submitted:
        try:
            key, token = _create(settings, account.name, user, scopes, expiry, rpm, daily, label)
        except AssistantError as exc:
            st.error(md.text(str(exc)))
        else:
            st.success(md.text(f"key {key.id} for {key.user} ({', '.join(key.scopes)}; {key.rpm}/min, "
                               f"{key.daily_tokens} tokens/day)"))
            st.code(token, language=None)
            st.warning("Copy the key now: it is shown only this once and cannot be shown again (only its hash is "
                       "stored). A lost key is revoked and a new one created.", icon=":material/warning:")

    st.subheader("API keys")
    notice = st.session_state.pop("api_key_notice", None)
    if notice:
        (st.success if notice[0] == "success" else st.error)(md.text(notice[1]))
    keys = api_keys.list_keys(settings.app_db)
    if not keys:
        st.caption("No API keys yet.")
    else:
        st.dataframe(pd.DataFrame([{
            "id": k.id, "user": k.user, "label": k.label or "", "scopes": ", ".join(k.scopes), "per minute": k.rpm,
            "tokens/day": k.daily_tokens, "state": k.state, "expires": _local(k.expires) or "never",
            "created": _local(k.created), "last used": _local(k.last_used)} for k in keys]),
            hide_index=True, width="stretch", key="api_keys_table")
        active = [k for k in keys if k.state == "active"]
        if active:
            st.markdown("**Revoke a key** (its next request is refused)")
        for k in active:
            c1, c2 = st.columns([4, 1])
            c1.markdown(md.text(f"{k.id} · {k.user}" + (f" · {k.label}" if k.label else "")))
            c2.button("Revoke", key=f"api_key_revoke_{k.id}", icon=":material/block:", on_click=_revoke,
                      args=(settings, account.name, k.id))

    st.subheader(f"Usage, last {USAGE_DAYS} days")
    rows: list[dict[str, Any]] = api_keys.usage(settings.app_db, USAGE_DAYS)
    if not rows:
        st.caption(f"No API requests in the last {USAGE_DAYS} days.")
        return
    st.dataframe(pd.DataFrame([{
        "day (UTC)": r["day"], "key": r["key_id"], "user": r["user"] or "?", "label": r["label"] or "",
        "requests": r["requests"], "tokens": r["tokens"], "of quota": r["daily_tokens"],
        "refused (429)": r["refused"], "cached": r["cached"]} for r in rows]),
        hide_index=True, width="stretch", key="api_usage_table")
