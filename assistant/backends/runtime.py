"""The loaded base model with its LoRA adapters: loaded once, switched per request, streamed token by token.

Several adapters (per department) live in one peft model; a request names one (or none: the base). A lock
serialises generation, since one model instance decodes one sequence at a time here.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import nullcontext
from typing import Any

from assistant.backends.base import TurnStats
from assistant.backends.constrained import Constraint
from core.errors import AssistantError
from core.models import LoadedModel, load_model, render_chat
from core.settings import Settings


class ModelRuntime:
    def __init__(self, lm: LoadedModel, settings: Settings) -> None:
        self.lm = lm
        self.settings = settings
        self.adapters: dict[str, str] = {}  # peft adapter key -> registry ref
        self.full_models: dict[str, Any] = {}  # key -> a fully fine-tuned version's model, used for its requests
        self._lock = threading.Lock()

    @classmethod
    def load(cls, spec: str, settings: Settings) -> ModelRuntime:
        return cls(load_model(spec, settings), settings)

    @property
    def name(self) -> str:
        return self.lm.spec

    def ensure_adapter(self, ref: str) -> str:
        """Load a registry adapter (once) and return its key; refused if trained on another base."""
        from core import registry

        av = registry.get(self.settings, ref)
        key = av.ref.replace("@", "-")
        if key not in self.adapters:
            with self._lock:
                if registry.is_full(av):
                    self.full_models[key] = registry.load_full(self.lm, av, self.settings).model
                else:
                    self.lm.model = registry.apply_adapter(self.lm, av, adapter_name=key)
                    self.lm.model.eval()
                self.adapters[key] = av.ref
        return key

    def render(self, messages: list[dict[str, Any]], tools: list[dict] | None, enable_thinking: bool) -> str:
        return render_chat(self.lm.tokenizer, messages, tools, enable_thinking)

    def _adapter_context(self, key: str | None) -> Any:
        model = self.lm.model
        if key in self.full_models:
            return nullcontext()
        if not hasattr(model, "peft_config"):
            if key:
                raise AssistantError(f"adapter {key} is not loaded")
            return nullcontext()
        if key is None:
            return model.disable_adapter()
        model.set_adapter(key)
        return nullcontext()

    def constraint(self, schema: dict[str, Any], think: bool) -> Constraint:
        """A reply constrained to `schema` for this model's tokenizer and vocabulary."""
        return Constraint(self.lm.tokenizer, int(self.lm.model.config.get_text_config().vocab_size), schema, think)

    def stream(self, prompt: str, adapter_key: str | None = None, max_new_tokens: int = 512,
               temperature: float = 0.0, stats: TurnStats | None = None,
               constraint: Constraint | None = None) -> Iterator[str]:
        """Decoded text pieces as they are generated (special tokens kept out); `stats`, if given, is filled
        with this call's own figures; with `constraint`, only the tokens it allows are written."""
        import torch
        from transformers import LogitsProcessorList, TextIteratorStreamer

        tok = self.lm.tokenizer
        with self._lock, self._adapter_context(adapter_key):
            model = self.full_models.get(adapter_key or "", self.lm.model)
            ids = tok(prompt, return_tensors="pt", add_special_tokens=False).to(self.lm.device)
            streamer = TextIteratorStreamer(tok, skip_prompt=True, skip_special_tokens=True)
            kwargs: dict[str, Any] = dict(**ids, max_new_tokens=max_new_tokens, streamer=streamer,
                                          pad_token_id=tok.pad_token_id or tok.eos_token_id)
            if constraint is not None:
                kwargs["logits_processor"] = LogitsProcessorList([_Constrained(constraint, ids["input_ids"].shape[1])])
            if temperature > 0:
                kwargs.update(do_sample=True, temperature=temperature, top_p=0.9)
            else:
                kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
            stats = stats if stats is not None else TurnStats()
            stats.prompt_tokens = int(ids["input_ids"].shape[1])
            result: dict[str, Any] = {}

            def run() -> None:
                try:
                    with torch.no_grad():
                        result["out"] = model.generate(**kwargs)
                except Exception as exc:  # surfaced in the caller's thread below
                    result["error"] = exc
                    streamer.end()

            t0 = time.perf_counter()
            worker = threading.Thread(target=run, daemon=True)
            worker.start()
            for piece in streamer:
                if piece:
                    if not stats.prefill_s:
                        stats.prefill_s = time.perf_counter() - t0
                    yield piece
            worker.join()
            if "error" in result:
                raise AssistantError(f"generation failed: {result['error']}")
            stats.total_s = time.perf_counter() - t0
            stats.new_tokens = int(result["out"].shape[1]) - stats.prompt_tokens


class _Constrained:
    """A transformers logits processor over a `Constraint`: it consumes the tokens generated since its last call,
    then masks what may not come next."""

    def __init__(self, constraint: Constraint, prompt_len: int) -> None:
        self.constraint = constraint
        self.prompt_len = prompt_len
        self.seen = 0

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        for tok in input_ids[0, self.prompt_len + self.seen:].tolist():
            self.constraint.consume(int(tok))
            self.seen += 1
        row = scores[0].detach().float().cpu().numpy().copy()
        scores[0] = torch.from_numpy(self.constraint.apply(row)).to(scores.dtype)
        return scores
