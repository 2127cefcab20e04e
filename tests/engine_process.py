"""An OpenAI-compatible engine in its own process (tests/openai_server.py over the tiny model), slowed per piece so
that a test can kill it mid-answer: `python -m tests.engine_process TINY_DIR DELAY_S` prints its URL, then serves."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from assistant.backends.runtime import ModelRuntime
from core.models import load_model
from core.settings import Settings
from tests.openai_server import serve


def main() -> None:
    tiny, delay = Path(sys.argv[1]), float(sys.argv[2])
    settings = Settings(home=tiny.parent / "engine-home")
    runtime = ModelRuntime(load_model(str(tiny), settings), settings)
    stream = runtime.stream

    def slow(*args, **kwargs):  # the real model's pieces, each after a pause
        for piece in stream(*args, **kwargs):
            time.sleep(delay)
            yield piece

    runtime.stream = slow  # type: ignore[method-assign]
    _, url = serve(runtime, str(tiny))
    print(url, flush=True)
    while True:
        time.sleep(60)


if __name__ == "__main__":
    main()
