"""Timestamps as every store writes them: UTC, ISO 8601."""

from __future__ import annotations

from datetime import UTC, datetime


def now_iso(timespec: str = "seconds") -> str:
    return datetime.now(UTC).isoformat(timespec=timespec)
