"""Hostile Markdown in a real browser (issue 10): the app served by `streamlit run`, Debian's Chromium logged
in, a saved answer whose text, thinking, tool trace, source labels, passage and conversation title carry
images, links and HTML aimed at a local server that records every request. Nothing may arrive there; the
text must still be readable; the page's Content-Security-Policy must block an image added by script."""

from __future__ import annotations

import os
from pathlib import Path

from ui.testing import app_server, leak_server, seed, view_hostile_answer

ARTIFACTS = Path(os.environ.get("UI_ARTIFACTS", Path(__file__).resolve().parent.parent / "test-artifacts"))


def test_model_and_document_text_make_the_browser_fetch_nothing(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with leak_server() as (leak, seen):
        seed(home, "li.target", leak)
        with app_server(home, tmp_path / "streamlit.log") as url:
            stats = view_hostile_answer(url, "li.target", leak, ARTIFACTS / "ui_hostile.png")
        requested = list(seen)
    assert requested == []  # before: answer.png?leak=CUS-1001-fraud-watchlist, thinking.png, clause.png ...
    assert stats["imgs"] == [] and stats["links"] == [] and stats["html"] == 0
    assert stats["readable"]  # escaped, not dropped: the reader sees what the model wrote
    assert stats["csp"] and "img-src 'self' data: blob:" in stats["csp"] and "connect-src 'self'" in stats["csp"]
