"""The calculator tool: arithmetic on figures, bounded so that no expression can run long. Any tool plug-in can
add it (`calculator_tool()`); the answer path offers it when a question states a figure."""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable
from typing import Annotated, Any

from langchain_core.tools import BaseTool
from pydantic import Field

from assistant.tools.registry import business_tool

__all__ = ["EXPRESSION", "calculator_tool", "safe_eval"]

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
EXPRESSION = rf"(?<![A-Za-z0-9_.-]){_NUM}(?:(?:\s*[+*/×÷]\s*|\s+-\s+){_NUM})+(?![A-Za-z0-9_-])"


def calculator_tool() -> BaseTool:
    """The `calculator` tool (an explicit sum in a question is computed through it before the model writes)."""

    # an explicit expression (two or more numbers joined by operators) is computed, never guessed
    @business_tool(timeout_s=2.0, route={"expression": EXPRESSION}, uses_figures="expression")
    def calculator(expression: Annotated[str, Field(description="arithmetic expression")]) -> dict:
        """Arithmetic over figures (计算), e.g. (1500 - 200) * 0.75"""
        return {"result": safe_eval(expression)}

    return calculator
