"""Each format parsed from real files made in the test; each kind of bad file rejected with its reason."""

from __future__ import annotations

from pathlib import Path

import docx
import pytest

from core.errors import FileRejected
from core.testing.pdfs import make_image_only_pdf, make_pdf, make_table_pdf, make_two_column_pdf
from ingest.loaders import ParseOptions, load_file


def test_pdf_keeps_page_numbers(docs_dir: Path) -> None:
    pdf = make_pdf(docs_dir / "p.pdf", ["第一条 第一页内容", "Page two: ARTICLE 2 PAYMENT", "第三页 page three"])
    doc = load_file(pdf)
    assert doc.format == "pdf"
    assert [p.page for p in doc.pages] == [0, 1, 2]
    assert "第一页内容" in doc.pages[0].text
    assert "ARTICLE 2 PAYMENT" in doc.pages[1].text
    assert "page three" in doc.pages[2].text


def test_pdf_table_rows_keep_header_and_cells_together(docs_dir: Path) -> None:
    pdf = make_table_pdf(
        docs_dir / "t.pdf",
        "伤残等级给付比例表",
        [["伤残等级", "给付比例"], ["一级", "100%"], ["二级", "90%"], ["三级", "80%"]],
    )
    text = load_file(pdf).pages[0].text
    assert "| 伤残等级 | 给付比例 |" in text
    assert "| 二级 | 90% |" in text


def test_pdf_two_columns_read_column_by_column(docs_dir: Path) -> None:
    left = [f"Left column paragraph {i} talks about claims registration and the hotline number." for i in range(6)]
    right = [f"Right column paragraph {i} explains payment deadlines and appeal procedures." for i in range(6)]
    pdf = make_two_column_pdf(docs_dir / "cols.pdf", left, right)
    text = " ".join(load_file(pdf).pages[0].text.split())
    # every left paragraph is read whole, and all of them before the right column starts
    for i in range(6):
        assert f"Left column paragraph {i} talks about claims registration" in text
    assert text.index("Left column paragraph 5") < text.index("Right column paragraph 0")


def test_docx_headings_and_tables(docs_dir: Path) -> None:
    d = docx.Document()
    d.add_heading("ARTICLE 3 FEES", level=1)
    d.add_paragraph("3.1 The client pays within 30 days.")
    table = d.add_table(rows=2, cols=2)
    table.cell(0, 0).text, table.cell(0, 1).text = "Item", "Fee"
    table.cell(1, 0).text, table.cell(1, 1).text = "Registration", "CNY 85"
    path = docs_dir / "a.docx"
    d.save(str(path))
    text = load_file(path).pages[0].text
    assert "# ARTICLE 3 FEES" in text
    assert "3.1 The client pays within 30 days." in text
    assert "| Registration | CNY 85 |" in text


def test_html_drops_scripts_keeps_structure(docs_dir: Path) -> None:
    path = docs_dir / "faq.html"
    path.write_text(
        "<html><head><title>FAQ</title><script>var secret = 1;</script></head><body>"
        "<h2>Retention</h2><p>Paid claims are kept 10 years.</p>"
        "<table><tr><th>Record</th><th>Years</th></tr><tr><td>Calls</td><td>3</td></tr></table>"
        "</body></html>",
        encoding="utf-8",
    )
    doc = load_file(path)
    assert doc.title == "FAQ"
    text = doc.pages[0].text
    assert "## Retention" in text and "Paid claims are kept 10 years." in text
    assert "| Calls | 3 |" in text
    assert "secret" not in text


@pytest.mark.parametrize("encoding", ["utf-8", "gbk", "utf-16", "utf-8-sig"])
def test_text_encodings_detected(docs_dir: Path, encoding: str) -> None:
    content = "第十二条 犹豫期\n自投保人签收保险单之日起十五日为犹豫期。The cooling-off period is 15 days.\n"
    path = docs_dir / f"t-{encoding}.txt"
    path.write_bytes(content.encode(encoding))
    assert load_file(path).pages[0].text == content


