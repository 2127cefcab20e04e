"""The chain: retrieval, prompts, the turn loop with tools, citations."""

from assistant.chain.turn import Answer, Assistant, Source, StreamRouter, build_assistant, thinking_switch

__all__ = ["Answer", "Assistant", "Source", "StreamRouter", "build_assistant", "thinking_switch"]
