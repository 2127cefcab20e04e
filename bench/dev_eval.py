"""Dev evaluation of the whole chain on the demo domain (issue 12 §2): is the answer right, cited, looked up?

    .venv/bin/python bench/dev_eval.py                          # llama.cpp, the offline model, all questions
    .venv/bin/python bench/dev_eval.py --baseline --limit 12    # + the transformers engine, same questions, same run
    .venv/bin/python bench/dev_eval.py --model /models/x.gguf --adapter claims --only fact,refuse

The knowledge base is corpus/ ingested into a fresh home, the business tools run on the demo database
(assistant/tools/demo/data.py). Each question is asked as a user whose role may use the tool it needs.
Categories and what counts as right:
- fact: the answer contains an accepted phrase AND cites the file that holds it;
- lookup: the named tool was called (successfully) AND the answer contains the looked-up value;
- calc: the answer contains the number;
- followup: a fact asked with the previous turn as history (same rule as fact);
- refuse: questions the documents do not answer: a refusal with no figure in it.
Each answer is scored twice: as the model gave it, and after the grounding guard (assistant/chain/guard.py,
applied to the same answer), so both columns come from one generation. Latency: whole answer and time to
first token, p50/p95. Timings on a shared machine are indicative: compare engines within one run.

Measured 2026-11-28 on the 2-core dev VM, no adapter, llama.cpp, raw -> with the guard (right/total):

| model | fact /20 | lookup /8 | calc /4 | follow-up /4 | refuse /8 | right | with guard |
|---|---|---|---|---|---|---|---|
| 0.5B, 0fe30c7 (no agreement check) | 0 -> 13 | 8 -> 8 | 2 -> 2 | 0 -> 1 | 7 -> 7 | 0.39 | 0.71 |
| 0.5B (`offline`, default), 9a34ad6 | 0 -> 19 | 8 -> 8 | 2 -> 2 | 0 -> 3 | 7 -> 8 | 0.39 | **0.91** |
| 1.5B (`offline-1.5b`), db88a3a; lookups eb4753c | 5 -> 18 | 8 -> 8 | 3 -> 3 | 2 -> 4 | 7 -> 8 | 0.52 | **0.93** |
| 0.5B, 3 x 300-char passages (was 4 x 400), 64f5a15 | 0 -> 20 | 8 -> 8 | 2 -> 2 | 2 -> 4 | 7 -> 8 | 0.43 | **0.955** |
| 0.5B, 2 passages x 300 (guard of 9a34ad6) | 0 -> 17 | 8 -> 8 | 2 -> 2 | 2 -> 4 | 7 -> 8 | 0.43 | 0.89 |
| 0.5B + adapter claims@v1, c0d8573 | 11 -> 17 | 7 -> 7 | 2 -> 2 | 1 -> 3 | 7 -> 8 | 0.64 | 0.84 |
| 0.5B + claims@v1, 6c3a927 | 11 -> 20 | 7 -> 7 | 2 -> 2 | 1 -> 4 | 7 -> 8 | 0.64 | 0.93 |
| 0.5B, no adapter, 6c3a927 | 0 -> 20 | 8 -> 8 | 2 -> 2 | 2 -> 4 | 7 -> 8 | 0.43 | **0.955** |
| 0.5B + claims@v1, tools return status_zh | 11 -> 20 | 8 -> 8 | 2 -> 2 | 1 -> 4 | 7 -> 8 | 0.66 | **0.955** |

The adapter answers more on its own (raw 0.64) but copies long stretches of the passages and reads table rows off
the wrong line; the guard now holds those to the sentence that answers. The one look-up it lost was the adapter's
own Chinese for the record's "lapsed" (已停保 for 已失效): the records now carry their status label (status_zh), which
the adapter copies. The model's own answers are rarely right and
cited without the adapter (raw column); the guard makes the shown answers right: a short
answer must agree with the passage text that best answers the question (for a tiered rule, the clause of the asked
amount's tier; its figures from the sentences that name what was asked), else that text is quoted with its
citation; a question asking for days (a duration, a share) is answered by a sentence stating one. Sending the
model 3 passages cut to 300 characters instead of 4 x 400 cut the per-question prefill from ~450 to ~290 tokens
(p50) at no cost in accuracy; 2 passages cost 1-2 facts. The 0.5B stays the default (the 1.5B takes about twice
as long per answer on this CPU). Latencies in the table the script prints are only comparable within one run.
"""

