"""The pieces of verification alone: figures normalised across the ways documents and answers write them,
conditions stated as ranges, and the answer field read out of a streamed structured reply."""

from __future__ import annotations

import pytest

from assistant.chain import conditions
from assistant.chain.generation import FieldStream
from core.figures import figures, unsupported


@pytest.mark.parametrize(("answer", "source"), [
    ("30 days", "within thirty (30) days"), ("thirty days", "within 30 days"), ("十日内", "10 日内"),
    ("300,000", "30 万元"), ("CNY 1.2 million", "1,200,000"), ("90%", "百分之九十"), ("百分九十", "90%"),
    ("0.9", "90%"), ("九折", "90%"), ("八五折", "85%"), ("2024年4月1日", "1 April 2024"), ("2024-04-01", "2024年4月1日"),
    ("一百八十日", "180 days"), ("two hundred and fifty", "250"), ("POL-2024-0001", "pol-2024-0001"),
])
def test_the_same_figure_written_two_ways_is_supported(answer: str, source: str) -> None:
    assert unsupported(answer, [source]) == [], (answer, source)


@pytest.mark.parametrize(("answer", "source"), [
    ("三十日", "十日内"), ("20 days", "within 2 days"), ("八五折", "九折"), ("2024-04-02", "1 April 2024"),
    ("POL-2024-0002", "POL-2024-0001"), ("USD 900,000", "USD 90,000"),
])
def test_a_different_figure_is_not(answer: str, source: str) -> None:
    assert unsupported(answer, [source]), (answer, source)


@pytest.mark.parametrize("text", ["一般情况下", "十分重要", "万一出险", "第九条 事故通知", "Section 3.3 applies", "one of the claims",
                                  "[2]"])
def test_words_and_clause_references_are_not_figures(text: str) -> None:
    assert figures(text) == [], text


def test_a_refusal_phrase_does_not_switch_the_figure_check_off() -> None:
    assert unsupported("No information is needed; the branch manager approves up to USD 900,000 [1]",
                       ["Branch managers approve loans up to USD 250,000."]) == ["USD 900,000".split()[1]]


@pytest.mark.parametrize(("question", "clause", "holds"), [
    ("三百人的单位打几折？", "200 至 999 人享受九折", True), ("三百人的单位打几折？", "1000 人以上享受八五折", False),
    ("Who approves a claim of CNY 450,000?", "Claims above CNY 300,000 require the Head of Claims", True),
    ("Who approves a claim of CNY 450,000?", "claims above CNY 1,000,000 require the Claims Committee", False),
    ("Who must approve a claim above CNY 300,000?", "Claims above CNY 300,000 require the Head of Claims", True),
    ("单次输血 1000ml 由谁审批？", "单次用血 800ml 至 1600ml 由科室主任审批", True),
    ("单次输血 1000ml 由谁审批？", "单次用血 800ml 以下由主治医师审批", False),
    ("A loan of £45,000?", "Loans up to £25,000 are approved by the branch", False),
    ("A loan of £45,000?", "Loans up to USD 25,000 are approved by the branch", None),  # another currency
])
def test_a_clause_applies_only_where_its_range_holds_the_questions_quantity(question: str, clause: str,
                                                                          holds: bool | None) -> None:
    assert conditions.applies(clause, conditions.quantities(question)) is holds


def test_of_several_tiers_that_hold_the_narrowest_applies() -> None:
    unit = ("Claims above CNY 300,000 require approval by the Head of Claims, and claims above CNY 1,000,000 "
            "require the Claims Committee.")
    assert [v for _, v in conditions.verdicts(unit, conditions.quantities("A claim of CNY 1.2 million?"))] == [
        False, True]
    assert [v for _, v in conditions.verdicts(unit, conditions.quantities("A claim of CNY 450,000?"))] == [
        True, False]


def test_a_thirty_year_mortgage_is_a_term_not_an_amount() -> None:
    asked = conditions.quantities("What deposit does a 30-year mortgage of £300,000 need?")
    assert {q.kind for q in asked} == {"year", "GBP"} or {q.kind for q in asked} == {"year", "u:£"} or \
        any(q.kind == "year" and q.value == 30 for q in asked)
    assert conditions.applies("Mortgages above £250,000 need a 10% deposit", asked) is not False


def test_calendar_years_are_not_quantities() -> None:
    assert conditions.quantities("2024年的保单还有效吗？") == []


def test_the_stream_shows_only_the_answer_field() -> None:
    shown: list[str] = []
    stream = FieldStream("answer", shown.append)
    for piece in ['{"evid', 'ence":[3,', '4],"ans', 'wer":"Within \\"ten\\"', ' days\\n', '\\u5929"}']:
        stream.feed(piece)
    assert "".join(shown) == 'Within "ten" days\n天'
    stream.feed('trailing')
    assert "".join(shown) == 'Within "ten" days\n天'
