"""The demo insurer's business tools over the SQLite database, plus a safe calculator and document search."""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

from langchain_core.tools import BaseTool
from pydantic import Field

from assistant.tools.demo.business_db import connect
from assistant.tools.demo.data import STATUS_ZH
from assistant.tools.registry import ToolRegistry, business_tool, current_context, current_user

_OPS: dict[type, Callable[..., Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow, ast.USub: operator.neg,
    ast.UAdd: operator.pos,
}


MAX_DIGITS = 100  # no business figure has more; every intermediate result is kept below 10**MAX_DIGITS


def _digits(x: float | int) -> float:
    """log10 of |x| (0 for 0), without converting a huge int to float."""
    if x == 0:
        return 0.0
    if isinstance(x, int):
        return (x.bit_length() - 1) * math.log10(2)
    return math.log10(abs(x))


def _checked(op: type, left: float | int, right: float | int) -> float | int:
    """Refuse an operation whose result would be too large *before* computing it: one big `**` is a single
    C call that nothing (no timeout, no thread) can interrupt once started."""
    if op is ast.Pow:
        if abs(right) > 100:
            raise ValueError("exponent too large")
        if _digits(left) * abs(right) > MAX_DIGITS:
            raise ValueError("result too large")
    elif op is ast.Mult and _digits(left) + _digits(right) > MAX_DIGITS:
        raise ValueError("result too large")
    try:
        value = _OPS[op](left, right)
    except OverflowError:
        raise ValueError("result too large") from None
    if isinstance(value, complex):
        raise ValueError("the result is not a real number")
    if _digits(value) > MAX_DIGITS:
        raise ValueError("result too large")
    return value


def safe_eval(expression: str) -> float | int:
    """Arithmetic only: numbers, + - * / // % ** and parentheses; no names, calls or attributes. Every
    operation's result is bounded (|x| < 10**MAX_DIGITS) before it is computed, so nothing can run long."""
    expr = expression.replace("×", "*").replace("÷", "/").replace("−", "-").replace(",", "")
    if len(expr) > 200:
        raise ValueError("expression too long")

    def ev(node: ast.AST) -> Any:
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, int | float) and not isinstance(node.value, bool):
            if _digits(node.value) > MAX_DIGITS or (isinstance(node.value, float) and not math.isfinite(node.value)):
                raise ValueError("number too large")
            return node.value
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            return _checked(type(node.op), ev(node.left), ev(node.right))
        if isinstance(node, ast.UnaryOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](ev(node.operand))
        raise ValueError(f"not allowed in a calculation: {ast.dump(node)[:40]}")

    try:
        value = ev(ast.parse(expr, mode="eval"))
    except SyntaxError as exc:
        raise ValueError(f"not an arithmetic expression: {expression!r}") from exc
    except ZeroDivisionError as exc:
        raise ValueError("division by zero") from exc
    except RecursionError:
        raise ValueError("expression nested too deeply") from None
    return int(value) if float(value).is_integer() else round(value, 6)


# two or more numbers joined by + * / × ÷, or by a minus with spaces around it (2024-01-10 is a date, not a sum)
_NUM = r"[(（]?\s*\d[\d,]*(?:\.\d+)?\s*[)）]?"
EXPRESSION = rf"(?<![\w.-]){_NUM}(?:(?:\s*[+*/×÷]\s*|\s+-\s+){_NUM})+(?![\w-])"


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

    @business_tool(route={"policy_id": r"\bPOL-\d{4}-\d{4}\b"})
    def get_policy_status(policy_id: Annotated[str, Field(description="e.g. POL-2024-0001")]) -> dict:
        """Policy status, dates, sum insured (保单状态)"""
        row = one("SELECT p.*, c.name AS holder FROM policies p JOIN customers c USING (customer_id) "
                  "WHERE policy_id = ?", policy_id)
        return row

    @business_tool(roles={"claims", "underwriting", "service"}, route={"claim_id": r"\bCLM-\d{4}-\d{4}\b"})
    def get_claim_status(claim_id: Annotated[str, Field(description="e.g. CLM-2024-0001")]) -> dict:
        """Claim status and amounts (理赔进度)"""
        return one("SELECT * FROM claims WHERE claim_id = ?", claim_id)

    @business_tool(route={"order_id": r"\bORD-\d{4,}\b"})
    def get_order_status(order_id: Annotated[str, Field(description="e.g. ORD-5001")]) -> dict:
        """Order payment status (订单状态)"""
        return one("SELECT * FROM orders WHERE order_id = ?", order_id)

    @business_tool(roles={"claims", "underwriting", "service"}, route={"customer_id": r"\bCUS-\d{4,}\b"})
    def list_customer_policies(customer_id: Annotated[str, Field(description="e.g. CUS-1001")]) -> list | dict:
        """A customer's policies (客户保单)"""
        with connect(db_path) as conn:
            rows = conn.execute("SELECT policy_id, product, status FROM policies WHERE customer_id = ? "
                                "ORDER BY policy_id", (customer_id.strip().upper(),)).fetchall()
        return [labelled(dict(r)) for r in rows] or {"error": f"no policies for customer {customer_id}"}

    # an explicit expression (two or more numbers joined by operators) is computed, never guessed
    @business_tool(timeout_s=2.0, route={"expression": EXPRESSION}, uses_figures="expression")
    def calculator(expression: Annotated[str, Field(description="arithmetic expression")]) -> dict:
        """Arithmetic, e.g. (2600 - 100) * 0.9 (计算)"""
        return {"result": safe_eval(expression)}

    @business_tool()
    def search_documents(query: Annotated[str, Field(description="search text")]) -> list:
        """Search the documents (检索资料)"""
        # the turn's own search (the asking user's knowledge base and departments: core.access), else the
        # registry's fixed one (tests, scripts that build a registry for one user)
        ctx = current_context.get()
        fn = ctx.search if ctx is not None and ctx.search is not None else search
        if fn is None:
            return [{"error": "no knowledge base is available"}]
        return fn(query)

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
