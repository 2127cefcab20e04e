"""Hostile files at ingest, round two (issue 29): a scanned PDF page 200 inches square, a file of many slow
pages, a sheet of a million rows. Each attack is performed for real: the files are made in the test and parsed
by the real worker process, whose memory (with the OCR engine it runs) is measured from /proc."""

from __future__ import annotations

import time
from pathlib import Path

from core.errors import FileRejected
from core.settings import Settings
from core.testing.memory import PeakRss
from core.testing.office_files import million_row_xlsx
from core.testing.scans import huge_page_pdf, scan_image
from ingest.parse_worker import ParseWorker, hard_limit_s, options_from

SCAN = ["第一条 出险后十日内报案。", "Claims are paid within 30 days."]


def _squeeze(text: str) -> str:
    return "".join(text.split())


def _parse(settings: Settings, path: Path) -> tuple[object, float, float]:
    """(document or FileRejected, seconds, MB the worker and its children grew by) for one file, parsed by a
    worker that has already started (its start-up is not the file's cost; bench/security_check.py reports the
    whole peak on a fresh worker)."""
    worker = ParseWorker()
    warm = path.with_name("warm.md")
    warm.write_text("# a\n\nb\n", encoding="utf-8")
    worker.load(warm, options_from(settings), 60)
    try:
        with PeakRss(lambda: worker.pid) as mem:
            t0 = time.perf_counter()
            try:
                result: object = worker.load(path, options_from(settings), settings.parse_timeout_s)
            except FileRejected as exc:
                result = exc
            took = time.perf_counter() - t0
        return result, took, mem.growth_mb
    finally:
        worker.stop()


def test_a_200_inch_scanned_page_is_rendered_within_the_pixel_budget(settings: Settings, docs_dir: Path) -> None:
    path = huge_page_pdf(docs_dir / "huge.pdf", scan=scan_image(SCAN, crop=True))
    assert path.stat().st_size < 50_000  # before: 40,000 x 40,000 pixels at 200 dpi, 32 s and 3.4 GB
    doc, took, peak_mb = _parse(settings, path)
    assert not isinstance(doc, FileRejected), doc
    # the 10 s / 400 MB target is measured by bench/security_check.py on a fresh worker; here only "bounded" (before:
    # 3.4 GB), with room for the OCR engine's threads on whatever machine runs the suite
    assert took < 60 and peak_mb < 600, (took, peak_mb)
    assert "出险后十日内报案" in _squeeze(doc.pages[0].text)  # still read, at the budget's resolution
    scaled = next(w for w in doc.warnings if "ASSISTANT_OCR_MAX_PIXELS" in w)
    assert "page 1 at 14 dpi" in scaled  # 8,000,000 pixels over a 200-inch square


def test_a_blank_huge_page_is_refused_saying_it_was_scaled(settings: Settings, docs_dir: Path) -> None:
    path = huge_page_pdf(docs_dir / "blank.pdf")
    assert path.stat().st_size < 1_000
    reason, took, peak_mb = _parse(settings, path)
    assert isinstance(reason, FileRejected) and took < 60 and peak_mb < 600, (reason, took, peak_mb)
    assert "no text" in reason.reason and "page 1 at 14 dpi" in reason.reason


def test_one_parse_deadline_per_file_not_per_page(settings: Settings, docs_dir: Path) -> None:
    """Before, each page restarted the clock: 40 pages of a few seconds each never hit it."""
    # every page the same scan: lines in its middle, as the running headers and footers taken off pages read
    # (once 4 are) are only the top and bottom lines
    path = huge_page_pdf(docs_dir / "many.pdf", pages=40, scan=scan_image(SCAN * 3, crop=True))
    s = settings.model_copy(update={"parse_timeout_s": 4.0})
    doc, took, _ = _parse(s, path)
    assert not isinstance(doc, FileRejected), doc
    assert took < hard_limit_s(4.0), took
    read = len(doc.pages)
    assert 1 <= read < 40
    assert f"pages {read + 1}-40 of 40 were skipped" in " ".join(doc.warnings)
    assert "ASSISTANT_PARSE_TIMEOUT_S" in " ".join(doc.warnings)


def test_a_million_row_sheet_is_refused_early_and_small(settings: Settings, docs_dir: Path) -> None:
    path = million_row_xlsx(docs_dir / "million.xlsx")
    reason, took, peak_mb = _parse(settings, path)
    assert isinstance(reason, FileRejected) and "ASSISTANT_MAX_PARAGRAPHS" in reason.reason, reason
    assert took < 60 and peak_mb < 300, (took, peak_mb)  # before: 40 s and 1.1 GB, the whole sheet loaded first


def test_cells_are_counted_as_they_stream(settings: Settings, docs_dir: Path) -> None:
    path = million_row_xlsx(docs_dir / "rows.xlsx", rows=3_000)
    s = settings.model_copy(update={"max_cells": 2_000})
    reason, _, _ = _parse(s, path)
    assert isinstance(reason, FileRejected) and "ASSISTANT_MAX_CELLS" in reason.reason, reason


def test_the_chat_shows_a_200_inch_page_within_its_pixel_budget(docs_dir: Path) -> None:
    import io

    from PIL import Image

    from ui.answer_view import PAGE_VIEW_MAX_PIXELS, pdf_page_png

    path = huge_page_pdf(docs_dir / "shown.pdf", scan=scan_image(SCAN, crop=True))
    png = pdf_page_png("sha", 0, path.read_bytes())
    width, height = Image.open(io.BytesIO(png)).size
    # at 1.4x the page would be 20,160 pixels square (406 megapixels)
    assert width * height <= PAGE_VIEW_MAX_PIXELS and width > 1000, (width, height)
