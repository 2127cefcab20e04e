"""Stage 5, generation: the model answers from the numbered units in the structured form the engine enforces
(core.prompts.answer_schema): the answer text and the ids of the units it rests on, or the refusal.

The answer text streams to the user as the model writes it (the JSON around it never shows); citations come from
the ids, never from the text. `structured` is the one call of the answer path into a backend: the standalone and
tools stages use it too, with their own schemas.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage

from assistant.backends import ChatBackend, EngineLost, ModelTurn
from assistant.chain.state import Answer, Emit
from core.control_tokens import neutralise
from core.prompts import answer_fields, answer_messages, answer_reply, answer_schema, parse_reply

_KINDS = {"system": SystemMessage, "user": HumanMessage, "assistant": AIMessage}


def to_langchain(messages: Sequence[dict[str, Any]]) -> list[BaseMessage]:
    """core.prompts' messages as the backend interface takes them (every text from outside the model neutralised:
    it cannot forge control tokens)."""
    return [_KINDS[m["role"]](neutralise(m["content"]) if m["role"] != "system" else m["content"]) for m in messages]


class ThinkingSplit:
    """Streamed text before `</think>` goes to `on_thinking`, what follows to `on_reply` (tags never shown)."""

    def __init__(self, on_thinking: Callable[[str], None], on_reply: Callable[[str], None], thinking: bool) -> None:
        self.on_thinking, self.on_reply = on_thinking, on_reply
        self.in_thought = thinking
        self.buf = ""

    def feed(self, piece: str) -> None:
        if not self.in_thought:
            self.on_reply(piece)
            return
        self.buf += piece
        end = self.buf.find("</think>")
        if end < 0:
            keep = len(self.buf) - len("</think>")  # a tag may be split across pieces
            if keep > 0:
                self.on_thinking(self.buf[:keep].replace("<think>", ""))
                self.buf = self.buf[keep:]
            return
        self.on_thinking(self.buf[:end].replace("<think>", ""))
        self.in_thought = False
        rest, self.buf = self.buf[end + len("</think>"):], ""
        if rest:
            self.on_reply(rest)


class Looping(Exception):
    """The answer fell into repeating itself ("1000000…"): a small model's greedy decoding can run to the token limit
    there (40 s of zeros on 2 cores)."""


def loop_start(text: str) -> int | None:
    """Where a text's trailing repetition begins, if it ends in one: 32+ characters made of 10+ copies of one unit
    of 1-8 characters."""
    best: int | None = None
    for size in range(1, 9):
        unit = text[-size:]
        if len(unit) < size:
            break
        at = len(text) - size
        while at >= size and text[at - size:at] == unit:
            at -= size
        if len(text) - at >= 32 and (len(text) - at) // size >= 10:
            best = at if best is None else min(best, at)
    return best


class FieldStream:
    """Feeds a streamed JSON reply and passes on the decoded characters of one string field (`"answer"`) as they
    arrive: the user reads the answer while the model writes it, never the JSON around it."""

    def __init__(self, key: str, on_text: Callable[[str], None], stop_looping: bool = False) -> None:
        self.marker = f'"{key}":"'
        self.on_text = on_text
        self.stop_looping = stop_looping
        self.buf = ""
        self.pos: int | None = None  # where the field's characters start in buf, once seen
        self.done = False
        self.shown = ""

    def feed(self, piece: str) -> None:
        if self.done:
            return
        self.buf += piece
        if self.pos is None:
            at = self.buf.replace('": "', '":"').find(self.marker)
            if at < 0:
                return
            self.buf = self.buf.replace('": "', '":"')
            self.pos = at + len(self.marker)
        text, i = "", self.pos
        while i < len(self.buf):
            ch = self.buf[i]
            if ch == '"':
                self.done = True
                break
            if ch == "\\":
                if i + 1 >= len(self.buf):
                    break
                if self.buf[i + 1] == "u":
                    if i + 6 > len(self.buf):
                        break
                    try:
                        text += json.loads(f'"{self.buf[i:i + 6]}"')
                    except ValueError:
                        pass
                    i += 6
                    continue
                text += json.loads(f'"{self.buf[i:i + 2]}"') if self.buf[i + 1] in '"\\/bfnrt' else ""
                i += 2
                continue
            text += ch
            i += 1
        self.pos = i
        if text:
            self.shown += text
            self.on_text(text)
            if self.stop_looping and loop_start(self.shown) is not None:
                raise Looping


def structured(backend: ChatBackend, messages: Sequence[dict[str, Any]], schema: dict[str, Any], *, think: bool,
               adapter: str | None, on_text: Callable[[str], None] = lambda _: None) -> ModelTurn:
    """One model turn constrained to `schema` (where the backend can enforce it; otherwise it is parsed and
    checked by the caller)."""
    return backend.turn(to_langchain(messages), [], think=think, adapter=adapter, on_text=on_text, schema=schema)


def generate(ans: Answer, backend: ChatBackend, tools: Sequence[dict[str, Any]], think: bool, emit: Emit,
             max_units: int | None = None) -> None:
    """Ask the model for the structured answer over `ans.units` (and the tool calls already made); fill
    `ans.reply`, `ans.cited`, `ans.model_answer` and the turn's figures."""
    question = ans.standalone or ans.question
    doc_units = [u for u in ans.units if u.call is None]
    calls = [({"name": t.name, "arguments": t.arguments}, [u.prompt() for u in ans.units if u.call == i])
             for i, t in enumerate(ans.tool_calls) if any(u.call == i for u in ans.units)]
    messages = answer_messages([u.prompt() for u in doc_units], question, tools, calls)
    shown = [u.prompt() for u in ans.units]
    def streamed(text: str) -> None:
        if ans.first_token_s is None:
            ans.first_token_s = time.perf_counter() - ans.started
        emit("token", text)

    def fresh() -> tuple[FieldStream, ThinkingSplit]:
        # only a backend that frees its engine when its stream is abandoned may be cut short (llama.cpp, servers)
        stream = FieldStream("answer", streamed, stop_looping=getattr(backend, "stops_early", False))
        return stream, ThinkingSplit(lambda text: emit("thinking", text) if text else None, stream.feed, think)

    stream, split = fresh()
    try:
        try:
            turn = structured(backend, messages, answer_schema(shown), think=think, adapter=ans.adapter,
                              on_text=split.feed)
        except EngineLost as lost:
            # consumers drop what streamed (one that cannot raises AssistantError: the turn ends as an error);
            # the request starts afresh on another engine, once per engine the backend still has
            while True:
                emit("status", "retracted")
                stream, split = fresh()
                try:
                    turn = lost.resume(split.feed)
                    break
                except EngineLost as again:
                    lost = again
    except Looping:
        cut = stream.shown[:loop_start(stream.shown) or 0]
        ans.reply, ans.model_answer, ans.reply_problem = stream.buf, cut, "the answer fell into repeating itself"
        ans.malformed.append(f"answer: {ans.reply_problem}")
        cited = parse_reply(stream.buf.split(',"answer"')[0] + "}")
        ans.cited = answer_fields(cited.data | {"answer": ""}, shown)[0] if cited.error is None else []
        ans.transcript = [*messages, {"role": "assistant", "content": stream.buf}]
        return
    ans.steps += 1
    stats = turn.stats
    ans.prefill_s, ans.tokens_per_s = round(stats.prefill_s, 3), round(stats.tokens_per_s, 2)
    ans.prompt_tokens, ans.new_tokens = stats.prompt_tokens, stats.new_tokens
    ans.thinking = str(turn.message.additional_kwargs.get("reasoning_content") or "")
    raw = str(turn.message.additional_kwargs.get("raw", turn.message.content))
    reply = parse_reply(raw)
    ans.reply = raw
    if reply.error is None:
        cited, text, problem = answer_fields(reply.data, shown)
    else:
        cited, text, problem = [], "", reply.error
    if problem:
        ans.reply_problem = problem
        ans.malformed.append(f"answer: {problem}")
    ans.cited, ans.model_answer = cited, text
    ans.transcript = [*messages, {"role": "assistant",
                                  "content": answer_reply(shown, cited, text) if not problem else raw}]

