"""Reading knowledge-base versions written before the project's own store (LangChain community FAISS:
`index.faiss` + `index.pkl`), only to migrate them.

The pickle holds `(InMemoryDocstore, {position: chunk_id})`. It is read by an unpickler that can build
exactly two classes — the docstore (as a plain holder) and LangChain's `Document` — and refuses every
other global, so a tampered file cannot run code: it fails to load instead.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import faiss
from langchain_core.documents import Document

from ingest.vectorstore import LocalVectorStore, StoreError

LEGACY_DOCSTORE = "index.pkl"


class _DocstoreHolder:
    """Stands in for langchain_community's InMemoryDocstore: receives its `_dict` state."""

    _dict: dict[str, Any]


_ALLOWED = {
    ("langchain_community.docstore.in_memory", "InMemoryDocstore"): _DocstoreHolder,
    ("langchain_core.documents.base", "Document"): Document,
}


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a legacy docstore") from None


def is_legacy(folder: Path) -> bool:
    return (folder / LEGACY_DOCSTORE).exists() and (folder / "index.faiss").exists()


def read_legacy(folder: Path) -> LocalVectorStore:
    """The legacy version in `folder` as a LocalVectorStore (in memory; the caller commits it)."""
    try:
        index = faiss.read_index(str(folder / "index.faiss"))
        raw = (folder / LEGACY_DOCSTORE).read_bytes()
        docstore, positions = _RestrictedUnpickler(io.BytesIO(raw)).load()
        stored = docstore._dict
        ids = [positions[i] for i in range(index.ntotal)]
        docs = {}
        for cid in ids:
            d = stored[cid]
            docs[cid] = Document(page_content=d.page_content, metadata=dict(d.metadata), id=cid)
    except (OSError, RuntimeError, pickle.UnpicklingError, EOFError, AttributeError, KeyError, TypeError,
            ValueError) as exc:
        raise StoreError(f"legacy index: {type(exc).__name__}: {exc}") from exc
    return LocalVectorStore(None, index.d, index, ids, docs)
