"""Users (admin): list, add, remove accounts — the same functions as `assistant users`."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from assistant.app.users import Account, add_user, list_users, remove_user
from core.errors import AssistantError
from core.settings import Settings


def render(settings: Settings, account: Account) -> None:
    st.header("Users")
    accounts = list_users(settings.app_db)
    st.dataframe(pd.DataFrame([{"user": a.name, "role": a.role, "department": a.department or "",
                                "created": a.created} for a in accounts]), hide_index=True, width="stretch")
    c1, c2 = st.columns(2)
    with c1:
        st.subheader("Add a user")
        name = st.text_input("User name", key="new_user_name")
        password = st.text_input("Initial password (8+ characters)", type="password", key="new_user_password")
        role = st.selectbox("Role", ["staff", "claims", "underwriting", "service", "finance", "admin"],
                            key="new_user_role")
        dept = st.text_input("Department (e.g. claims, sales, hr)", key="new_user_dept")
        if st.button("Add user", key="add_user"):
            try:
                add_user(settings.app_db, name.strip(), password, role, dept.strip() or None)
                st.success(f"user {name} added")
                st.rerun()
            except AssistantError as exc:
                st.error(str(exc))
    with c2:
        st.subheader("Remove a user")
        others = [a.name for a in accounts if a.name != account.name]
        victim = st.selectbox("User", others, key="remove_user_name", index=None)
        if st.button("Remove", key="remove_user", disabled=victim is None):
            try:
                remove_user(settings.app_db, victim)
                st.rerun()
            except AssistantError as exc:
                st.error(str(exc))
