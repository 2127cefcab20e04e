"""Runs questions through the chain of another commit, to compare with the current one in the same run
(`bench/answer_eval.py --baseline REF` starts it inside a git worktree of REF, with that tree first on the path).

Reads a JSON job on stdin: {"home", "docs", "model", "plugins", "rows"}; writes one JSON record per scored question
on stdout (the fields bench/answer_scoring.py reads). Only the chain's public entry points are used
(`build_assistant`, `Assistant.ask` with its `on_event` stream), which every release
has had.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

_QUOTE_PREFACES = ("模型的回答未能在资料中得到印证", "The model's answer could not be verified")
_REFUSALS = ("抱歉，现有资料中没有找到这个问题的答案。",
             "Sorry, the documents available to me do not answer this question.")


def _outcome(text: str, tool_calls: list[Any]) -> str:
    if text.startswith(_QUOTE_PREFACES):
        return "evidence"
    if text.strip() in _REFUSALS:
        return "refusal"
    if text.startswith(("查询结果", "Result of")) and tool_calls:
        return "tool_result"
    return "answer"


def _first_token(first: list[float], t0: float) -> Any:
    def on_event(kind: str, _payload: Any) -> None:
        if kind == "token" and not first:
            first.append(time.perf_counter() - t0)
    return on_event


def main() -> None:
    job = json.loads(sys.stdin.read())
    from assistant.chain import build_assistant
    from core.identity import User
    from core.settings import Settings
    from ingest import pipeline

    settings = Settings(home=Path(job["home"]), model=job["model"], adapter="none")
    pipeline.add_paths(settings, [Path(job["docs"])])
    tools = None
    if job["plugins"] is not None:
        from assistant.tools.plugins import load_tools

        tools = load_tools(settings.model_copy(update={"tools": job["plugins"]}))
        from assistant.tools.demo.business_db import ensure_business_db
        from assistant.tools.demo.tools import demo_tools  # the calculator of that release

        tools.add(*[t for t in demo_tools(ensure_business_db(settings.business_db)) if t.name == "calculator"])
    a = build_assistant(settings, tools=tools)
    for row in job["rows"]:
        user = User(row["user"]["name"], row["user"]["role"], row["user"]["department"])
        history: list[dict[str, str]] = []
        for earlier in row.get("history") or []:
            prev = a.ask(earlier, user, history)
            history += [{"role": "user", "content": earlier}, {"role": "assistant", "content": prev.answer}]
        first: list[float] = []
        ans = a.ask(row["question"], user, history, on_event=_first_token(first, time.perf_counter()))
        calls = [{"name": t.name, "arguments": t.arguments, "ok": t.ok, "result": t.result, "error": t.error}
                 for t in ans.tool_calls]
        print(json.dumps({**{k: row.get(k) for k in ("id", "split", "kind", "question", "accept", "source", "tool",
                                                       "history")},
                          "answer": ans.answer, "outcome": _outcome(ans.answer, ans.tool_calls),
                          "model_answer": "", "verified": None,
                          "sources": [{"source": s.source, "page": s.page, "clause": s.clause, "text": s.text}
                                      for s in ans.sources],
                          "tool_calls": calls, "latency_s": ans.latency_s,
                          "first_token_s": first[0] if first else None, "error": ans.error},
                         ensure_ascii=False, default=str), flush=True)


if __name__ == "__main__":
    main()