from __future__ import annotations

import copy
import json
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common import ROOT, print_table

STAFF = ("wang", "staff", "sales")
CLAIMS = ("li", "claims", "claims")


@dataclass
class Q:
    cat: str
    q: str
    accept: list[str] = field(default_factory=list)  # any one, case- and space-insensitive
    source: str | None = None  # the file a fact must cite
    tool: str | None = None
    user: tuple[str, str, str] = STAFF
    history: list[dict[str, str]] = field(default_factory=list)


TERMS, GUIDE, MANUAL = "安心意外伤害保险条款.pdf", "理赔服务指南.md", "claims_handling_manual.pdf"
AGREEMENT, FAQ, RATES = "claims_services_agreement.docx", "data_privacy_faq.html", "团体意外险费率说明.txt"


def _h(q: str, a: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": q}, {"role": "assistant", "content": a}]


QUESTIONS: list[Q] = [
    # facts, Chinese
    Q("fact", "出险后几天内报案？", ["十日", "10日", "10 日", "10天"], TERMS),
    Q("fact", "犹豫期是多长时间？", ["十五日", "十五天", "15日", "15 日", "15天"], TERMS),
    Q("fact", "意外医疗保险金的免赔额是多少？", ["一百元", "100元", "100 元"], TERMS),
    Q("fact", "意外医疗保险金按什么比例给付？", ["百分之九十", "90%", "90 %"], TERMS),
    Q("fact", "被保险人的投保年龄范围是多少？", ["十八周岁至六十五周岁", "18", "六十五"], TERMS),
    Q("fact", "犹豫期后退保退还多少保险费？", ["百分之八十", "80%"], TERMS),
    Q("fact", "理赔金额超过30万元由谁审批？", ["理赔负责人"], GUIDE),
    Q("fact", "客服热线是多少？", ["95500-88", "95500-8 8"], None),
    Q("fact", "拒赔案件的申诉多久内答复？", ["十五个工作日", "15个工作日", "15 个工作日"], GUIDE),
    Q("fact", "团体意外险第三类职业的年费率是多少？", ["18 元", "18元"], RATES),
    Q("fact", "投保人数200人的团体可以打几折？", ["九折", "90%"], RATES),
    Q("fact", "小额快赔的条件是什么？", ["5000", "24 小时", "24小时"], GUIDE),
    # facts, English
    Q("fact", "Who must approve a claim above CNY 300,000?", ["Head of Claims"], MANUAL),
    Q("fact", "Which claims must be referred to the Special Investigations Unit?", ["200,000", "90 days"], MANUAL),
    Q("fact", "What is the deductible for medical expense claims?", ["100"], MANUAL),
    Q("fact", "How long is the initial term of the claims services agreement?", ["three", "3 years", "3) years"],
      AGREEMENT),
    Q("fact", "What fee does Evergreen pay the provider per registered claim?", ["85"], AGREEMENT),
    Q("fact", "Within how many hours must the provider report a personal data breach?", ["24", "twenty-four"],
      AGREEMENT),
    Q("fact", "How long are paid claim files kept?", ["10 years", "ten years"], FAQ),
    Q("fact", "Within what time must data breaches be reported to the regulator?", ["72"], FAQ),
    # look-ups through a tool
    Q("lookup", "帮我查一下保单 POL-2024-0003 的状态", ["lapsed", "失效"], tool="get_policy_status"),
    Q("lookup", "保单 POL-2024-0001 现在有效吗？", ["active", "有效"], tool="get_policy_status"),
    Q("lookup", "What is the status of policy POL-2024-0006?", ["expired", "满期"], tool="get_policy_status"),
    Q("lookup", "订单 ORD-5002 付款了吗？", ["pending", "待支付", "未支付"], tool="get_order_status"),
    Q("lookup", "What is the status of order ORD-5003?", ["refunded", "退款"], tool="get_order_status"),
    Q("lookup", "查一下理赔案件 CLM-2024-0002 的进度", ["investigating", "调查"], tool="get_claim_status", user=CLAIMS),
    Q("lookup", "How much was paid on claim CLM-2024-0001?", ["2790", "2,790"], tool="get_claim_status",
      user=CLAIMS),
    Q("lookup", "客户 CUS-1001 有哪些保单？", ["POL-2024-0001"], tool="list_customer_policies", user=CLAIMS),
    # calculations
    Q("calc", "计算 (2600 - 100) * 0.9", ["2250"]),
    Q("calc", "医疗费 850 元，扣除 100 元免赔额后按 90% 赔付，能赔多少？", ["675"]),
    Q("calc", "What is 12 * 35 + 80?", ["500"]),
    Q("calc", "A group of 300 office staff insured for CNY 100,000 each at CNY 8 per 10,000: what is the annual "
              "premium before discount?", ["24000", "24,000"]),
    # follow-ups (with history)
    Q("followup", "那意外伤残呢？", ["伤残鉴定书", "鉴定"], GUIDE,
      history=_h("意外医疗理赔需要什么材料？", "需提供医疗费用原始发票、费用明细清单、病历和出院小结 [1]。")),
    Q("followup", "那30万元以上呢？", ["理赔负责人"], GUIDE,
      history=_h("5万元以内的理赔由谁审批？", "由理赔专员审批 [1]。")),
    Q("followup", "And above CNY 1,000,000?", ["Claims Committee"], MANUAL,
      history=_h("Who approves claims above CNY 300,000?", "The Head of Claims [1].")),
    Q("followup", "And how long are call recordings kept?", ["3 years", "three years"], FAQ,
      history=_h("How long are paid claim files kept?", "10 years after the claim is closed [1].")),
    # the documents do not answer
    Q("refuse", "公司今年的年终奖发放标准是什么？"),
    Q("refuse", "长青人寿的董事长是谁？"),
    Q("refuse", "员工每年有几天年假？"),
    Q("refuse", "公司股票今天的价格是多少？"),
    Q("refuse", "What is the CEO's annual salary?"),
    Q("refuse", "How many employees does Evergreen Life have?"),
    Q("refuse", "What is the company's parking policy for visitors?"),
    Q("refuse", "重疾险的等待期是多少天？"),
]


def _norm(s: str) -> str:
    return "".join(s.lower().split())


def _contains(answer: str, accept: list[str]) -> bool:
    a = _norm(answer)
    return any(_norm(x) in a for x in accept)


def score(q: Q, answer: str, cited: list[str], tools: list[tuple[str, bool]]) -> bool:
    from assistant.chain.guard import figures
    from core.prompts import is_refusal

    if q.cat in ("fact", "followup"):
        return _contains(answer, q.accept) and (q.source is None and bool(cited) or q.source in cited)
    if q.cat == "lookup":
        return any(n == q.tool and ok for n, ok in tools) and _contains(answer, q.accept)
    if q.cat == "calc":
        return _contains(answer.replace(",", ""), [a.replace(",", "") for a in q.accept])
    return is_refusal(answer) and not figures(answer)


def _pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return round(xs[min(len(xs) - 1, int(p * len(xs)))], 2) if xs else 0.0


def run_engine(engine: str, home: Path, model: str, adapter: str | None, qs: list[Q]) -> tuple[dict, list[dict]]:
    from assistant.chain import build_assistant
    from assistant.chain.guard import apply_guard
    from core.identity import User
    from core.settings import load_settings

    settings = load_settings(home=home, model=model, engine=engine, adapter=adapter, guard_uncited="off",
                             guard_figures="off")
    t0 = time.perf_counter()
    a = build_assistant(settings)
    load_s = time.perf_counter() - t0
    guarded = load_settings(home=home)  # the guard's defaults
    for who in dict.fromkeys(q.user for q in qs):  # as the chat does at login: the constant prefix is not measured
        a.warm(User(*who))
    rows: list[dict] = []
    for i, q in enumerate(qs, 1):
        ans = a.ask(q.q, User(*q.user), history=q.history)
        raw_ok = score(q, ans.answer, [s.source for s in ans.sources], [(t.name, t.ok) for t in ans.tool_calls])
        g = copy.deepcopy(ans)
        apply_guard(g, ans.question, q.history, guarded.guard_uncited, guarded.guard_figures)
        g_ok = score(q, g.answer, [s.source for s in g.sources], [(t.name, t.ok) for t in g.tool_calls])
        rows.append({"cat": q.cat, "q": q.q, "answer": ans.answer, "guarded": g.answer, "guard": g.guard,
                     "ok": raw_ok, "ok_guarded": g_ok, "cited": [s.source for s in ans.sources],
                     "tools": [t.name for t in ans.tool_calls], "latency_s": round(ans.latency_s, 2),
                     "ttft_s": ans.prefill_s, "error": ans.error})
        print(f"{engine} {i}/{len(qs)} [{q.cat}] ok={raw_ok} guarded={g_ok} {ans.latency_s:.1f}s "
              f"{ans.answer[:70]!r}", flush=True)
    summary: dict[str, Any] = {"engine": engine, "load_s": round(load_s, 1)}
    for cat in dict.fromkeys(q.cat for q in qs):
        rs = [r for r in rows if r["cat"] == cat]
        summary[cat] = f"{sum(r['ok'] for r in rs)}/{len(rs)} -> {sum(r['ok_guarded'] for r in rs)}"
    summary["right"] = round(sum(r["ok"] for r in rows) / len(rows), 3)
    summary["right_guarded"] = round(sum(r["ok_guarded"] for r in rows) / len(rows), 3)
    lat = [r["latency_s"] for r in rows if not r["error"]]
    ttft = [r["ttft_s"] for r in rows if r["ttft_s"]]
    summary |= {"p50_s": _pct(lat, 0.5), "p95_s": _pct(lat, 0.95), "ttft_p50_s": _pct(ttft, 0.5),
                "ttft_p95_s": _pct(ttft, 0.95)}
    return summary, rows


def main() -> None:
    import argparse

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--engine", default="llamacpp", choices=["llamacpp", "transformers"])
    p.add_argument("--baseline", action="store_true", help="also run the transformers engine on the same questions")
    p.add_argument("--model", default="offline")
    p.add_argument("--adapter", default="none",
                   help="NAME or NAME@vN from ASSISTANT_HOME's registry; 'none' (default): the base model alone, "
                   "even where an active adapter would be used")
    p.add_argument("--limit", type=int, default=0, help="first N questions of each category (0: all)")
    p.add_argument("--only", default="", help="comma-separated categories")
    p.add_argument("--home", help="bench home (default: a fresh temp folder; models come from ASSISTANT_HOME)")
    args = p.parse_args()

    from core.settings import load_settings
    from ingest import pipeline

    user = load_settings()
    cats = set(args.only.split(",")) if args.only else None
    qs: list[Q] = []
    for cat in dict.fromkeys(q.cat for q in QUESTIONS):
        if cats is None or cat in cats:
            qs += [q for q in QUESTIONS if q.cat == cat][: args.limit or None]
    home = Path(args.home) if args.home else Path(tempfile.mkdtemp(prefix="dev-eval-"))
    (home / "models").mkdir(parents=True, exist_ok=True)
    for entry in (user.home / "models").iterdir() if (user.home / "models").is_dir() else []:
        link = home / "models" / entry.name
        if not link.exists():
            link.symlink_to(entry)  # the prepared models are shared, not copied
    if (user.home / "adapters").is_dir() and not (home / "adapters").exists():
        (home / "adapters").symlink_to(user.home / "adapters")
    t0 = time.perf_counter()
    if not (home / "kb").exists():
        pipeline.add_paths(load_settings(home=home), [ROOT / "corpus"])
    print(f"dev evaluation: {len(qs)} questions; knowledge base ready in {time.perf_counter() - t0:.0f} s", flush=True)
    engines = [args.engine] + (["transformers"] if args.baseline and args.engine != "transformers" else [])
    table, detail = [], {}
    for engine in engines:
        summary, rows = run_engine(engine, home, args.model, args.adapter, qs)
        table.append(summary)
        detail[engine] = rows
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "dev_eval.json").write_text(json.dumps({"table": table, "answers": detail}, ensure_ascii=False, indent=1),
                                       encoding="utf-8")
    print_table(f"dev evaluation, model {args.model}, adapter {args.adapter or 'none'} (right/total -> with the guard)",
                table, list(table[0]))
    print(f"mean right: {statistics.mean(t['right'] for t in table):.3f}; answers in bench/results/dev_eval.json")


if __name__ == "__main__":
    main()
