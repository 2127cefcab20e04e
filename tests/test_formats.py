"""Spreadsheets and slide decks (issue 13): real XLSX/XLS/CSV/PPTX files made in the test, ingested
through the real pipeline into a real knowledge base, and found again with sheet/slide citations."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from core.errors import FileRejected
from core.prompts import Passage
from core.settings import Settings
from core.testing.office_files import make_csv, make_pptx, make_xls, make_xlsx
from ingest import pipeline
from ingest.cli import app
from ingest.loaders import ParseOptions, load_file

RATES_ZH = [
    [None],
    ["年龄段", "年保费(元)", "免赔额(元)", "赔付比例"],
    ["18-30岁", 1200, 100, 0.8],
    ["31-45岁", 1850, 200, 0.75],
    ["46-60岁", 2680, 500, 0.7],
]


def _workbook(d: Path) -> Path:
    return make_xlsx(
        d / "健康险费率.xlsx",
        {
            "说明": [["本表为长青人寿健康险2024年费率。"], ["如有疑问请致电客服热线 400-820-1234。"]],
            "费率表": RATES_ZH,
            "Surcharges": [["Item", "Amount (USD)"], ["Smoker loading", 350], ["Dangerous sports", 420]],
        },
        merges={"费率表": [(0, 0, 0, 3, "2024 年度费率表")]},
        formulas={"Surcharges": [("A4", '="Total loadings"', "Total loadings"), ("B4", "=SUM(B2:B3)", 770)]},
    )


def test_xlsx_sheets_are_pages_with_merged_cells_and_cached_formulas(docs_dir: Path) -> None:
    doc = load_file(_workbook(docs_dir))
    assert [(p.page, p.label) for p in doc.pages] == [(0, "sheet 说明"), (1, "sheet 费率表"), (2, "sheet Surcharges")]
    rates = doc.pages[1].text
    assert rates.startswith("# 费率表")  # the sheet name heads the heading path
    assert "2024 年度费率表" in rates and rates.count("2024 年度费率表") == 1  # merged title: one caption
    assert "| 年龄段 | 年保费(元) | 免赔额(元) | 赔付比例 |" in rates
    assert "| 31-45岁 | 1850 | 200 | 75.0% |" in rates
    assert "| Total loadings | 770 |" in doc.pages[2].text  # the value Excel saved, not "=SUM(B2:B3)"


def test_xls_and_csv_read(docs_dir: Path) -> None:
    xls = load_file(make_xls(docs_dir / "legacy.xls", {"Plans": [["Plan", "Premium"], ["Gold", 300.0], ["Silver", 150]]}))
    assert xls.pages[0].label == "sheet Plans" and "| Gold | 300 |" in xls.pages[0].text
    csv_doc = load_file(make_csv(docs_dir / "网点.csv", [["城市", "网点", "电话"], ["上海", "浦东营业部", "021-5888-0000"]],
                                 encoding="gbk"))
    assert "| 上海 | 浦东营业部 | 021-5888-0000 |" in csv_doc.pages[0].text


def test_pptx_slides_are_pages_with_title_body_table_and_notes(docs_dir: Path) -> None:
    deck = make_pptx(docs_dir / "training.pptx", [
        {"title": "Claims intake", "body": ["Register every claim within 48 hours", "Check the policy is in force"],
         "notes": "Remind staff that late registration triggers a compliance review."},
        {"title": None, "body": ["An untitled slide about archive retention of 10 years"]},
        {"title": "理赔时效", "table": [["险种", "结案时限"], ["医疗险", "30日"], ["意外险", "10日"]]},
    ])
    doc = load_file(deck)
    assert [(p.page, p.label) for p in doc.pages] == [(0, "slide 1"), (1, "slide 2"), (2, "slide 3")]
    assert doc.pages[0].text.startswith("# Claims intake")
    assert "compliance review" in doc.pages[0].text
    assert doc.pages[1].text.startswith("# Slide 2")  # not filed under the previous slide's title
    assert "| 医疗险 | 30日 |" in doc.pages[2].text


@pytest.mark.parametrize("maker", ["xlsx", "pptx"])
def test_office_zip_bombs_refused(docs_dir: Path, maker: str) -> None:
    import zipfile

    path = _workbook(docs_dir) if maker == "xlsx" else make_pptx(docs_dir / "d.pptx", [{"title": "x", "body": ["y"]}])
    with zipfile.ZipFile(path, "a", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("docProps/filler.bin", b"\0" * (24 * 2**20))
    with pytest.raises(FileRejected) as info:
        load_file(path, options=ParseOptions(max_unzipped_bytes=16 * 2**20))
    assert "zip bomb" in info.value.reason


def test_sheets_and_slides_found_with_their_citations(settings: Settings, docs_dir: Path) -> None:
    _workbook(docs_dir)
    make_csv(docs_dir / "branches.csv", [["City", "Branch", "Phone"], ["Shanghai", "Pudong office", "021-5888-0000"],
                                         ["Beijing", "Chaoyang office", "010-6500-1111"]])
    make_pptx(docs_dir / "training.pptx", [
        {"title": "Claims intake", "body": ["Register every claim within 48 hours"],
         "notes": "Late registration triggers a compliance review by the audit team."},
        {"title": "Fraud signals", "body": ["Several claims from one address in a month", "Invoices edited by hand"]},
        {"title": "理赔时效", "table": [["险种", "结案时限"], ["医疗险", "30日"], ["意外险", "10日"]]},
    ])
    report = pipeline.add_paths(settings, [docs_dir])
    assert [r.status for r in report.results] == ["added"] * 3, [r.reason for r in report.results]
    docs = {d["source"]: d for d in pipeline.list_documents(settings)}
    assert docs["training.pptx"]["pages"] == 3 and docs["健康险费率.xlsx"]["pages"] == 3

    def top(query: str):
        return pipeline.search(settings, query, k=1)[0]

    hit = top("31到45岁的年保费是多少")
    assert (hit.source, hit.page, hit.metadata["page_label"]) == ("健康险费率.xlsx", 1, "sheet 费率表")
    assert "| 年龄段 | 年保费(元) |" in hit.text and "1850" in hit.text
    assert hit.clause.startswith("费率表")
    hit = top("What happens when a claim is registered late?")
    assert (hit.source, hit.page, hit.metadata["page_label"]) == ("training.pptx", 0, "slide 1")
    hit = top("Which signs point to claims fraud?")
    assert (hit.source, hit.metadata["page_label"]) == ("training.pptx", "slide 2")
    hit = top("意外险结案时限")
    assert (hit.source, hit.metadata["page_label"]) == ("training.pptx", "slide 3")
    hit = top("phone number of the Beijing branch")
    assert hit.source == "branches.csv" and "010-6500-1111" in hit.text
    # the label the model and the UI cite
    assert Passage(hit.source, hit.text, hit.page, hit.clause, hit.metadata["page_label"]).header().startswith(
        "branches.csv, sheet branches")
    out = CliRunner().invoke(app, ["search", "31到45岁的年保费", "-k", "1", "--json", "--home", str(settings.home)])
    assert out.exit_code == 0
    assert json.loads(out.stdout)[0]["page_label"] == "sheet 费率表"
    out = CliRunner().invoke(app, ["search", "registered late compliance", "-k", "1", "--home", str(settings.home)])
    assert "training.pptx" in out.stdout and "slide 1" in out.stdout
