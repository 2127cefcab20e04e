"""A cited document's file, handed out only by document id, only to a user who may see that document now,
and only while the file on disk is byte for byte the one that was ingested (its sha256 in the manifest).

A citation's stored path is never opened directly: the file there may since have been replaced by another
department's document of the same name, or edited after ingest.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.access import AccessDenied, AccessPolicy
from core.errors import AssistantError
from core.identity import User
from core.settings import Settings


@dataclass(frozen=True)
class CitedFile:
    doc_id: str
    name: str
    data: bytes
    document: dict[str, Any]


def doc_id_of(chunk_id: str) -> str:
    """Chunk ids are `DOCID:SHA8:NNNN` (ingest/pipeline.py)."""
    return chunk_id.split(":", 1)[0]


def cited_digest(chunk_id: str) -> str | None:
    """The first 8 hex digits of the sha256 of the document version a chunk came from."""
    parts = chunk_id.split(":")
    return parts[1] if len(parts) == 3 else None


def open_cited(settings: Settings, policy: AccessPolicy, user: User, kb: str, chunk_id: str) -> CitedFile:
    """The file of the document a cited chunk belongs to, after every check; AssistantError otherwise."""
    from ingest.store import KnowledgeBase

    doc_id = doc_id_of(chunk_id)
    kbase = KnowledgeBase(settings, kb)
    doc = kbase.read_manifest()["documents"].get(doc_id) if kbase.exists() else None
    if doc is None or not policy.may_see_document(user, kb, doc):
        # the same answer whether it is gone or forbidden: no hint about what exists
        raise AccessDenied("this document is not available to you (removed, or restricted to another department)")
    digest = cited_digest(chunk_id)
    if digest and not doc["sha256"].startswith(digest):
        raise AssistantError("the document has been replaced since this answer was written; ask again to cite "
                             "the current version")
    path = Path(doc["path"])
    try:
        data = path.read_bytes()
    except OSError:
        raise AssistantError(f"the file of {doc['source']} is no longer where it was ingested from") from None
    if hashlib.sha256(data).hexdigest() != doc["sha256"]:
        raise AssistantError(f"the file of {doc['source']} changed on disk after it was ingested; an administrator "
                             "re-ingests it")
    return CitedFile(doc_id, doc["source"], data, doc)
