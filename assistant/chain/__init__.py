"""The answer path: standalone question, retrieval, evidence, tools, generation, verification, composition."""

from assistant.chain.state import Answer, Source, Unit
from assistant.chain.turn import Assistant, build_assistant, thinking_switch

__all__ = ["Answer", "Assistant", "Source", "Unit", "build_assistant", "thinking_switch"]
