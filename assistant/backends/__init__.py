"""Chat backends behind one interface: the local runtime (transformers) and OpenAI-compatible servers."""
