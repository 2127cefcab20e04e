"""The grounding guard: real passages from corpus/ and real tool results fed through `guard_answer`, and one
question through the real chain (the tiny Qwen3 answers Q_THINK with an uncited figure)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from assistant.chain.guard import NOT_FOUND_EN, NOT_FOUND_ZH, QUOTE_ZH, cn_to_int, figures, guard_answer
from assistant.tools.demo.data import POLICIES
from core.prompts import NO_ANSWER_ZH
from ingest.loaders import load_file

CORPUS = Path(__file__).resolve().parent.parent / "corpus"


@dataclass
class P:
    n: int
    text: str
    cited: bool = False


def _paragraph(needle: str) -> str:
    text = (CORPUS / "理赔服务指南.md").read_text(encoding="utf-8")
    return next(par for par in text.split("\n\n") if needle in par)


APPROVAL = _paragraph("30 万元以上报理赔负责人审批")  # 五个工作日 / 三十日 / 5 万元 / 30 万元
PAYMENT = _paragraph("十日内支付保险金")  # 十日内 / 十五个工作日


def test_figures_are_values_not_strings() -> None:
    assert cn_to_int("三十") == 30 and cn_to_int("一百零五") == 105 and cn_to_int("五万") == 50000
    keys = {k for _, ks in figures("超过 300,000 元、30万元、90%、POL-2024-0003、2024年1月10日") for k in ks}
    assert {"n:300000", "n:90", "n:0.9", "id:POL-2024-0003", "d:2024-1-10"} <= keys
    assert figures("1. 先报案\n2. 再交材料 [1]") == []  # list markers and citations are no figures


def test_a_figure_in_the_cited_passage_passes() -> None:
    ps = [P(1, PAYMENT, cited=True), P(2, APPROVAL)]
    v = guard_answer("核定后十日内支付保险金 [1]。", "核定后多久付款？", ps, [], used_tool=False)
    assert v.status is None and v.unsupported == [] and v.answer == "核定后十日内支付保险金 [1]。"


def test_a_wrong_figure_is_flagged_even_when_it_contains_the_right_one() -> None:
    """三十日 is not 十日: the figure must match a whole number in the sources."""
    ps = [P(1, PAYMENT, cited=True)]
    v = guard_answer("核定后三十日内支付保险金 [1]。", "核定后多久付款？", ps, [], used_tool=False)
    assert v.unsupported == ["三十"] and v.answer.endswith(f"⚠ {NOT_FOUND_ZH}: 三十")
    r = guard_answer("核定后三十日内支付保险金 [1]。", "核定后多久付款？", ps, [], used_tool=False,
                     figures_mode="replace")
    assert r.answer == f"核定后[{NOT_FOUND_ZH}]日内支付保险金 [1]。"


def test_figures_only_count_in_cited_passages() -> None:
    """30 万 is in passage 2, but the answer cites only passage 1."""
    ps = [P(1, PAYMENT, cited=True), P(2, APPROVAL)]
    v = guard_answer("30 万元以上由理赔负责人审批 [1]。", "谁审批大额理赔？", ps, [], used_tool=False)
    assert v.unsupported == ["30 万"]
    ps[1].cited = True
    assert guard_answer("30 万元以上由理赔负责人审批 [1][2]。", "谁审批大额理赔？", ps, [],
                        used_tool=False).unsupported == []


def test_amounts_match_across_notations_and_tool_results() -> None:
    policy = next(p for p in POLICIES if p["policy_id"] == "POL-2024-0003")
    result = json.dumps(policy, ensure_ascii=False)
    q = "POL-2024-0003 的保额是多少？"
    ok = guard_answer("保单 POL-2024-0003 已失效，保额 300,000 元（30万元），保费 420 元，2024-01-10 生效。", q, [],
                      [result], used_tool=True)
    assert ok.status is None and ok.unsupported == []
    bad = guard_answer("保单 POL-2024-0003 已失效，保额 500,000 元，2024-02-10 生效。", q, [], [result], used_tool=True)
    assert bad.unsupported == ["500,000", "2024-02-10"]


def test_figures_the_user_gave_are_supported() -> None:
    v = guard_answer("850 元扣除 100 元免赔额后按 90% 赔付，为 675 元。", "850 元医疗费能赔多少？",
                     [], ['{"result": 675}'], used_tool=True, user_texts=["免赔额 100 元，赔付 90%"])
    assert v.unsupported == []


def test_an_unsupported_answer_is_replaced_by_the_sentence_that_answers() -> None:
    """三十日 stands in passage 1, but about 核定, not about 申诉: the answer is wrong and the quote is the sentence
    of passage 2 that does answer (十五个工作日), with its citation."""
    ps = [P(1, APPROVAL), P(2, PAYMENT)]
    q = "拒赔案件的申诉多久内答复？"
    v = guard_answer("根据资料，申诉三十日内答复。", q, ps, [], used_tool=False)
    assert v.status == "quoted_passage" and v.cite == 2
    assert v.answer.startswith(QUOTE_ZH) and v.answer.endswith("[2]") and "十五个工作日内答复" in v.answer
    assert "十日内支付保险金" not in v.answer and "三十日" not in v.answer
    marked = guard_answer("四十日内。", q, ps, [], used_tool=False, uncited="mark")
    assert marked.status == "unsourced" and "\n\n四十日内。\n\n" in marked.answer and marked.unsupported == ["四十"]
    none = guard_answer("年终奖是10000元。", "公司今年的年终奖发放标准是什么？", [], [], used_tool=False)
    assert none.status == "refused" and none.answer == NO_ANSWER_ZH


def test_a_grounded_answer_that_forgot_its_citation_gets_it() -> None:
    ps = [P(1, APPROVAL), P(2, PAYMENT)]
    v = guard_answer("申诉在十五个工作日内答复。", "拒赔案件的申诉多久内答复？", ps, [], used_tool=False)
    assert v.status == "attributed" and v.cite == 2 and v.answer == "申诉在十五个工作日内答复。 [2]"
    w = guard_answer("30万元以上由理赔负责人审批。", "理赔金额超过30万元由谁审批？", ps, [], used_tool=False)
    assert w.status == "attributed" and w.cite == 1


def test_an_answer_that_only_repeats_the_question_is_no_answer() -> None:
    ps = [P(1, PAYMENT, cited=True), P(2, APPROVAL)]
    v = guard_answer("拒赔案件的申诉多久内答复 [1]", "拒赔案件的申诉多久内答复？", ps, [], used_tool=False)
    assert v.status == "quoted_passage" and "十五个工作日" in v.answer


def test_quote_mode_replaces_a_cited_answer_with_a_wrong_figure() -> None:
    ps = [P(1, PAYMENT, cited=True), P(2, APPROVAL)]
    v = guard_answer("核定后三十日内支付保险金 [1]。", "核定后多久支付保险金？", ps, [], used_tool=False,
                     figures_mode="quote")
    assert v.status == "quoted_passage" and v.unsupported == ["三十"] and "十日内支付保险金" in v.answer
    tool = guard_answer("保额 500,000 元。", "POL-2024-0003 保额？", ps, ['{"sum_insured": 300000}'], used_tool=True,
                        figures_mode="quote")  # a tool answer is never swapped for a passage: marked instead
    assert tool.status is None and f"[{NOT_FOUND_ZH}]" in tool.answer


def test_focus_keeps_the_sentences_that_answer() -> None:
    from assistant.chain.sentences import focus

    long_text = APPROVAL + "\n\n" + PAYMENT
    cut = focus(long_text, "拒赔案件的申诉多久内答复？", 80)
    assert "十五个工作日内答复" in cut and len(cut) <= 80 + 4
    assert focus(PAYMENT, "任何问题", 10_000) == PAYMENT
    # the window does not begin with sentences that share nothing with the question: they would only be prefill
    cooling = focus(TERMS_NOTICE + "\n" + TERMS_COOLING, "犹豫期是多长时间？", 240)
    assert cooling.startswith("… 第五章 合同的解除") and "十五日为犹豫期" in cooling and "故意" not in cooling


def test_refusals_and_tool_answers_are_not_replaced() -> None:
    ps = [P(1, PAYMENT)]
    refusal = guard_answer(NO_ANSWER_ZH, "公司今年的年终奖发放标准是什么？", ps, [], used_tool=False)
    assert refusal.status is None and refusal.answer == NO_ANSWER_ZH
    tool = guard_answer("The policy has lapsed.", "status of POL-2024-0003?", ps, ['{"status": "lapsed"}'],
                        used_tool=True)
    assert tool.status is None and tool.answer == "The policy has lapsed."
    off = guard_answer("It is 30 days.", "How long?", ps, [], used_tool=False, uncited="off", figures_mode="off")
    assert off.answer == "It is 30 days." and off.status is None
    en = guard_answer("Pay within 30 days [1].", "How long?", [P(1, PAYMENT, cited=True)], [], used_tool=False)
    assert en.answer.endswith(f"⚠ {NOT_FOUND_EN}: 30")


@pytest.mark.parametrize("mode", ["replace", "mark"])
def test_guard_through_the_real_chain(chain_env: dict, mode: str) -> None:
    """The tiny Qwen3 answers Q_THINK with "675 元。": no citation, no tool. The chain must not show it as is."""
    from assistant.chain import Assistant
    from tests.chain_env import Q_THINK, STAFF

    a: Assistant = chain_env["assistant"]
    guarded = Assistant(a.settings.model_copy(update={"guard_uncited": mode, "guard_figures": "flag"}), a.backend,
                        a.tools, a.audit, a.model_name)
    events: list[tuple[str, object]] = []
    ans = guarded.ask(Q_THINK, STAFF, think=True, on_event=lambda k, p: events.append((k, p)))
    raw = ans.transcript  # what the model was sent; its answer was "675 元。"
    assert raw and ans.error is None
    if mode == "replace":  # no passage sentence shares a word with the question: nothing to quote, so a refusal
        assert ans.guard["status"] == "refused" and ans.answer == NO_ANSWER_ZH and not ans.sources
    else:
        assert ans.guard == {"status": "unsourced", "unsupported": ["675"]}
        assert "675 元。" in ans.answer and ans.answer.endswith(f"⚠ {NOT_FOUND_ZH}: 675")
    assert ("status", "guard_" + ans.guard["status"]) in events
    assert guarded.audit.get(ans.audit_id)["guard"] == ans.guard


def _rates() -> str:  # the demo rate sheet is GB18030, as such files often are
    return (CORPUS / "团体意外险费率说明.txt").read_text(encoding="gb18030")


def test_the_clause_stating_the_asked_amounts_tier_is_the_one_quoted() -> None:
    from assistant.chain.sentences import asked_amount, in_tier

    assert asked_amount("理赔金额超过30万元由谁审批？") == (300_000, 1)
    assert asked_amount("Who must approve a claim above CNY 300,000?") == (300_000, 1)
    assert asked_amount("计算 (2600 - 100) * 0.9") is None  # several amounts: a sum, not a tier
    assert in_tier("30 万元以上报理赔负责人审批", (300_000, 1))
    assert not in_tier("5 万元至 30 万元由高级核赔人审批", (300_000, 1))
    assert in_tier("200 至 999 人享受九折", (200, 0)) and not in_tier("50 至 199 人享受九五折", (200, 0))
    assert not in_tier("Senior assessors may approve up to CNY 300,000.", (300_000, 1))
    assert in_tier("单次理赔金额不超过 3000 元的", (2000, 0)) and not in_tier("单次理赔金额不超过 3000 元的", (5000, 0))
    v = guard_answer("可以打九五折 [1]。", "投保人数200人的团体可以打几折？", [P(1, _rates(), cited=True)], [],
                     used_tool=False, figures_mode="quote")
    assert v.status == "quoted_passage" and "200 至 999 人享受九折" in v.answer


def test_a_cited_answer_taken_from_the_neighbouring_clause_is_replaced_by_the_right_one() -> None:
    """The 0.5B model cited the approval paragraph and answered with the tier beside the asked one."""
    ps = [P(1, APPROVAL, cited=True), P(2, PAYMENT)]
    wrong = guard_answer("理赔金额超过30万元由高级核赔人审批 [1]。", "理赔金额超过30万元由谁审批？", ps, [],
                         used_tool=False, figures_mode="quote")
    assert wrong.status == "quoted_passage" and "30 万元以上报理赔负责人审批" in wrong.answer
    right = guard_answer("由理赔负责人审批 [1]。", "理赔金额超过30万元由谁审批？", ps, [], used_tool=False,
                         figures_mode="quote")
    assert right.status is None and right.answer == "由理赔负责人审批 [1]。"


def test_a_bare_figure_is_no_answer_and_an_unrelated_quote_is_a_refusal() -> None:
    ps = [P(1, APPROVAL, cited=True), P(2, PAYMENT)]
    bare = guard_answer("5 [1]", "材料齐全后几个工作日内完成审核？", ps, [], used_tool=False, figures_mode="quote")
    assert bare.status == "quoted_passage" and "五个工作日内完成审核" in bare.answer
    other = guard_answer("等待期为 90 天 [1]。", "重疾险的等待期是多少天？", ps, [], used_tool=False,
                         figures_mode="quote")  # nothing in these passages is about it: do not quote them
    assert other.status == "refused" and other.answer == NO_ANSWER_ZH


def test_a_word_only_one_sentence_has_pulls_the_quote_to_it() -> None:
    v = guard_answer("年费率是 12 元。", "团体意外险第三类职业的年费率是多少？", [P(1, _rates())], [],
                     used_tool=False, figures_mode="quote")
    assert v.status == "quoted_passage" and "第三类（轻体力劳动）为 18 元" in v.answer


# the terms' clauses as ingest extracts them from 安心意外伤害保险条款.pdf (line breaks as in the PDF)
TERMS_NOTICE = ("第四章 保险金申请与给付\n第九条 事故通知\n投保人、被保险人或受益人应于知道保险事故发生之日起十日内通知保险人，"
                "可拨打客服热线95500-8\n8或通过长青保险APP报案。故意或因重大过失未及时通知，致使保险事故的性质、原因、损失程度等\n"
                "难以确定的，保险人对无法确定的部分不承担给付责任。")
TERMS_COOLING = ("第五章 合同的解除\n第十二条 犹豫期\n自投保人签收保险单之日起十五日为犹豫期。投保人在犹豫期内解除合同的，保险人无息退还全"
                 "部保险费。\n第十三条 退保\n犹豫期后投保人可以书面申请解除合同，保险人自收到解除合同申请书之日起三十日内，按照未满期净保"
                 "险费的百分之八十退还保险费。")


def test_a_question_asking_for_days_is_answered_by_a_sentence_stating_days() -> None:
    """出险后几天内报案: the guide's sentence on reporting names 出险 twice but states no number of days (a policy
    number format is its only figure); the terms' 十日内通知保险人 answers."""
    from assistant.chain.guard import best_sentence
    from assistant.chain.sentences import asked_kind

    ps = [P(1, _paragraph("报案时请记录保单号")), P(2, TERMS_NOTICE)]
    found = best_sentence("出险后几天内报案？", ps)
    assert found is not None and found[0].n == 2 and "十日内通知保险人" in found[1]
    v = guard_answer("出险后三十日内报案。", "出险后几天内报案？", ps, [], used_tool=False, figures_mode="quote")
    assert v.status == "quoted_passage" and "十日内通知保险人" in v.answer
    kind = asked_kind("Within how many hours must the provider report a personal data breach?")
    assert kind is not None and kind.search("within twenty-four (24) hours of becoming aware")
    assert asked_kind("Who must approve a claim above CNY 300,000?") is None


