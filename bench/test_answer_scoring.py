"""Tests of bench/answer_scoring.py: the normaliser, phrase matching and every scoring rule, on hand-written records.

    python -m pytest bench/test_answer_scoring.py -q
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import answer_scoring as sc  # noqa: E402


def record(**kw):
    base = {"id": "x-001", "domain": "bank", "split": "dev", "kind": "fact", "question": "q?", "history": [],
            "accept": [], "source": None, "tool": None, "answer": "", "outcome": "answer", "model_answer": "",
            "verified": True, "sources": [], "tool_calls": [], "latency_s": 1.0, "first_token_s": 0.2, "error": None}
    base.update(kw)
    return base


def src(name, text="", clause=None, page=None):
    return {"source": name, "page": page, "clause": clause, "text": text}


def call(name, ok=True, result=None, arguments=None, error=None):
    return {"name": name, "arguments": arguments or {}, "ok": ok, "result": result, "error": error}


# ---------------------------------------------------------------------------------------------- normaliser

@pytest.mark.parametrize("text, expected", [
    ("ＣＮＹ　２，２５０", "cny 2250"),                      # full-width → half-width, thousands separator
    ("CNY 2,250", "cny 2250"),
    ("1,000,000", "1000000"),
    ("二十四小时内", "24小时内"),
    ("一百八十日", "180日"),
    ("十五个工作日", "15个工作日"),
    ("三十万元以上", "300000元以上"),
    ("5 万元以内", "50000元以内"),
    ("1.5万", "15000"),
    ("百分之九十", "90%"),
    ("百分之零点五", "0.5%"),
    ("一百元免赔额", "100元免赔额"),
    ("九五折", "95折"),
    ("二〇二五年三月一日", "2025-03-01"),
    ("万一联系不上", "万1联系不上"),                          # 万一 ("in case") is not 10001
    ("千万不要", "千万不要"),
    ("一点五倍", "1.5倍"),
    ("三四天", "3-4天"),
    ("thirty (30) days", "30 days"),
    ("three (3) years", "3 years"),
    ("one hundred and eighty (180) days", "180 days"),
    ("twenty-four hours", "24 hours"),
    ("£1.2 million", "£1200000"),
    ("£25k", "£25000"),
    ("0.05 percent per day", "0.05% per day"),
    ("0.20 percentage points", "0.20 pp"),
    ("5个百分点", "5 pp"),
    ("1 March 2025", "2025-03-01"),
    ("March 1, 2025", "2025-03-01"),
    ("2025年3月1日", "2025-03-01"),
    ("14点15分", "14:15"),
    ("下午2:15", "14:15"),
    ("下午两点十五分", "14:15分"),
    ("2:15 pm", "14:15"),
    ("48 小时", "48小时"),
    ("800–1600 ml", "800-1600 ml"),
    ("  Head   of  Retail Credit ", "head of retail credit"),
])
def test_normalise(text, expected):
    assert sc.normalise(text) == expected


def test_quantities_units():
    qs = sc.quantities(sc.normalise("赔付 2,250 元，30 business days, 3 个月, 90%, 14:15, £499, 2025-03-01"))
    assert [(q.value, q.unit) for q in qs] == [
        (2250, "money"), (30, "workday"), (3, "month"), (90, "%"), (855, "clock"), (499, "money"), (20250301, "date")]


# ---------------------------------------------------------------------------------------------- phrase matching

@pytest.mark.parametrize("phrase, answer", [
    ("30 days", "payment within thirty (30) days of receipt"),
    ("30 days", "within 30 calendar days"),
    ("3 years", "an initial term of three (3) years"),
    ("CNY 2,250", "应赔付 2250 元"),
    ("2250", "赔付 2,250 元。"),
    ("2250 元", "The insurer pays CNY 2,250."),
    ("90%", "按百分之九十的比例给付"),
    ("90%", "at a rate of 90 percent"),
    ("24 小时", "within 24 hours"),
    ("二级", "主治医师可主刀二级及以下手术"),
    ("14:15", "最迟下午2点15分通知临床"),
    ("0.20 percentage points", "a discount of 0.2 percentage points"),
    ("0.20%", "0.2% off the rate"),
    ("270,000", "The cap is £270k."),
    ("1 周", "死亡后一周内完成"),
    ("八五折", "1000 人以上享受 85 折"),
    ("Head of Retail Credit", "It needs the HEAD OF RETAIL CREDIT."),
    ("not found", "Not found: LN-251999"),
    ("mainland China", "only within mainland China."),
])
def test_phrase_found(phrase, answer):
    assert sc.phrase_found(phrase, answer)


@pytest.mark.parametrize("phrase, answer", [
    ("30 days", "within 130 days"),
    ("30 days", "within 30 business days"),          # business days are not days
    ("25", "a fee of £250"),
    ("2250", "a rate of 2250%"),                     # a bare number is not a percentage
    ("90%", "a rate of 0.9"),                        # 0.9 is ambiguous: not taken as 90%
    ("90%", "up to 190%"),
    ("Gold", "a golden opportunity"),
    ("二级", "十二级"),
    ("14:15", "14:05"),
    ("6 months", "6 weeks"),
    ("", "anything"),
])
def test_phrase_not_found(phrase, answer):
    assert not sc.phrase_found(phrase, answer)


# ---------------------------------------------------------------------------------------------- fact / followup / calc

FACT = dict(kind="fact", accept=["90%"], source="retail_lending_policy.md", question="LTV on a £450,000 mortgage?",
            answer="The maximum LTV for a £450,000 loan is 90% [1].",
            sources=[src("retail_lending_policy.md", "| Up to £500,000 | 90% |", "4.2 Loan-to-value bands")])


def test_fact_right():
    v = sc.judge(record(**FACT))
    assert v["right"] and v["own"] and not v["evidence_only"] and v["why"] == []


def test_fact_source_may_be_a_path():
    rec = record(**{**FACT, "sources": [src("/data/kb/uploads/ab12/Retail_Lending_Policy.MD", "90%")]})
    assert sc.judge(rec)["right"]


def test_fact_wrong_source():
    rec = record(**{**FACT, "sources": [src("branch_lending_faq.html", "90%")]})
    v = sc.judge(rec)
    assert not v["right"] and "does not cite retail_lending_policy.md" in v["why"][0]


def test_fact_no_citation():
    assert not sc.judge(record(**{**FACT, "sources": []}))["right"]


def test_fact_wrong_figure():
    v = sc.judge(record(**{**FACT, "answer": "Up to 95% for first-time buyers."}))
    assert not v["right"] and "no accepted phrase in the answer" in v["why"]


def test_fact_refusal_is_never_right():
    v = sc.judge(record(**{**FACT, "outcome": "refusal", "answer": "The documents do not say (90%?)."}))
    assert not v["right"] and v["wrong_refusal"]


def test_fact_error_is_never_right():
    assert not sc.judge(record(**{**FACT, "outcome": "error", "error": "timeout"}))["right"]
    assert not sc.judge(record(**{**FACT, "error": "backend crashed"}))["right"]


def test_fact_without_source_needs_only_the_phrase():
    assert sc.judge(record(**{**FACT, "source": None, "sources": []}))["right"]


def test_evidence_only_is_right_but_not_own():
    v = sc.judge(record(**{**FACT, "outcome": "evidence", "verified": False,
                           "answer": "The documents say: | Up to £500,000 | 90% |"}))
    assert v["right"] and v["evidence_only"] and not v["own"]


def test_followup_and_calc_use_the_same_rule():
    calc = record(kind="calc", accept=["2250"], source="terms.pdf", outcome="answer",
                  question="A 2600 yuan bill: how much is paid?",
                  answer="(2600 - 100) × 90% = 2,250 元",
                  sources=[src("terms.pdf", "扣除一百元免赔额后按百分之九十给付")])
    assert sc.judge(calc)["right"]
    assert not sc.judge({**calc, "answer": "2,340 元"})["right"]
    follow = record(kind="followup", history=["LTV on £600,000?"], accept=["75%"], source="p.md",
                    answer="75%.", sources=[src("p.md", "75%")])
    assert sc.judge(follow)["right"]
    assert not sc.judge({**follow, "answer": "85%."})["right"]


# ---------------------------------------------------------------------------------------------- lookup

LOOKUP = dict(kind="lookup", tool="get_loan_application", accept=["Offer issued"], outcome="tool_result",
              question="Status of LN-250214?", answer="LN-250214: Offer issued (offer valid until 11 Sep 2025)",
              tool_calls=[call("get_loan_application", result={"application_id": "LN-250214",
                                                              "status_label": "Offer issued",
                                                              "note": "Offer valid until 11 Sep 2025"})])


def test_lookup_right():
    assert sc.judge(record(**LOOKUP))["right"]


def test_lookup_failed_call():
    rec = record(**{**LOOKUP, "tool_calls": [call("get_loan_application", ok=False, error="permission denied")]})
    v = sc.judge(rec)
    assert not v["right"] and "no successful call" in v["why"][0]


def test_lookup_tool_not_called():
    assert not sc.judge(record(**{**LOOKUP, "tool_calls": []}))["right"]


def test_lookup_other_tool():
    assert not sc.judge(record(**{**LOOKUP, "tool_calls": [call("search_documents", result=[])]}))["right"]


def test_lookup_value_missing_from_answer():
    assert not sc.judge(record(**{**LOOKUP, "answer": "The application is with the underwriter."}))["right"]


def test_lookup_not_found():
    rec = record(kind="lookup", tool="get_lab_report", accept=["未找到", "not found"], outcome="tool_result",
                 answer="未找到检验报告 LAB-20261103-099", tool_calls=[call("get_lab_report", result={
                     "error": "未找到检验报告 LAB-20261103-099（not found）"})])
    assert sc.judge(rec)["right"]


# ---------------------------------------------------------------------------------------------- refuse

def test_refuse_right():
    v = sc.judge(record(kind="refuse", outcome="refusal", answer="The documents do not say."))
    assert v["right"] and not v["wrong_refusal"]


def test_refuse_answered_is_wrong():
    v = sc.judge(record(kind="refuse", outcome="answer", answer="The standard variable rate is 7.49%."))
    assert not v["right"] and "instead of refusing" in v["why"][0]
    assert not sc.judge(record(kind="refuse", outcome="evidence", answer="Rates are set monthly."))["right"]


def test_refusal_with_an_invented_figure_is_wrong():
    v = sc.judge(record(kind="refuse", outcome="refusal", question="What is the SVR?",
                        answer="The documents do not say; it is probably around 7.49%."))
    assert not v["right"] and "7.49%" in v["why"][0]


def test_refusal_may_repeat_the_question_figures():
    rec = record(kind="refuse", outcome="refusal", question="What LTV for a £450,000 shared ownership loan?",
                 answer="The documents do not cover shared ownership loans of £450,000.")
    assert sc.judge(rec)["right"]


# ---------------------------------------------------------------------------------------------- invented figures

def test_invented_figures_found():
    rec = record(**{**FACT, "answer": "90% LTV, and a fee of £1,250 applies."})
    assert sc.invented_figures(rec) == ["£1250"]
    assert sc.judge(rec)["invented"] == ["£1250"]


def test_figures_from_sources_tools_question_history_accept_are_not_invented():
    rec = record(question="What about LN-250214?", history=["And the 45% limit?"], accept=["185,000"],
                 sources=[src("a.md", "within thirty (30) days", "4.2 Bands")],
                 tool_calls=[call("t", result={"amount": 620000})],
                 answer="Section 4.2: 30 days; 45%; £620,000; LN-250214; 185000")
    assert sc.invented_figures(rec) == []


def test_discount_forms():
    rec = record(kind="calc", question="120 名外勤人员，每人保额 10 万元，保费多少？",
                 sources=[src("费率.txt", "第二类（外勤人员）每万元保额 12 元。50 至 199 人享受九五折")],
                 answer="12 元 × 10 = 120 元/人；120 × 120 = 14400 元；14400 × 0.95 = 13680 元")
    assert sc.invented_figures(rec) == []  # a chain of working steps
    assert sc.invented_figures({**rec, "answer": "保费为 13680 元"}) == ["13680元"]  # no working, not accepted
    assert sc.invented_figures({**rec, "answer": "保费为 13680 元", "accept": ["13680"]}) == []
    assert sc.phrase_found("八五折", "1000 人以上 85 折") and not sc.phrase_found("八五折", "九五折")


def test_small_integers_and_percent_forms():
    rec = record(sources=[src("a.md", "按百分之九十给付")], answer="1. 一般按 0.9 的比例，即 90%；2. 见第3条")
    assert sc.invented_figures(rec) == []


def test_calc_working_steps_are_not_invented_elsewhere_they_are():
    base = dict(question="Arrangement fee on a £300,000 mortgage?", accept=["1,500"],
                sources=[src("fees.html", "0.5% of the loan amount, minimum £499, maximum £1,999")],
                answer="0.5% × £300,000 = £1,500, which is £1,001 above the minimum of £499")
    assert sc.invented_figures(record(kind="calc", **base)) == []
    assert sc.invented_figures(record(kind="fact", **base)) == ["£1001"]
    wild = record(kind="calc", **{**base, "answer": "£1,500 plus a £250 valuation fee"})
    assert sc.invented_figures(wild) == ["£250"]


def test_invented_counted_only_for_answers_and_tool_results():
    rec = record(**{**FACT, "outcome": "evidence", "answer": "The documents say 95%."})
    assert sc.judge(rec)["invented"] == []
    rec = record(**{**FACT, "outcome": "answer", "answer": "The documents say 95%."})
    assert sc.judge(rec)["invented"] == ["95%"]


# ---------------------------------------------------------------------------------------------- spurious tool calls

def test_spurious_tool_calls():
    fact = record(**{**FACT, "tool_calls": [call("calculator", result={"result": 90})]})
    assert sc.judge(fact)["spurious_calls"] == ["calculator"]
    calc = record(kind="calc", tool_calls=[call("calculator", result={"result": 2250})])
    assert sc.judge(calc)["spurious_calls"] == []
    refuse = record(kind="refuse", outcome="refusal", tool_calls=[call("get_loan_application")])
    assert sc.judge(refuse)["spurious_calls"] == ["get_loan_application"]
    assert sc.judge(record(**LOOKUP))["spurious_calls"] == []


# ---------------------------------------------------------------------------------------------- summary

def test_percentile():
    assert sc.percentile([], 50) is None
    assert sc.percentile([3.0], 95) == 3.0
    assert sc.percentile([1, 2, 3, 4], 50) == 2.5
    assert sc.percentile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 95) == pytest.approx(9.55)


def _records():
    return [
        record(id="b-1", **FACT, latency_s=2.0, first_token_s=0.5),
        record(id="b-2", **{**FACT, "outcome": "evidence"}, latency_s=4.0, first_token_s=None),
        record(id="b-3", split="final", **{**FACT, "answer": "95%"}, latency_s=6.0, first_token_s=1.5),
        record(id="b-4", **LOOKUP),
        record(id="b-5", kind="refuse", outcome="refusal", answer="The documents do not say."),
        record(id="b-6", kind="refuse", outcome="answer", answer="7.49%",
               tool_calls=[call("calculator", result={"result": 1})]),
        record(id="h-1", domain="hospital", kind="followup", accept=["医务部"], source="血.html",
               answer="报医务部批准", sources=[src("血.html", "报医务部批准")]),
    ]


def test_score_records_groups():
    summary = sc.score_records(_records())
    groups = {(g["domain"], g["split"]): g for g in summary["groups"]}
    assert set(groups) == {("bank", "dev"), ("bank", "final"), ("bank", "all"), ("hospital", "dev"),
                           ("hospital", "all"), ("all", "dev"), ("all", "final"), ("all", "all")}
    bank = groups[("bank", "all")]
    assert (bank["n"], bank["right"]) == (6, 4)
    assert bank["kinds"]["fact"] == [2, 3] and bank["kinds"]["lookup"] == [1, 1] and bank["kinds"]["refuse"] == [1, 2]
    assert (bank["fact_right"], bank["own"], bank["evidence_only"], bank["own_pct"]) == (2, 1, 1, 50.0)
    assert (bank["refusals_right"], bank["refusals_total"], bank["wrong_refusals"]) == (1, 2, 0)
    assert (bank["spurious_tool_questions"], bank["spurious_tool_calls"]) == (1, 1)
    assert bank["invented_answers"] == 2  # b-3 (95%) and b-6 (7.49%)
    assert groups[("bank", "final")]["n"] == 1 and groups[("bank", "final")]["right"] == 0
    assert groups[("all", "all")]["n"] == 7 and groups[("all", "all")]["right"] == 5
    assert groups[("hospital", "all")]["kinds"]["followup"] == [1, 1]


def test_format_table():
    table = sc.format_table(sc.score_records(_records()))
    lines = table.splitlines()
    assert lines[0].startswith("| setup | domain | split | n | right |")
    assert len(lines) == 2 + 8
    bank_all = next(line for line in lines if line.startswith("| - | bank | all |"))
    assert "| 6 | 4 (66.7%) | 2/3 | - | - | 1/1 | 1/2 | 1/2 (50%) |" in bank_all


def test_cli(tmp_path, capsys):
    path = tmp_path / "results.jsonl"
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in _records()) + "\n\n", encoding="utf-8")
    assert sc.main([str(path), "--wrong"]) == 0
    out = capsys.readouterr().out
    assert "| - | bank | all |" in out and "- b-3 (bank/final, fact, answer): no accepted phrase in the answer" in out
    assert sc.main([str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["groups"][0]["domain"] == "bank"


def test_scorer_imports_nothing_from_the_product():
    source = Path(sc.__file__).read_text(encoding="utf-8")
    for package in ("assistant", "core", "ingest", "finetune"):
        assert f"import {package}" not in source and f"from {package}" not in source


def test_setups_are_scored_apart_and_verification_is_tallied():
    records = []
    for setup, verified, shown in (("a", True, "30 days"), ("b", False, "From the documents: 10 days")):
        records.append({"id": "x", "domain": "d", "split": "dev", "kind": "fact", "question": "How long?",
                        "accept": ["30 days"], "source": None, "setup": setup, "verified": verified,
                        "outcome": "answer" if verified else "evidence", "model_answer": "30 days",
                        "answer": shown, "sources": []})
    summary = sc.score_records(records)
    assert {(g["setup"], g["right"]) for g in summary["groups"]} == {("a", 1), ("b", 0)}
    assert sc.verification_matrix(summary["verdicts"]) == {"a": {"right & verified": 1}, "b": {"right & failed": 1}}
