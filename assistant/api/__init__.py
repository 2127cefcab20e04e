"""`assistant serve`: the chain behind an OpenAI-compatible HTTP API with keys, limits, backpressure and metrics."""
