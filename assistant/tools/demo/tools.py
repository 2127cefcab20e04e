"""The demo insurer's business tools over the SQLite database, plus a safe calculator and document search."""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

from langchain_core.tools import BaseTool
from pydantic import Field

from assistant.tools.demo.business_db import connect
from assistant.tools.registry import ToolRegistry, business_tool, current_user

_OPS: dict[type, Callable[..., Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow, ast.USub: operator.neg,
    ast.UAdd: operator.pos,
}


def safe_eval(expression: str) -> float | int:
    """Arithmetic only: numbers, + - * / // % ** and parentheses; no names, calls or attributes."""
    expr = expression.replace("×", "*").replace("÷", "/").replace("−", "-").replace(",", "")
    if len(expr) > 200:
        raise ValueError("expression too long")

    def ev(node: ast.AST) -> Any:
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, int | float) and not isinstance(node.value, bool):
            return node.value
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            left, right = ev(node.left), ev(node.right)
            if isinstance(node.op, ast.Pow) and abs(right) > 100:
                raise ValueError("exponent too large")
            return _OPS[type(node.op)](left, right)
        if isinstance(node, ast.UnaryOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](ev(node.operand))
        raise ValueError(f"not allowed in a calculation: {ast.dump(node)[:40]}")

    try:
        value = ev(ast.parse(expr, mode="eval"))
    except SyntaxError as exc:
        raise ValueError(f"not an arithmetic expression: {expression!r}") from exc
    except ZeroDivisionError as exc:
        raise ValueError("division by zero") from exc
    return int(value) if float(value).is_integer() else round(value, 6)


def demo_tools(db_path: Path, search: Callable[[str], list[dict]] | None = None) -> list[BaseTool]:
    def one(sql: str, key: str) -> dict[str, Any]:
        with connect(db_path) as conn:
            row = conn.execute(sql, (key.strip().upper(),)).fetchone()
        if row is None:
            return {"error": f"not found: {key}"}
        return dict(row)

    @business_tool()
    def get_policy_status(policy_id: Annotated[str, Field(description="e.g. POL-2024-0001")]) -> dict:
        """Policy status, dates, sum insured (保单状态)"""
        row = one("SELECT p.*, c.name AS holder FROM policies p JOIN customers c USING (customer_id) "
                  "WHERE policy_id = ?", policy_id)
        return row

    @business_tool(roles={"claims", "underwriting", "service"})
    def get_claim_status(claim_id: Annotated[str, Field(description="e.g. CLM-2024-0001")]) -> dict:
        """Claim status and amounts (理赔进度)"""
        return one("SELECT * FROM claims WHERE claim_id = ?", claim_id)

    @business_tool()
    def get_order_status(order_id: Annotated[str, Field(description="e.g. ORD-5001")]) -> dict:
        """Order payment status (订单状态)"""
        return one("SELECT * FROM orders WHERE order_id = ?", order_id)

    @business_tool(roles={"claims", "underwriting", "service"})
    def list_customer_policies(customer_id: Annotated[str, Field(description="e.g. CUS-1001")]) -> list | dict:
        """A customer's policies (客户保单)"""
        with connect(db_path) as conn:
            rows = conn.execute("SELECT policy_id, product, status FROM policies WHERE customer_id = ? "
                                "ORDER BY policy_id", (customer_id.strip().upper(),)).fetchall()
        return [dict(r) for r in rows] or {"error": f"no policies for customer {customer_id}"}

    @business_tool(timeout_s=2.0)
    def calculator(expression: Annotated[str, Field(description="arithmetic expression")]) -> dict:
        """Arithmetic, e.g. (2600 - 100) * 0.9 (计算)"""
        return {"result": safe_eval(expression)}

    @business_tool()
    def search_documents(query: Annotated[str, Field(description="search text")]) -> list:
        """Search the documents (检索资料)"""
        if search is None:
            return [{"error": "no knowledge base is available"}]
        return search(query)

    @business_tool(roles={"claims", "service"})
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

    return [get_policy_status, get_claim_status, get_order_status, list_customer_policies, calculator,
            search_documents, draft_email]


def demo_registry(db_path: Path, search: Callable[[str], list[dict]] | None = None) -> ToolRegistry:
    return ToolRegistry().add(*demo_tools(db_path, search))
