"""Structure-aware chunking, Chinese and English, with sizes in the embedding model's tokens."""

from __future__ import annotations

import pytest

from ingest.chunking import chunk_document, detect_heading
from ingest.embeddings import load_embeddings
from ingest.loaders.base import LoadedDocument, Page


@pytest.fixture(scope="module")
def count():
    return load_embeddings("multilingual-e5-small").count_tokens


@pytest.mark.parametrize(
    ("line", "rank", "label"),
    [
        ("第三章 保险责任", 2, "第三章 保险责任"),
        ("第二节　投保规则", 3, "第二节 投保规则"),
        ("第五条 意外身故保险金 在保险期间内，被保险人因意外伤害身故的", 4, "第五条 意外身故保险金"),
        ("第十二条　犹豫期", 4, "第十二条 犹豫期"),
        ("一、报案", 5, "一、报案"),
        ("（二）意外伤残", 6, "（二）意外伤残"),
        ("ARTICLE 5 DATA PROTECTION", 4, "ARTICLE 5 DATA PROTECTION"),
        ("Article IV. Termination", 4, "Article IV Termination"),
        ("Section 2.3 Fees. The client shall pay within 30 days.", 6, "Section 2.3 Fees"),
        ("1.2.3 Scope of Work", 7, "1.2.3 Scope of Work"),
        ("## 3. Assessment", 2, "3. Assessment"),
    ],
)
def test_headings_detected(line: str, rank: int, label: str) -> None:
    h = detect_heading(line)
    assert h is not None and (h.rank, h.label) == (rank, label)


@pytest.mark.parametrize(
    "line",
    [
        "1. The Supplier shall deliver the goods within thirty days of the order.",
        "Section 5 of this Agreement applies to all renewals.",
        "2023 2022 2021",
        "被保险人应当在事故发生后十日内通知保险人。",
        "一、本条款所称意外伤害，是指以外来的、突发的、非本意的、非疾病的客观事件为直接且主要原因导致身体受到的伤害。",
        "",
    ],
)
def test_body_lines_are_not_headings(line: str) -> None:
    assert detect_heading(line) is None


ZH_CONTRACT = (
    """长青人寿 安心意外伤害保险条款
第一章 总则
第一条 合同构成 本合同由保险单、投保单及其他书面协议构成。
第二条 投保范围 凡年满十八周岁至六十五周岁、身体健康的自然人，可作为被保险人。
第二章 保险责任
第五条 意外身故保险金 在保险期间内，被保险人遭受意外伤害事故，并自事故发生之日起一百八十日内因该事故身故的，保险人按照保险金额给付意外身故保险金。
第六条 意外伤残保险金 """
    + "".join(
        f"被保险人因意外伤害造成第{i}级伤残的，保险人按照伤残等级给付比例表所列比例给付伤残保险金，给付后累计达到保险金额时合同终止。"
        for i in range(1, 11)
    )
    + """
第三章 责任免除
第八条 责任免除 因投保人故意伤害、被保险人醉酒驾驶、战争或核辐射导致身故或伤残的，保险人不承担给付保险金责任。
"""
)


def _doc(text: str, fmt: str = "text") -> LoadedDocument:
    return LoadedDocument(format=fmt, pages=[Page(text=text)])


def test_chinese_contract_chunks_follow_chapters_and_articles(count) -> None:
    chunks = chunk_document(_doc(ZH_CONTRACT), count, chunk_size=96, chunk_overlap=16, min_chunk_tokens=24)
    by_clause = {}
    for c in chunks:
        by_clause.setdefault(c.clause, []).append(c)
    assert "第二章 保险责任 > 第五条 意外身故保险金" in by_clause
    assert "第三章 责任免除 > 第八条 责任免除" in by_clause
    # the long article is split into several token-bounded pieces, each keeping its heading path
    long = by_clause["第二章 保险责任 > 第六条 意外伤残保险金"]
    assert len(long) >= 3
    for c in chunks:
        assert count(c.text) <= 96, (c.tokens, c.text)
    # split on CJK sentence ends, with overlap between consecutive pieces
    for piece in long[:-1]:
        assert piece.text.rstrip().endswith(("。", "，", "；"))
    assert any(long[i].text[-15:] in long[i + 1].text for i in range(len(long) - 1))


def test_tiny_fragments_are_merged(count) -> None:
    chunks = chunk_document(_doc(ZH_CONTRACT), count, chunk_size=96, chunk_overlap=16, min_chunk_tokens=40)
    # the bare title and "第一章 总则" line do not stand alone: merged with the first articles
    assert not any(c.text.strip() in ("第一章 总则", "长青人寿 安心意外伤害保险条款") for c in chunks)
    first = chunks[0]
    assert "第一章 总则" in first.text and "第一条 合同构成" in first.text
    assert all(c.tokens >= 40 for c in chunks[:-1])
    # two short articles share a chunk, and both are recorded for citations
    assert first.clauses == ["第一章 总则 > 第一条 合同构成", "第一章 总则 > 第二条 投保范围"]