def test_an_answer_must_agree_with_the_sentence_about_what_was_asked_not_its_neighbour() -> None:
    """犹豫期是多长时间: the quote window holds 十五日为犹豫期 and, next to it, 犹豫期后…三十日内; the 0.5B model
    answered 三十日 (a figure of the window, not of the sentence defining the term)."""
    ps = [P(1, TERMS_COOLING)]
    wrong = guard_answer("犹豫期是三十日内。", "犹豫期是多长时间？", ps, [], used_tool=False, figures_mode="quote")
    assert wrong.status == "quoted_passage" and "十五日为犹豫期" in wrong.answer
    right = guard_answer("犹豫期是十五日。", "犹豫期是多长时间？", ps, [], used_tool=False, figures_mode="quote")
    assert right.status == "attributed" and right.answer == "犹豫期是十五日。 [1]"


def _html_section(name: str, heading: str) -> str:
    """A section of a corpus file as the knowledge base holds it (a table as '| a | b |' rows)."""
    from ingest.loaders import load_file

    text = "\n".join(p.text for p in load_file(CORPUS / name).pages)
    start = text.index(heading)
    end = text.find("\n#", start + len(heading))
    return text[start:end if end > 0 else None]


# Seen from the demo domain adapter (claims@v1, 0.5B): long copies of the passages, a table row read off the wrong
# line, and a percentage written short; each passed the guard as an answer.
def test_a_long_answer_must_say_what_the_passage_that_answers_says_in_one_of_its_sentences() -> None:
    terms = CORPUS / "安心意外伤害保险条款.pdf"
    from ingest.loaders import load_file

    text = "\n".join(p.text for p in load_file(terms).pages)
    age = text[text.index("第二条"):text.index("第三条")]
    copy = ("投保人应为被保险人本人或对被保险人有保险利益的其他人。投保人应为被保险人本人或对被保险人有保险利益的其他人。"
            "第六条 意外伤残保险金在保险期间内，被保险人遭受意外伤害，并自事故发生之日起一百八十日内因该事故造成伤残的，"
            "保险人按照《伤残等级给付比例表》所列比例乘以意外伤残保险金额给付意外伤残保险金。")
    six = text[text.index("第六条"):text.index("第八条")]  # the chunk retrieved for it: 第二条, then 第六条 to 第七条
    v = guard_answer(copy, "被保险人的投保年龄范围是多少？", [P(1, age + six)], [], used_tool=False, figures_mode="quote")
    assert v.status == "quoted_passage" and "六十五周岁" in v.answer
    # a long answer that does say it passes, whatever else it adds
    good = ("凡年满十八周岁至六十五周岁、身体健康的自然人可作为被保险人 [1]。投保人应为被保险人本人或对被保险人有保险利益的其他人。"
            "此外，被保险人需能正常工作或生活，具体以保险合同约定为准，如有疑问可咨询客服。")
    ps = [P(1, age + six, cited=True)]
    assert guard_answer(good, "被保险人的投保年龄范围是多少？", ps, [], used_tool=False,
                        figures_mode="quote").status is None


