"""Constrained decoding for the local engines: a JSON schema enforced token by token (llguidance, the engine
vLLM and llama.cpp use for JSON schemas), the same for llama.cpp and transformers, so both engines can only write
the structured replies of the answer path (core.prompts).

With thinking on, the reasoning before `</think>` is free; the constraint starts after it.
"""

from __future__ import annotations

import json
import threading
from typing import Any

import numpy as np

from core.errors import AssistantError

_TOKENIZERS: dict[tuple[int, int], Any] = {}
_LOCK = threading.Lock()


def _ll_tokenizer(hf_tokenizer: Any, n_vocab: int) -> Any:
    """llguidance's view of an HF tokenizer (built once per tokenizer: ~1 s for a 150k vocabulary)."""
    import llguidance.hf

    key = (id(hf_tokenizer), n_vocab)
    with _LOCK:
        tok = _TOKENIZERS.get(key)
        if tok is None:
            eos = [t for t in {hf_tokenizer.eos_token_id, hf_tokenizer.convert_tokens_to_ids("<|im_end|>")}
                   if isinstance(t, int) and 0 <= t < n_vocab]
            tok = llguidance.hf.from_tokenizer(hf_tokenizer, n_vocab=n_vocab, eos_token=eos or None)
            _TOKENIZERS[key] = tok
    return tok


class Constraint:
    """One generation's constraint: `apply(logits)` masks what the schema does not allow next, `consume(token)`
    advances it; `finished` once the reply is complete (only the end of turn may follow)."""

    def __init__(self, hf_tokenizer: Any, n_vocab: int, schema: dict[str, Any], think: bool = False) -> None:
        import llguidance

        self.tokenizer = _ll_tokenizer(hf_tokenizer, n_vocab)
        grammar = llguidance.LLMatcher.grammar_from_json_schema(
            json.dumps(schema), defaults={"whitespace_flexible": False})
        self.matcher = llguidance.LLMatcher(self.tokenizer, grammar)
        if self.matcher.is_error():
            raise AssistantError(f"the reply schema cannot be enforced: {self.matcher.get_error()}")
        self.n_vocab = n_vocab
        think_end = hf_tokenizer.convert_tokens_to_ids("</think>") if think else None
        self.think_end = think_end if isinstance(think_end, int) and think_end != hf_tokenizer.unk_token_id else None
        self.active = self.think_end is None
        self._bitmask = None

    def apply(self, logits: np.ndarray) -> np.ndarray:
        """`logits` (n_vocab floats, in place) with every token the schema does not allow next at -inf."""
        if not self.active:
            return logits
        import llguidance.numpy as lln

        if self._bitmask is None:
            self._bitmask = lln.allocate_token_bitmask(1, self.tokenizer.vocab_size)
        lln.fill_next_token_bitmask(self.matcher, self._bitmask, 0)
        n = min(len(logits), self.tokenizer.vocab_size)
        allowed = np.unpackbits(self._bitmask[0].view(np.uint8), bitorder="little")[:n].astype(bool)
        logits[:n][~allowed] = -np.inf
        logits[n:] = -np.inf
        return logits

    def consume(self, token: int) -> None:
        if not self.active:
            self.active = token == self.think_end
            return
        if not self.matcher.consume_token(token):
            raise AssistantError(f"the engine wrote a token the reply schema does not allow "
                                 f"({self.matcher.get_error()})")

    @property
    def finished(self) -> bool:
        return self.active and (self.matcher.is_stopped() or self._only_end())

    def _only_end(self) -> bool:
        return self.matcher.is_accepting() and self.matcher.is_stopped()
