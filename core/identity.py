"""Who is asking: a user with a role and a department (what they may do is decided in `core.access`)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class User:
    name: str
    role: str = "staff"  # staff | claims | underwriting | finance | admin ...
    department: str | None = None

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"
