"""The demo insurer's business tools over the SQLite database, plus the calculator and document search."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

from langchain_core.tools import BaseTool
from pydantic import Field

from assistant.tools.calculator import calculator_tool
from assistant.tools.demo.business_db import connect
from assistant.tools.demo.data import STATUS_ZH
from assistant.tools.registry import ToolRegistry, business_tool, current_context, current_user


def _id(pattern: str) -> str:
    """A record id as a whole token, also beside Chinese text ("保单POL-2024-0001的"), where \\b finds no edge."""
    return rf"(?<![A-Za-z0-9-]){pattern}(?![A-Za-z0-9])"


EMAIL = r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+"


def labelled(row: dict[str, Any]) -> dict[str, Any]:
    """The record with its status's Chinese label beside the code, as the business system shows it: a model
    answering in Chinese copies the label instead of translating the code (the demo adapter wrote 已停保 for
    lapsed; the label is 已失效)."""
    if row.get("status") in STATUS_ZH:
        row["status_zh"] = STATUS_ZH[row["status"]]
    return row


def demo_tools(db_path: Path, search: Callable[[str], list[dict]] | None = None) -> list[BaseTool]:
    def one(sql: str, key: str) -> dict[str, Any]:
        with connect(db_path) as conn:
            row = conn.execute(sql, (key.strip().upper(),)).fetchone()
        if row is None:
            return {"error": f"not found: {key}"}
        return labelled(dict(row))

    @business_tool(route={"policy_id": _id(r"POL-\d{4}-\d{4}")})
    def get_policy_status(policy_id: Annotated[str, Field(description="e.g. POL-2024-0001")]) -> dict:
        """Policy status, dates, sum insured (保单状态)"""
        row = one("SELECT p.*, c.name AS holder FROM policies p JOIN customers c USING (customer_id) "
                  "WHERE policy_id = ?", policy_id)
        return row

    @business_tool(roles={"claims", "underwriting", "service"}, route={"claim_id": _id(r"CLM-\d{4}-\d{4}")})
    def get_claim_status(claim_id: Annotated[str, Field(description="e.g. CLM-2024-0001")]) -> dict:
        """Claim status and amounts (理赔进度)"""
        return one("SELECT * FROM claims WHERE claim_id = ?", claim_id)

    @business_tool(route={"order_id": _id(r"ORD-\d{4,}")})
    def get_order_status(order_id: Annotated[str, Field(description="e.g. ORD-5001")]) -> dict:
        """Order payment status (订单状态)"""
        return one("SELECT * FROM orders WHERE order_id = ?", order_id)

    @business_tool(roles={"claims", "underwriting", "service"}, route={"customer_id": _id(r"CUS-\d{4,}")})
    def list_customer_policies(customer_id: Annotated[str, Field(description="e.g. CUS-1001")]) -> list | dict:
        """A customer's policies (客户保单)"""
        with connect(db_path) as conn:
            rows = conn.execute("SELECT policy_id, product, status FROM policies WHERE customer_id = ? "
                                "ORDER BY policy_id", (customer_id.strip().upper(),)).fetchall()
        return [labelled(dict(r)) for r in rows] or {"error": f"no policies for customer {customer_id}"}

    @business_tool(offer=False)  # the chat's retrieval searches the same way
    def search_documents(query: Annotated[str, Field(description="search text")]) -> list:
        """Search the documents (检索资料)"""
        # the turn's own search (the asking user's knowledge base and departments: core.access), else the
        # registry's fixed one (tests, scripts that build a registry for one user)
        ctx = current_context.get()
        fn = ctx.search if ctx is not None and ctx.search is not None else search
        if fn is None:
            return [{"error": "no knowledge base is available"}]
        return fn(query)

    @business_tool(roles={"claims", "service"}, route={"to": EMAIL})  # only to an address the user gave
    def draft_email(
        to: Annotated[str, Field(description="email address")],
        subject: Annotated[str, Field(description="subject")],
        body: Annotated[str, Field(description="body")],
    ) -> dict:
        """Draft an email to the outbox, not sent (起草邮件)"""
        if "@" not in to:
            raise ValueError(f"'{to}' is not an email address")
        user = current_user.get()
        with connect(db_path) as conn:
            cur = conn.execute("INSERT INTO outbox (created_by, recipient, subject, body) VALUES (?, ?, ?, ?)",
                               (user.name if user else None, to, subject, body))
        return {"draft_id": cur.lastrowid, "status": "saved to outbox"}

    return [get_policy_status, get_claim_status, get_order_status, list_customer_policies, calculator_tool(),
            search_documents, draft_email]


def demo_registry(db_path: Path, search: Callable[[str], list[dict]] | None = None) -> ToolRegistry:
    return ToolRegistry().add(*demo_tools(db_path, search))
