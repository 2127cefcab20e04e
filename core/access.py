"""The one access decision: which knowledge bases, documents and tools a user may use.

Every path that hands out knowledge-base content or runs a tool asks here, and nowhere else: chat
retrieval and the `search_documents` tool (the same department filter), the sources and cited files
shown (may this user see that document *now*), the knowledge-base selector in the UI, the CLI and the
tool registry. A rule therefore changes in one place and cannot be forgotten on one path.

The rules:
- Knowledge bases: `ASSISTANT_KB_ACCESS` (`{"hr": ["hr"]}`) restricts a knowledge base to departments;
  an unlisted one is open to everyone.
- Documents: a document tagged with a department (`ingest add --department`) is visible to that
  department only; an untagged one to everyone.
- Tools: a tool declares the roles (and/or departments) that may call it; none declared: everyone.
- Admins may use and see everything.
- Department names compare case-insensitively ("HR" is "hr"), as ingest stores its tags.

Decisions are taken from the user record only, never from retrieved text, tool results or arguments, so
a poisoned document cannot grant itself anything.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from core.errors import AssistantError
from core.identity import User


class AccessDenied(AssistantError):
    """The user may not use or see this; the message says what, never what the thing contains."""


def tag(department: str | None) -> str | None:
    """A department as stored on documents: trimmed, lower case; empty means none."""
    return (department or "").strip().lower() or None


@dataclass(frozen=True)
class ToolRule:
    """Who may call a tool: empty sets mean everyone; admins always may."""

    roles: frozenset[str] = frozenset()
    departments: frozenset[str] = frozenset()

    def allows(self, user: User) -> bool:
        return may_use_tool(user, self)


def may_use_tool(user: User, rule: ToolRule) -> bool:
    if user.is_admin:
        return True
    if rule.roles and user.role not in rule.roles:
        return False
    return not rule.departments or tag(user.department) in {tag(d) for d in rule.departments}


def may_see(user: User, department: str | None) -> bool:
    """May this user see a document carrying this department tag (None: untagged, everyone)?"""
    return user.is_admin or tag(department) is None or tag(department) == tag(user.department)


def visible_departments(user: User) -> list[str | None] | None:
    """The retrieval filter: department tags whose documents this user may see (None: no filter, admins)."""
    return None if user.is_admin else [None, tag(user.department)] if tag(user.department) else [None]


@dataclass
class AccessPolicy:
    """The knowledge-base rules of one deployment (from the settings) plus the fixed rules above."""

    kb_access: dict[str, set[str]] = field(default_factory=dict)  # knowledge base -> departments allowed

    @classmethod
    def from_settings(cls, settings: Any) -> AccessPolicy:
        return cls({kb: {tag(d) for d in depts} for kb, depts in settings.kb_access.items()})

    def may_use_kb(self, user: User, kb: str) -> bool:
        allowed = self.kb_access.get(kb)
        return user.is_admin or not allowed or tag(user.department) in {tag(d) for d in allowed}

    def check_kb(self, user: User, kb: str) -> None:
        if not self.may_use_kb(user, kb):
            raise AccessDenied(f"user '{user.name}' may not use knowledge base '{kb}'")

    def knowledge_bases(self, user: User, names: Iterable[str]) -> list[str]:
        """The ones of `names` this user may pick (the UI's selector, listings)."""
        return [n for n in names if self.may_use_kb(user, n)]

    def departments(self, user: User) -> list[str | None] | None:
        return visible_departments(user)

    def may_see_document(self, user: User, kb: str, doc: Mapping[str, Any]) -> bool:
        """A document (its manifest entry) of knowledge base `kb`, judged by its tag as it is now."""
        return self.may_use_kb(user, kb) and may_see(user, doc.get("department"))

    def may_use_tool(self, user: User, rule: ToolRule) -> bool:
        return may_use_tool(user, rule)
