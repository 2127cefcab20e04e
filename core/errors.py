"""Errors that carry a message meant for the user (the CLI prints them without a traceback)."""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError


class AssistantError(Exception):
    """Base for errors whose message tells the user what went wrong and what to do."""


class TurnRefused(Exception):  # noqa: N818 (what happened to the turn)
    """A turn refused before any model work (e.g. no engine slot free): no turn is recorded for it; the caller
    records the refusal (an audit event) and tells the client when to retry."""


class FileRejected(AssistantError):
    """A single input file could not be ingested; other files go on."""

    def __init__(self, path: Path | str, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class EmbeddingMismatch(AssistantError):
    """The knowledge base was built with another embedding model than the one configured."""


class KnowledgeBaseBusy(AssistantError):
    """Another process holds the knowledge base's write lock."""


class NotFound(AssistantError):
    """A knowledge base or document that does not exist."""


class DataError(AssistantError):
    """A malformed row of an input file (training data, question sets): names the file, line and field."""

    def __init__(self, path: Path | str, line: int, message: str) -> None:
        super().__init__(f"{path}:{line}: {message}")
        self.path, self.line = str(path), line


def validation_problems(exc: ValidationError, whole: str = "value") -> str:
    """A pydantic error as one line, `field: problem; ...` (`whole` names the object when no field is at fault)."""
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or whole}: {e['msg']}" for e in exc.errors())


class KnowledgeBaseUnavailable(AssistantError):
    """The service holding the knowledge base (Milvus) cannot be reached: nothing was read or changed."""