def test_markdown_page_is_none(docs_dir: Path) -> None:
    path = docs_dir / "g.md"
    path.write_text("# 指南\n\n## 一、报案\n拨打热线。\n", encoding="utf-8")
    doc = load_file(path)
    assert doc.format == "markdown" and doc.pages[0].page is None


def _rejected(path: Path) -> str:
    with pytest.raises(FileRejected) as info:
        load_file(path)
    assert info.value.path == path
    return info.value.reason


def test_corrupt_pdf_rejected(docs_dir: Path) -> None:
    path = docs_dir / "broken.pdf"
    path.write_bytes(b"%PDF-1.7\n" + bytes(range(256)) * 20)
    assert "corrupt" in _rejected(path)


def test_truncated_pdf_rejected(docs_dir: Path) -> None:
    good = make_pdf(docs_dir / "full.pdf", ["some text " * 50])
    path = docs_dir / "truncated.pdf"
    path.write_bytes(good.read_bytes()[:300])
    reason = _rejected(path)
    assert "corrupt" in reason or "no text" in reason


def test_encrypted_pdf_rejected(docs_dir: Path) -> None:
    path = make_pdf(docs_dir / "secret.pdf", ["机密 confidential"], encrypt_password="s3cret")
    reason = _rejected(path)
    assert "password" in reason and "decrypt" in reason


def test_image_only_pdf_rejected_with_ocr_hint_when_ocr_is_off(docs_dir: Path) -> None:
    path = make_image_only_pdf(docs_dir / "scan.pdf")
    with pytest.raises(FileRejected) as info:
        load_file(path, options=ParseOptions(ocr="off"))
    assert "image-only" in info.value.reason and "OCR" in info.value.reason


def test_blank_scan_has_no_text(docs_dir: Path) -> None:
    """With OCR on, a scan of a blank grey page is read and found empty."""
    assert "no text" in _rejected(make_image_only_pdf(docs_dir / "blank.pdf"))


def test_empty_file_rejected(docs_dir: Path) -> None:
    path = docs_dir / "empty.md"
    path.write_bytes(b"")
    assert "empty" in _rejected(path)


def test_whitespace_only_file_rejected(docs_dir: Path) -> None:
    path = docs_dir / "blank.txt"
    path.write_text("   \n\n  \n", encoding="utf-8")
    assert "no text" in _rejected(path)


def test_unsupported_type_rejected(docs_dir: Path) -> None:
    path = docs_dir / "deck.key"
    path.write_bytes(b"PK\x03\x04 not really")
    reason = _rejected(path)
    assert "unsupported file type '.key'" in reason and ".pdf" in reason and ".xlsx" in reason


def test_corrupt_docx_rejected(docs_dir: Path) -> None:
    path = docs_dir / "broken.docx"
    path.write_bytes(b"this is not a zip archive")
    assert "not a valid DOCX" in _rejected(path)


def test_binary_text_file_rejected(docs_dir: Path) -> None:
    path = docs_dir / "binary.txt"
    path.write_bytes(b"\x00\x01\x02\xff\xfe\x00" * 100 + b"\x80\x81")
    assert "binary" in _rejected(path)


def test_pdf_running_headers_and_footers_removed(docs_dir: Path) -> None:
    bodies = [
        "犹豫期为十五日。",
        "意外身故按保险金额给付。",
        "医疗费用免赔额一百元。",
        "伤残按比例给付。",
        "退保退还未满期净保费。",
    ]
    pages = [f"长青人寿 内部资料\n{body}\n第 {i + 1} 页 共 5 页" for i, body in enumerate(bodies)]
    doc = load_file(make_pdf(docs_dir / "running.pdf", pages))
    for i, page in enumerate(doc.pages):
        assert "内部资料" not in page.text and "共 5 页" not in page.text
        assert page.text == bodies[i]