def test_a_table_rows_figure_must_come_from_the_row_that_was_asked_about() -> None:
    table = _html_section("data_privacy_faq.html", "How long do we keep claim files?")
    assert "| Call recordings | 3 years |" in table
    ps = [P(1, table, cited=True)]
    v = guard_answer("10 years after the claim is closed [1].", "And how long are call recordings kept?", ps, [],
                     used_tool=False, figures_mode="quote")
    assert v.status == "quoted_passage" and "3 years" in v.answer
    assert guard_answer("3 years [1].", "And how long are call recordings kept?", ps, [], used_tool=False,
                        figures_mode="quote").status is None


def test_a_shortened_chinese_percentage_is_a_figure_and_a_table_does_not_swallow_the_clause_after_it() -> None:
    from ingest.loaders import load_file

    text = "\n".join(p.text for p in load_file(CORPUS / "安心意外伤害保险条款.pdf").pages)
    six_seven = text[text.index("第六条"):text.index("第三章")]
    assert [k for _, k in figures("按百分九十的比例给付")] == [{"n:90", "n:0.9"}]
    other = P(2, text[text.index("第九条"):text.index("第十条")], cited=True)
    v = guard_answer("按百分九十的比例给付，累计以意外医疗保险金额为限 [2]。", "意外医疗保险金按什么比例给付？",
                     [P(1, six_seven), other], [], used_tool=False, figures_mode="quote")
    # the quote is the clause that answers, not the disability table before it cut off at its length limit
    assert v.status == "quoted_passage" and "百分之九十" in v.answer and "一级" not in v.answer


def test_a_quote_ends_where_the_next_numbered_section_begins() -> None:
    """Seen in the browser: the quote for 'Who must approve a claim above CNY 300,000?' ran on into '3.4 Medical
    Expense Calculation …', the next section of the manual, which the PDF's text puts in the same sentence."""
    text = "\n".join(p.text for p in load_file(CORPUS / "claims_handling_manual.pdf").pages)
    part = text[text.index("3.3"):text.index("4.1")]
    v = guard_answer("The Senior assessors [1].", "Who must approve a claim above CNY 300,000?", [P(1, part, cited=True)],
                     [], used_tool=False, figures_mode="quote")
    assert v.status == "quoted_passage" and "Head of Claims" in v.answer and "3.4" not in v.answer
