"""The one settings object. Every module receives a `Settings`; none reads the environment itself.

Sources, highest priority first: explicit arguments (CLI flags), `ASSISTANT_*` environment variables,
a `.env` file in the working directory, then the defaults below.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="ASSISTANT_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    home: Path = Field(
        default=Path(".assistant"),
        description="Data home: knowledge bases, adapters, databases, logs. Relative paths are "
        "resolved against the working directory.",
    )
    embedding_model: str = Field(
        default="multilingual-e5-small",
        description="Embedding model: 'multilingual-e5-small' (offline default, zh+en, bundled), "
        "'use-multilingual' (offline, faster, weaker), or any sentence-transformers model id or "
        "local path (e.g. 'BAAI/bge-m3', '/models/bge-small-zh-v1.5').",
    )
    chunk_size: int = Field(default=320, ge=32, description="Max tokens per chunk (embedding model's tokens).")
    chunk_overlap: int = Field(default=48, ge=0, description="Token overlap between split pieces of a clause.")
    min_chunk_tokens: int = Field(default=48, ge=0, description="Fragments smaller than this are merged.")
    embed_batch_size: int = Field(default=32, ge=1)
    commit_every: int = Field(
        default=25, ge=1, description="Documents ingested between atomic index commits in a long run."
    )
    lock_timeout_s: float = Field(default=10.0, ge=0, description="How long to wait for another ingest.")
    default_kb: str = "default"
    # retrieval (the chain)
    fusion: Literal["rrf", "weighted"] = Field(default="rrf", description="How dense and BM25 results combine.")
    dense_weight: float = Field(default=0.6, ge=0, le=1, description="Dense share in weighted fusion.")
    min_relevance: float = Field(
        default=0.83, ge=0, le=1,
        description="Relevance floor: below this best dense cosine the documents are taken not to answer.",
    )

    @field_validator("home")
    @classmethod
    def _absolute_home(cls, v: Path) -> Path:
        return v.expanduser().resolve()

    @model_validator(mode="after")
    def _overlap_below_size(self) -> Settings:
        if self.chunk_overlap >= self.chunk_size:
            raise ValueError(
                f"chunk_overlap ({self.chunk_overlap}) must be smaller than chunk_size ({self.chunk_size})"
            )
        return self

    @property
    def kb_root(self) -> Path:
        return self.home / "kb"

    def kb_dir(self, name: str) -> Path:
        return self.kb_root / name


def load_settings(**overrides: object) -> Settings:
    """Settings from env/.env with CLI overrides applied (None values mean 'not given')."""
    return Settings(**{k: v for k, v in overrides.items() if v is not None})
