"""What every CLI shares: consoles, settings with readable validation errors, user errors without
tracebacks, JSON output."""

from __future__ import annotations

import json
import sys
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape

from core import db
from core.errors import AssistantError, validation_problems
from core.settings import Settings, load_settings

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


def safe(value: object) -> str:
    """Text from files, paths or users, fit to print with Rich: markup escaped (a file named
    `drafts[/v2].md` must not abort the run) and control or bidi characters shown as \\uXXXX (a name
    holding a line break or a right-to-left mark must not disguise what is printed)."""
    text = "".join(
        f"\\u{ord(ch):04x}" if unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") else ch for ch in str(value)
    )
    return escape(text)


def settings_or_exit(**overrides: Any) -> Settings:
    try:
        settings = load_settings(**overrides)
        db.use_settings(settings)  # the stores of this home in PostgreSQL when database_url is set
        return settings
    except AssistantError as exc:  # a database_url that is not PostgreSQL's
        err.print(f"[red]error:[/red] {safe(exc)}")
        raise typer.Exit(2) from None
    except ValidationError as exc:
        problems = validation_problems(exc, "settings")
        err.print(
            f"[red]error:[/red] invalid settings ({safe(problems)}). Check ASSISTANT_* variables, .env and flags."
        )
        raise typer.Exit(2) from None


@contextmanager
def user_errors() -> Iterator[None]:
    try:
        yield
    except AssistantError as exc:
        err.print(f"[red]error:[/red] {safe(exc)}")
        raise typer.Exit(2) from None


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, ensure_ascii=False, indent=2, default=str) + "\n")
