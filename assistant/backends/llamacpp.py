"""The local backend's CPU engine: llama.cpp (`llama-cpp-python`) serving the GGUF itself.

- The prompt is rendered by the model's own chat template through `core.models.render_chat` (the renderer the
  transformers engine uses) and tokenised by the same HF tokenizer, then sent to llama.cpp's raw completion
  loop: the chain's stream routing and tool-call parsing see exactly the text the transformers engine gives.
- Concurrency: a llama.cpp context decodes one sequence and is not thread-safe, so the engine keeps a small
  pool of contexts (`llamacpp_contexts`, each with its own KV cache; the mmapped weights are shared by the OS)
  and a request borrows one for its whole turn. Up to that many staff are answered at once; the others queue.
  No lock is held across requests beyond the borrow.
- Prefix cache: each context keeps the KV state of its last prompt and llama.cpp re-evaluates only the tokens
  after the longest common prefix; a request borrows the idle context that shares the longest prefix with it
  (same adapter first), so the rules and tool schemas, and a tool loop's earlier turns, are not prefilled again.
  The constant prefixes (rules + a user's tools, per language and adapter) are also kept as KV snapshots
  (`keep_prefix`, ~6 MB each for the 0.5B): a context that holds another prompt takes one up in ~15 ms instead
  of prefilling ~570 tokens (5-10 s on 2 cores), which is what several staff asking at once otherwise cost.
- Adapters: a registry version is converted once to a GGUF LoRA (cached beside it) and applied to the quantised
  base; each context loads it once and switches per request (`llama_set_adapters_lora`), without reloading the
  base. Switching a context's adapter drops its prefix cache (the KV values depend on the adapter).
"""

from __future__ import annotations

import codecs
import ctypes
import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from langchain_core.messages import BaseMessage

from assistant.backends import cpuload
from assistant.backends.base import ModelTurn, TurnStats, parsed_message, structured_message, to_template_messages
from assistant.backends.constrained import Constraint
from core.errors import AssistantError
from core.models import GgufModel, load_tokenizer, render_chat, resolve_gguf
from core.settings import Settings


def default_threads() -> int:
    """Without a CPU monitor: cores-1 on small machines (one busy core stalls every llama.cpp thread waiting at
    its barrier), cores-2 above, at least 1."""
    n = cpuload.cores()
    return max(1, n - 1 if n <= 8 else n - 2)


def _import_llama_cpp(repack: bool) -> Any:
    try:
        import llama_cpp
        import llama_cpp.llama_cpp as low
    except ImportError as exc:
        raise AssistantError(
            "the llama.cpp engine needs llama-cpp-python: run `bash scripts/setup.sh` (it builds llama.cpp once, "
            "several minutes), or set ASSISTANT_ENGINE=transformers"
        ) from exc
    # `Llama` takes its model parameters from llama_model_default_params() and exposes no switch for weight
    # repacking ("extra buffer types"): set it there. Without repacking the mmapped weights are shared by every
    # context of the pool (repacking copies them per context), and the AMX repack of a native build, which dies
    # with SIGILL on VMs that advertise AMX without its register state, is never used. Measured on this 2-core VM
    # with a build without AMX kernels, repacking did not speed prompt processing beyond the run-to-run noise.
    default = getattr(low.llama_model_default_params, "_unpatched", low.llama_model_default_params)

    def params() -> Any:
        p = default()
        p.use_extra_bufts = repack
        return p

    params._unpatched = default  # type: ignore[attr-defined]
    low.llama_model_default_params = params
    return llama_cpp


@dataclass
class _Context:
    llm: Any  # llama_cpp.Llama
    loras: dict[str, Any] = field(default_factory=dict)  # GGUF LoRA path -> llama_adapter_lora pointer
    lora: str | None = None  # the adapter the KV cache was computed with
    used: float = 0.0  # when it was last borrowed (time.monotonic)

    def common_prefix(self, ids: list[int]) -> int:
        return _common(self.llm.input_ids[:self.llm.n_tokens], ids)


