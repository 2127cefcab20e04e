"""OCR for scans and photos (issue 13): image-only PDFs and PNG/JPEG/TIFF made in the test (text drawn
into images, no text layer), ingested through the real pipeline with the default engine, and found
again with the right page citations; OCR only where a page has no text layer."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.errors import FileRejected
from core.settings import Settings
from core.testing.scans import save_scan
from ingest import pipeline
from ingest.loaders import ParseOptions, load_file

# a page long enough to be its own chunk (shorter ones are merged with a neighbour page)
ZH_PAGE = ["第十二条 保险费的支付", "分期支付保险费的，宽限期为六十日。", "宽限期内发生保险事故的，保险人仍承担保险责任。",
           "宽限期满仍未交纳保险费的，合同效力中止。", "合同效力中止之日起二年内，双方可协商恢复合同效力。"]
EN_PAGE = ["ARTICLE 7 TERMINATION", "Confidentiality obligations survive for five (5) years after termination.",
           "Either party may terminate for convenience on 180 days' notice.",
           "Termination does not affect rights accrued before the termination date.",
           "Fees for services rendered until termination remain payable within thirty days."]
ZH_PHOTO = ["理赔须知", "理赔申请应在事故发生后三十日内提交。", "客服热线 400-820-1234。"]
EN_PHOTO = ["Claims desk", "Dental claims are reimbursed at 80 percent up to USD 1,500 a year."]


def _squeeze(text: str) -> str:
    """OCR engines differ in the spaces they put between words; the characters are what is checked."""
    return "".join(text.split())


def test_scanned_pdf_pages_read_by_ocr_with_confidence(docs_dir: Path) -> None:
    doc = load_file(save_scan(docs_dir / "scan.pdf", [ZH_PAGE, EN_PAGE]))
    assert [p.page for p in doc.pages] == [0, 1]
    assert "宽限期为六十日" in _squeeze(doc.pages[0].text)
    assert "surviveforfive(5)years" in _squeeze(doc.pages[1].text)
    for p in doc.pages:
        assert p.ocr_confidence is not None and 0.5 < p.ocr_confidence <= 1


def test_ocr_only_pages_without_a_text_layer(docs_dir: Path) -> None:
    """A PDF of one typed page and one scanned page: the typed one keeps its text layer."""
    from fpdf import FPDF

    from core.testing.pdfs import add_fonts
    from core.testing.scans import scan_image

    pdf = FPDF(format="A4")
    family = add_fonts(pdf)
    pdf.add_page()
    pdf.set_font(family, size=11)
    pdf.multi_cell(0, 7, "Typed page: the deductible is USD 100 per claim.")
    pdf.image(scan_image(["tiny logo"], font_px=20), x=150, y=250, w=40)  # an image on a page with text
    pdf.add_page()
    pdf.image(scan_image(EN_PAGE), x=0, y=0, w=210, h=297)
    path = docs_dir / "mixed.pdf"
    pdf.output(str(path))
    doc = load_file(path)
    assert doc.pages[0].ocr_confidence is None and "tiny logo" not in doc.pages[0].text
    assert doc.pages[1].ocr_confidence is not None and "180days" in _squeeze(doc.pages[1].text)
    assert any("read by OCR" in w for w in doc.warnings)


def test_image_only_pdf_refused_when_ocr_is_off(docs_dir: Path) -> None:
    path = save_scan(docs_dir / "scan.pdf", [EN_PAGE])
    with pytest.raises(FileRejected) as info:
        load_file(path, options=ParseOptions(ocr="off"))
    assert "image-only" in info.value.reason and "ASSISTANT_OCR" in info.value.reason
    with pytest.raises(FileRejected) as info:
        load_file(save_scan(docs_dir / "photo.png", [EN_PAGE]), options=ParseOptions(ocr="off"))
    assert "OCR" in info.value.reason


def test_image_decompression_bomb_refused(docs_dir: Path) -> None:
    from PIL import Image

    path = docs_dir / "bomb.png"
    Image.new("1", (12_000, 12_000), 1).save(path)  # 144 M pixels in a few kB
    assert path.stat().st_size < 200_000
    with pytest.raises(FileRejected) as info:
        load_file(path)
    assert "pixels" in info.value.reason


def test_scans_and_photos_found_with_page_citations(settings: Settings, docs_dir: Path) -> None:
    save_scan(docs_dir / "signed-policy.pdf", [ZH_PAGE, EN_PAGE])
    save_scan(docs_dir / "notice.png", [ZH_PHOTO])
    save_scan(docs_dir / "desk.jpg", [EN_PHOTO], seed=3)
    steps: list[str] = []
    report = pipeline.add_paths(settings, [docs_dir], on_step=lambda kind, n: steps.append(kind))
    assert [r.status for r in report.results] == ["added"] * 3, [r.reason for r in report.results]
    assert steps.count("page") == 4  # progress per page: 2 scanned PDF pages, 2 images

    def top(query: str):
        return pipeline.search(settings, query, k=1)[0]

    hit = top("分期交保费的宽限期是多少天")
    assert (hit.source, hit.page) == ("signed-policy.pdf", 0)
    assert 0.5 < hit.metadata["ocr_confidence"] <= 1
    hit = top("How long do confidentiality obligations last after termination?")
    assert (hit.source, hit.page) == ("signed-policy.pdf", 1)
    hit = top("理赔申请的提交期限")
    assert hit.source == "notice.png" and "三十日" in _squeeze(hit.text)
    hit = top("dental reimbursement rate")
    assert hit.source == "desk.jpg" and "80percent" in _squeeze(hit.text)


@pytest.mark.parametrize("engine", ["tesseract", "rapidocr"])
def test_each_engine_reads_a_chinese_photo(docs_dir: Path, engine: str) -> None:
    doc = load_file(save_scan(docs_dir / "notice.png", [ZH_PHOTO]), options=ParseOptions(ocr=engine))
    assert "三十日内提交" in _squeeze(doc.pages[0].text)
    assert 0.5 < doc.pages[0].ocr_confidence <= 1
