"""Users (admin): list, add, remove accounts, change a role or department — the same functions as
`assistant users`; every change is written to the audit log."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from assistant.app.users import MIN_PASSWORD, PASSWORD_RULE, Account, add_user, list_users, remove_user, set_role
from core.audit import record_event
from core.errors import AssistantError
from core.settings import Settings

ROLES = ["staff", "claims", "underwriting", "service", "finance", "admin"]


def render(settings: Settings, account: Account) -> None:
    st.header("Users")
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
