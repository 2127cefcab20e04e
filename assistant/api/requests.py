"""What an API request may hold, checked before anything runs: OpenAI's chat request shape, and the checks that
turn bad input into a clear 4xx naming the field (never a traceback, never a model call)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from core.control_tokens import control_token_in


class BadRequest(Exception):  # noqa: N818 (the HTTP status it becomes)
    def __init__(self, message: str, param: str | None = None, status: int = 400,
                 code: str = "invalid_request") -> None:
        super().__init__(message)
        self.message, self.param, self.status, self.code = message, param, status, code


class Message(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = None


class ChatRequest(BaseModel):
    """OpenAI's chat completion request; fields the chain does not use (temperature, n ...) are accepted and
    ignored, since answers are decoded greedily from the documents."""

    model_config = ConfigDict(extra="allow")
    model: str
    messages: list[Message]
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    user: str | None = None
    think: bool | None = Field(default=None, description="Qwen3 thinking mode for this request (extension).")
    cache: bool | None = Field(default=None, description="false: never answer from the cache (extension).")


class RetrieveRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    query: str = Field(min_length=1)
    model: str | None = Field(default=None, description="The knowledge base (a model name of /v1/models).")
    k: int = Field(default=5, ge=1, le=50)


class FeedbackRequest(BaseModel):
    """Feedback on an answer this key's user received (extension): the `audit_id` of the response, a rating,
    optionally a comment and the answer it should have been (trained on only after an admin approves it)."""

    model_config = ConfigDict(extra="forbid")
    audit_id: int = Field(ge=1)
    rating: Literal[1, -1]
    comment: str | None = Field(default=None, max_length=2_000)
    correction: str | None = Field(default=None, max_length=8_000)


def text_of(m: Message, i: int) -> str:
    """A message's text: a string, or the text parts of a content list (other parts are refused)."""
    if m.content is None:
        return ""
    if isinstance(m.content, str):
        return m.content
    parts = []
    for j, part in enumerate(m.content):
        if part.get("type") != "text" or not isinstance(part.get("text"), str):
            raise BadRequest(f"messages[{i}].content[{j}] is of type '{part.get('type')}'; only text is answered",
                             f"messages[{i}].content[{j}]")
        parts.append(part["text"])
    return "\n".join(parts)


def conversation(req: ChatRequest, max_chars: int, max_messages: int,
                 history_turns: int) -> tuple[str, list[dict[str, str]]]:
    """The question (the last user message) and the chain's history (the user/assistant messages before it, the
    last `history_turns`). System and tool messages are not passed on: the chain's rules and the documents decide
    the answer. Refused: too many messages, an oversized one, control-token strings, no user message last."""
    if not req.messages:
        raise BadRequest("messages is empty: send at least one user message", "messages")
    if len(req.messages) > max_messages:
        raise BadRequest(f"messages holds {len(req.messages)} messages; at most {max_messages} are accepted (send "
                         "the recent turns only)", "messages", 413, "too_many_messages")
    texts = []
    for i, m in enumerate(req.messages):
        text = text_of(m, i)
        if len(text) > max_chars:
            raise BadRequest(f"messages[{i}].content has {len(text)} characters; at most {max_chars} are accepted",
                             f"messages[{i}].content", 413, "message_too_long")
        if token := control_token_in(text):
            raise BadRequest(f"messages[{i}].content holds the chat-template control token '{token}', which no "
                             "message may contain", f"messages[{i}].content", 400, "control_token")
        texts.append(text)
    if req.messages[-1].role != "user" or not texts[-1].strip():
        raise BadRequest("the last message must be the user's question (role 'user', non-empty content)",
                         f"messages[{len(texts) - 1}]")
    history = [{"role": m.role, "content": t} for m, t in zip(req.messages[:-1], texts[:-1], strict=True)
               if m.role in ("user", "assistant") and t.strip()]
    return texts[-1].strip(), history[-history_turns:] if history_turns else []