def test_english_contract_paths(count) -> None:
    text = "\n".join(
        [
            "SERVICES AGREEMENT",
            "ARTICLE 1 DEFINITIONS",
            '1.1 "Services" means the registration and assessment of claims for the Client.',
            "ARTICLE 3 FEES AND PAYMENT",
            "Section 3.1 Fees. The Client shall pay CNY 85 per registered claim. " * 6,
            "Section 3.2 Invoices. Invoices are paid within thirty days of receipt by the Client. " * 6,
        ]
    )
    chunks = chunk_document(_doc(text), count, chunk_size=128, chunk_overlap=16, min_chunk_tokens=16)
    clauses = [c.clause for c in chunks]
    assert "ARTICLE 3 FEES AND PAYMENT > Section 3.1 Fees" in clauses
    assert "ARTICLE 3 FEES AND PAYMENT > Section 3.2 Invoices" in clauses


def test_chunk_size_is_measured_in_model_tokens_not_characters(count) -> None:
    text = "The policyholder may cancel within fifteen days and receive a full refund of premium. " * 40
    chunks = chunk_document(_doc(text), count, chunk_size=64, chunk_overlap=8, min_chunk_tokens=8)
    assert len(chunks) > 1
    assert all(count(c.text) <= 64 for c in chunks)
    assert max(len(c.text) for c in chunks) > 64 * 2  # characters far above the token budget


def test_pdf_pages_follow_chunks_across_page_breaks(count) -> None:
    pages = [
        Page("第一章 总则\n第一条 定义 " + "本条款所称意外伤害是指外来的、突发的、非本意的事件。" * 6, page=0),
        Page(
            "续前页：" + "被保险人应当如实告知健康状况和职业信息。" * 6 + "\n第二条 保险期间 本合同保险期间为一年。",
            page=1,
        ),
    ]
    chunks = chunk_document(LoadedDocument("pdf", pages), count, chunk_size=200, chunk_overlap=16, min_chunk_tokens=8)
    page_of = {c.page for c in chunks}
    assert page_of == {0, 1}
    continued = [c for c in chunks if c.text.startswith("续前页")]
    assert continued and continued[0].page == 1 and "第一条 定义" in continued[0].clause


def test_markdown_headings_form_the_path(count) -> None:
    md = (
        "# 理赔服务指南\n\n## 二、材料收集\n\n### （一）意外医疗\n\n需提供医疗费用原始发票、费用明细清单、门诊或住院病历、出院小结。"
        * 1
    )
    chunks = chunk_document(_doc(md, "markdown"), count, chunk_size=128, chunk_overlap=8, min_chunk_tokens=4)
    assert chunks[-1].clause == "理赔服务指南 > 二、材料收集 > （一）意外医疗"


def test_flatten_joins_wrapped_chinese_lines() -> None:
    from ingest.textutil import flatten

    assert (
        flatten("公安部门出具的死亡证明\n、户籍注销证明\nand English\nwords")
        == "公安部门出具的死亡证明、户籍注销证明 and English words"
    )


def test_table_split_across_chunks_repeats_its_header_and_keeps_rows_whole(count) -> None:
    header = "| 年龄 Age | 保费 Premium (元) | 免赔额 Deductible |"
    rows = [f"| {18 + i}岁 | {100 + 7 * i} | {i * 10} 元 |" for i in range(120)]
    text = "# 费率表\n说明：保费按年龄计。\n\n" + "\n".join([header, *rows]) + "\n\n注：以上费率自2024年起适用。"
    chunks = chunk_document(LoadedDocument("xlsx", [Page(text, page=0)]), count, 120, 16, 20)
    assert len(chunks) > 3
    table_chunks = [c for c in chunks if any(r in c.text for r in rows)]
    assert len(table_chunks) > 2
    for c in table_chunks:
        body = [ln for ln in c.text.split("\n") if ln.startswith("|")]
        assert body[0] == header  # every piece of the table says what its columns are
        assert all(ln in rows or ln == header for ln in body)  # rows whole, never cut
        assert c.tokens <= 120 + 8
    seen = [r for c in table_chunks for r in rows if r in c.text.split("\n")]
    assert seen == rows  # each row exactly once, in order
    assert all(c.clause == "费率表" for c in chunks)
    assert any("以上费率" in c.text for c in chunks)


def test_the_embedded_text_of_a_table_keeps_its_cells_without_the_pipes(count) -> None:
    from ingest.pipeline import embedding_text

    header = "| Item | FY2023 | FY2022 |"
    rows = [f"| Line item {i} | $ {1000 + i:,} | {900 + i:,} |" for i in range(12)]
    text = "Consolidated Statements of Cash Flows | in millions\n" + "\n".join([header, *rows])
    chunk = chunk_document(LoadedDocument("pdf", [Page(text, page=3)]), count, 320, 48, 48)[0]
    embedded = embedding_text("ACME 2023 10K", chunk)
    lines = embedded.split("\n")
    assert lines[0] == "ACME 2023 10K" and lines[1] == "Consolidated Statements of Cash Flows | in millions"
    assert lines[2] == "Item FY2023 FY2022"  # a row: its cells in order, the pipes gone
    assert lines[3:] == [f"Line item {i} $ {1000 + i:,} {900 + i:,}" for i in range(12)]
    assert chunk.text.split("\n")[1] == header  # what is stored, cited and prompted keeps the table
    assert count(embedded) < count(f"ACME 2023 10K\n{chunk.text}") * 0.8
