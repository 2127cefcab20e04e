"""End-to-end latency of the chain against calling the model directly with the same prompt.

    .venv/bin/python bench/chain_latency.py [--adapter claims] [--max-new-tokens 64]

Needs the demo corpus ingested (`bash scripts/quickstart.sh` does it) and the offline model. For each
question: retrieval ms, time to first token, decode tokens/s and total seconds through the chain; then
the answer prompt straight into the runtime (unconstrained). The ratio is the chain's overhead (retrieval, evidence,
tools, constrained decoding, verification).
"""

from __future__ import annotations

import statistics
import time

from common import parser, print_table

QUESTIONS = [
    "意外身故保险金怎么申请？",
    "Who must approve a claim above CNY 300,000?",
    "犹豫期有多长？",
    "How fast must the Provider report a data breach?",
    "帮我查一下保单 POL-2024-0003 的状态",
]


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--adapter", default=None, help="adapter ref (default: the chain's choice)")
    p.add_argument("--max-new-tokens", type=int, default=64)
    a = p.parse_args()

    from assistant.backends import TurnStats
    from assistant.chain import build_assistant
    from core.identity import User
    from core.settings import load_settings

    settings = load_settings(max_new_tokens=a.max_new_tokens)
    assistant = build_assistant(settings)
    runtime = assistant.backend.runtime
    user = User("bench", "claims", "claims")
    assistant.ask("warm-up", user, adapter=a.adapter)  # loads the adapter and the retriever once
    rows = []
    for q in QUESTIONS:
        t0 = time.perf_counter()
        ans = assistant.ask(q, user, adapter=a.adapter)
        chain_s = time.perf_counter() - t0
        msgs, _, _ = assistant.prompt_for(q, user)
        prompt = runtime.render(msgs, None, False)
        key = runtime.ensure_adapter(ans.adapter) if ans.adapter else None
        t1 = time.perf_counter()
        first = None
        d = TurnStats()
        for _ in runtime.stream(prompt, key, a.max_new_tokens, stats=d):
            first = first or time.perf_counter() - t1
        direct_s = time.perf_counter() - t1
        rows.append({"question": q[:28], "retrieval_ms": round(ans.retrieval_ms, 1),
                     "prompt_tokens": ans.prompt_tokens, "chain_ttft_s": round(ans.prefill_s or 0, 2),
                     "chain_tok_s": round(ans.tokens_per_s or 0, 1), "chain_total_s": round(chain_s, 2),
                     "direct_ttft_s": round(first or 0, 2), "direct_total_s": round(direct_s, 2),
                     "new_tokens": f"{ans.new_tokens}/{d.new_tokens}"})
    print_table(f"chain vs direct model call ({runtime.name}, adapter {a.adapter or 'chain default'}, "
                f"max_new_tokens {a.max_new_tokens}, one model turn)", rows, list(rows[0]))
    c = statistics.mean(r["chain_total_s"] for r in rows)
    d = statistics.mean(r["direct_total_s"] for r in rows)
    print(f"\nmean total: chain {c:.2f} s, direct {d:.2f} s, overhead x{c / d:.3f}; "
          f"mean retrieval {statistics.mean(r['retrieval_ms'] for r in rows):.0f} ms")


if __name__ == "__main__":
    main()