def _common(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


SNAPSHOTS = 16  # prompt prefixes kept: languages x tool sets x adapters in use


class LlamaCppEngine:
    """A GGUF served by a pool of llama.cpp contexts; `stream` is safe to call from several threads."""

    def __init__(self, model: GgufModel, settings: Settings) -> None:
        self.llama_cpp = _import_llama_cpp(settings.llamacpp_repack)
        self.model = model
        self.settings = settings
        # a fixed ASSISTANT_N_THREADS wins; otherwise each request sizes its threads to the free cores
        self.monitor = None if settings.n_threads else cpuload.CpuMonitor()
        if self.monitor is not None and not self.monitor.available:
            self.monitor = None
        self.n_threads = settings.n_threads or default_threads()
        self._active = 0  # requests decoding now
        self.n_contexts = settings.llamacpp_contexts
        self.tokenizer = load_tokenizer(model.tokenizer)
        self._idle: list[_Context] = []
        self._opened = 0
        self._cond = threading.Condition()
        self._lock = threading.Lock()  # adapter conversion and the fingerprint, once each
        self._fingerprint: str | None = None
        self._snapshots: OrderedDict[tuple[str | None, tuple[int, ...]], bytes] = OrderedDict()
        self._keeping: dict[tuple[str | None, tuple[int, ...]], threading.Event] = {}  # prefixes being prefilled
        self._idle.append(self._open())  # fail now, with the reason, if the GGUF cannot be loaded
        self._opened = 1
        self.arch = str(self._idle[0].llm.metadata.get("general.architecture", "qwen2"))
        self.n_vocab = int(self._idle[0].llm.n_vocab())
        self._eog = {t for t in (self.tokenizer.eos_token_id, self.tokenizer.pad_token_id,
                                 self.tokenizer.convert_tokens_to_ids("<|im_end|>")) if isinstance(t, int)}

    def _open(self) -> _Context:
        try:
            llm = self.llama_cpp.Llama(
                model_path=str(self.model.gguf), n_ctx=self.settings.llamacpp_n_ctx, n_batch=512,
                n_threads=self.n_threads, n_threads_batch=self.n_threads, verbose=False)
        except (ValueError, RuntimeError) as exc:
            raise AssistantError(f"llama.cpp cannot load {self.model.gguf}: {exc}") from exc
        return _Context(llm)

    # ---- the pool ----------------------------------------------------------------------------------
    def _borrow(self, ids: list[int], lora: str | None) -> _Context:
        with self._cond:
            while not self._idle and self._opened >= self.n_contexts:
                self._cond.wait()
            if self._idle:
                same, shared, _, best = max(((c.lora == lora, c.common_prefix(ids), c.used, c) for c in self._idle),
                                            key=lambda r: r[:3])
                # prompts differ in their constant prefix by language and by the user's tools: while the pool has
                # room, a request whose prefix no idle context holds gets a new one rather than evicting one
                # that another kind of request will want again (a context costs its KV cache, ~50 MB for 0.5B)
                cold = not same or shared < min(len(ids) // 2, 256)
                if not cold or self._opened >= self.n_contexts:
                    if cold:  # the pool is full: evict the least recently used
                        best = min(self._idle, key=lambda c: c.used)
                    self._idle.remove(best)
                    best.used = time.monotonic()
                    return best
            self._opened += 1
        try:
            ctx = self._open()
            ctx.used = time.monotonic()
            return ctx
        except BaseException:
            with self._cond:
                self._opened -= 1
                self._cond.notify()
            raise

    def _give_back(self, ctx: _Context) -> None:
        with self._cond:
            self._idle.append(ctx)
            self._cond.notify()

    # ---- adapters ----------------------------------------------------------------------------------
    def base_fingerprint(self) -> str:
        """The base's fingerprint as `finetune` records it, computed once from the HF weights and cached."""
        with self._lock:
            if self._fingerprint:
                return self._fingerprint
            st = self.model.gguf.stat()
            stamp = {"size": st.st_size, "mtime_ns": st.st_mtime_ns}
            cache = self.model.gguf.with_name(self.model.gguf.name + ".fingerprint.json")
            try:
                cached = json.loads(cache.read_text(encoding="utf-8"))
                if {k: cached.get(k) for k in stamp} == stamp:
                    self._fingerprint = str(cached["fingerprint"])
                    return self._fingerprint
            except (OSError, ValueError, KeyError):
                pass
            from core.models import base_fingerprint, load_model

            lm = load_model(self.model.hf_source, self.settings)
            self._fingerprint = base_fingerprint(lm.model)
            del lm
            try:
                from core.files import atomic_write_text

                atomic_write_text(cache, json.dumps(stamp | {"fingerprint": self._fingerprint}))
            except OSError:
                pass  # a read-only model folder: recomputed next start
            return self._fingerprint

    def ensure_adapter(self, ref: str) -> str:
        """A registry adapter as a GGUF LoRA for this base (converted once, beside the version); its path."""
        from core import registry
        from core.gguf_lora import peft_to_gguf_lora

        av = registry.get(self.settings, ref)
        out = av.path / f"adapter-{self.arch}.gguf"
        if out.is_file():
            return str(out)
        registry.check_base(av, self.base_fingerprint(), str(self.model.gguf))
        with self._lock:
            if not out.is_file():
                peft_to_gguf_lora(av.path, out, self.arch)
        return str(out)

    def _set_lora(self, ctx: _Context, lora: str | None) -> None:
        lc = self.llama_cpp
        if lora and lora not in ctx.loras:
            ptr = lc.llama_adapter_lora_init(ctx.llm.model, lora.encode("utf-8"))
            if not ptr:
                raise AssistantError(f"llama.cpp cannot load the adapter {lora} onto {self.model.gguf}")
            ctx.loras[lora] = ptr
        if lora == ctx.lora:
            return
        if lora:
            adapters = (lc.llama_adapter_lora_p_ctypes * 1)(ctx.loras[lora])
            scales = (lc.ctypes.c_float * 1)(1.0)
            rc = lc.llama_set_adapters_lora(ctx.llm.ctx, adapters, 1, scales)
        else:
            rc = lc.llama_set_adapters_lora(ctx.llm.ctx, None, 0, None)
        if rc:
            raise AssistantError(f"llama.cpp could not switch the adapter to {lora or 'none'} (code {rc})")
        ctx.llm.reset()  # the cached KV values were computed with the other adapter
        ctx.lora = lora

    # ---- prompt prefixes kept as KV snapshots ---------------------------------------------------------
    def keep_prefix(self, ids: list[int], lora: str | None = None) -> bool:
        """Prefill a prompt prefix once and keep its KV state, so that a request starting with it prefills only the
        rest whichever context it gets. False when it is kept already (then this costs nothing)."""
        key = (lora, tuple(ids))
        with self._cond:
            if key in self._snapshots:
                self._snapshots.move_to_end(key)
                return False
            pending = self._keeping.get(key)
            if pending is None:
                self._keeping[key] = threading.Event()
        if pending is not None:  # being prefilled for another request (the warm-up at login): wait, do not redo it
            pending.wait()
            return False
        try:
            for _ in self.stream(ids, lora, 1, TurnStats(), keep=True):
                pass
        finally:
            with self._cond:
                self._keeping.pop(key).set()
        return True

    def _snapshot(self, ctx: _Context, ids: list[int], lora: str | None) -> None:
        lc = self.llama_cpp
        ids = list(ctx.llm.input_ids[:min(ctx.llm.n_tokens, len(ids))])  # what the KV cache holds of them
        size = lc.llama_state_seq_get_size(ctx.llm.ctx, 0)
        buf = (ctypes.c_uint8 * size)()
        n = lc.llama_state_seq_get_data(ctx.llm.ctx, buf, size, 0)
        if not n or n > size:
            return  # nothing kept: the next request prefills as before
        with self._cond:
            self._snapshots[(lora, tuple(ids))] = bytes(buf)[:n]
            while len(self._snapshots) > SNAPSHOTS:
                self._snapshots.popitem(last=False)

    def _take_up(self, ctx: _Context, ids: list[int], lora: str | None) -> int:
        """Load the kept prefix that shares most with `ids` into `ctx` if it beats what `ctx` already holds;
        the tokens of `ids` then in its KV cache."""
        have = ctx.common_prefix(ids)
        with self._cond:
            best = max(((_common(toks, ids), toks, data) for (lo, toks), data in self._snapshots.items()
                        if lo == lora), default=None, key=lambda r: r[0])
        if best is None or best[0] <= have + 16:  # a few tokens are not worth a copy of the whole state
            return have
        n, toks, data = best
        lc = self.llama_cpp
        lc.llama_memory_clear(lc.llama_get_memory(ctx.llm.ctx), True)
        arr = (ctypes.c_uint8 * len(data)).from_buffer_copy(data)
        if lc.llama_state_seq_set_data(ctx.llm.ctx, arr, len(data), 0) != len(data):
            ctx.llm.reset()  # a state this context cannot take: prefill from scratch
            return 0
        # llama-cpp-python's own prefix matching then drops the cells after the shared part and prefills the rest
        ctx.llm.input_ids[:len(toks)] = toks
        ctx.llm.n_tokens = len(toks)
        ctx.llm._requires_eval = True
        return n

    # ---- generation --------------------------------------------------------------------------------
    def _threads(self) -> int:
        """Threads for a request now: the free cores shared among the requests decoding at this moment."""
        if self.monitor is None:
            return self.n_threads
        return cpuload.threads_for(self.monitor.free_cores(), max(0, self._active - 1), cpuload.cores())

    def _apply_threads(self, ctx: _Context, current: int) -> int:
        n = self._threads()
        if n != current:
            self.llama_cpp.llama_set_n_threads(ctx.llm.ctx, n, n)
        return n

    def stream(self, ids: list[int], lora: str | None, max_new_tokens: int, stats: TurnStats,
               keep: bool = False, constraint: Constraint | None = None) -> Iterator[str]:
        """Greedy text pieces for prompt token ids; `stats` gets this request's own figures. With `keep`, the
        prompt's KV state is kept as a snapshot once generation ends (`keep_prefix`); with `constraint`, only the
        tokens it allows are written, and the reply ends when it is complete."""
        if len(ids) + max_new_tokens > self.settings.llamacpp_n_ctx:
            raise AssistantError(f"the prompt ({len(ids)} tokens) and answer ({max_new_tokens}) exceed the context "
                                 f"of {self.settings.llamacpp_n_ctx} tokens; raise ASSISTANT_LLAMACPP_N_CTX")
        stats.prompt_tokens = len(ids)
        t0 = time.perf_counter()
        ctx = self._borrow(ids, lora)
        with self._cond:
            self._active += 1
        try:
            self._set_lora(ctx, lora)
            stats.cached_tokens = self._take_up(ctx, ids, lora)
            threads = self._apply_threads(ctx, 0)
            decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
            vocab = self.llama_cpp.llama_model_get_vocab(ctx.llm.model)
            processors = None
            if constraint is not None:
                processors = self.llama_cpp.LogitsProcessorList([lambda _ids, logits: constraint.apply(logits)])
            for tok in ctx.llm.generate(ids, temp=0.0, top_k=1, top_p=1.0, min_p=0.0, repeat_penalty=1.0,
                                        logits_processor=processors):
                if tok in self._eog or self.llama_cpp.llama_vocab_is_eog(vocab, tok):
                    break
                if constraint is not None:
                    constraint.consume(tok)
                if stats.new_tokens % 8 == 0:  # another request started or ended, or another program woke up
                    threads = self._apply_threads(ctx, threads)
                stats.new_tokens += 1
                if stats.new_tokens == 1:
                    stats.prefill_s = time.perf_counter() - t0
                piece = decoder.decode(ctx.llm.detokenize([tok], special=False))
                if piece:
                    yield piece
                if stats.new_tokens >= max_new_tokens or (constraint is not None and constraint.finished):
                    break
            tail = decoder.decode(b"", final=True)
            if tail:
                yield tail
            if keep:
                self._snapshot(ctx, ids, lora)
        finally:
            stats.total_s = time.perf_counter() - t0
            with self._cond:
                self._active -= 1
            self._give_back(ctx)


class LlamaCppBackend:
    """The chain's backend over llama.cpp: same rendering, streaming and parsing as the transformers engine."""

    stops_early = True  # the chain may abandon a turn mid-stream: closing the stream frees the context

    def __init__(self, engine: LlamaCppEngine, name: str, max_new_tokens: int) -> None:
        self.engine = engine
        self.name = name
        self.max_new_tokens = max_new_tokens

    @classmethod
    def load(cls, spec: str, settings: Settings) -> LlamaCppBackend:
        model = resolve_gguf(spec, settings)
        return cls(LlamaCppEngine(model, settings), spec if spec != "offline" else f"offline ({Path(model.gguf).name})",
                   settings.max_new_tokens)

    def render(self, messages: list[BaseMessage], tools: list[dict[str, Any]], think: bool) -> str:
        return render_chat(self.engine.tokenizer, to_template_messages(messages), tools or None, think)

    def warm(self, messages: list[BaseMessage], tools: list[dict[str, Any]], adapter: str | None = None) -> bool:
        """Prefill a prompt prefix (with the adapter the requests will use) and keep its KV state, so that requests
        starting with it prefill only the rest. False when it was kept already."""
        prompt = self.render(messages, tools, False)
        end = prompt.rfind("<|im_start|>assistant")  # the generation prompt is not part of any real request's prefix
        ids = self.engine.tokenizer(prompt[:end] if end > 0 else prompt, add_special_tokens=False)["input_ids"]
        return self.engine.keep_prefix(ids, self.engine.ensure_adapter(adapter) if adapter else None)

    def turn(self, messages: list[BaseMessage], tools: list[dict[str, Any]], *, think: bool,
             adapter: str | None, on_text: Callable[[str], None], schema: dict[str, Any] | None = None) -> ModelTurn:
        prompt = self.render(messages, tools, think)
        ids = self.engine.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        lora = self.engine.ensure_adapter(adapter) if adapter else None
        stats = TurnStats()
        text = ""
        constraint = None
        if schema is not None:
            constraint = Constraint(self.engine.tokenizer, self.engine.n_vocab, schema, think)
        pieces = self.engine.stream(ids, lora, self.max_new_tokens, stats, constraint=constraint)
        try:
            for piece in pieces:
                text += piece
                on_text(piece)  # may raise to end the turn early
        finally:
            pieces.close()  # the context goes back to the pool now, not when the generator is collected
        return ModelTurn(structured_message(text) if schema is not None else parsed_message(text), stats)
