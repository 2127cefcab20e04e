"""The real app in a real browser: `streamlit run ui/app.py` as a server, headless Chromium (Debian's, driven
by playwright) logs in, asks, watches the answer stream in, sees it stand with its quoted unit and opens its
source; then watches an answer that fails verification stream in and give way to the documents' own words.
The model is scripted (ui.testing.run_scripted_app: it writes given structured replies at a reading pace);
the knowledge base, verification and everything on screen are real. The screenshots are kept in
test-artifacts/ (or $UI_ARTIFACTS)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from assistant.app.users import DEMO_USERS, ensure_demo_users
from core.settings import Settings
from ingest import pipeline
from ui.testing import app_server, chromium

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = Path(os.environ.get("UI_ARTIFACTS", ROOT / "test-artifacts"))

# records every text an assistant message shows while it is written, to see the answer grow
WATCH = """() => {
  window.__seen = [];
  new MutationObserver(() => {
    for (const m of document.querySelectorAll('[data-testid="stChatMessage"]')) {
      const t = m.innerText;
      if (t.includes('▌')) window.__seen.push(t);
    }
  }).observe(document.body, {subtree: true, childList: true, characterData: true});
}"""


Q = "出险后几天内报案？"
# the model's replies: the first question's answer stands, the second's names a figure no cited unit has
REPLIES = [{"cite": ["十日内拨打"], "answer": "出险后应在十日内拨打客服电话报案，以免影响理赔。"},
           {"cite": ["十日内拨打"], "answer": "出险后应在两天内拨打客服电话报案，以免影响理赔。"}]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    home = tmp_path / "home"
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "claims.md").write_text(
        "# 理赔规则\n\n## 第一条 报案\n\n出险后十日内拨打 95500-88 报案。\n\n## 第二条 材料\n\n申请保险金时须提供身份证明。\n",
        encoding="utf-8")
    pipeline.add_paths(Settings(home=home), [tmp_path / "docs"])
    ensure_demo_users(home / "app.db")
    with app_server(home, tmp_path / "streamlit.log", {"ASSISTANT_RESOLVE_FOLLOWUPS": "false", "ASSISTANT_CACHE": "false"},
                    scripted=REPLIES, delay_s=0.25) as url:
        yield url


def test_browser_login_question_streamed_answer_and_source(server: str) -> None:
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=120_000)  # the first question also loads the embedding model

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    password = next(p for n, p, _, _ in DEMO_USERS if n == "wang.staff")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium(),
                                     args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.set_default_timeout(90_000)
            page.goto(server)
            page.get_by_role("textbox", name="User name").fill("wang.staff")
            page.get_by_role("textbox", name="Password").fill(password)
            page.get_by_role("textbox", name="Password").press("Enter")
            page.get_by_role("button", name="Log in").click()
            box = page.get_by_placeholder("Ask a question (/think for step-by-step reasoning)")
            box.wait_for()
            page.evaluate(WATCH)
            box.fill(Q)
            box.press("Enter")
            answer = page.get_by_test_id("stChatMessage").filter(has_text="以免影响理赔")
            expect(answer).to_have_count(1)
            expect(answer).to_contain_text("出险后应在十日内拨打客服电话报案，以免影响理赔。 [1]")  # with its mark
            expect(answer.locator("blockquote").first).to_contain_text("出险后十日内拨打 95500-88 报案。")  # the unit
            expect(answer).not_to_contain_text("▌")
            expect(answer).to_contain_text("checked against the cited documents")
            seen = page.evaluate("window.__seen")
            assert any("客服电话" in t for t in seen), seen  # the answer was on screen, cursor and all, while written
            assert any("checked against the documents before it stands" in t for t in seen), seen  # the status line
            source = answer.get_by_text("[1] claims.md · 第一条 报案", exact=True).last  # the Sources expander
            source.click()  # the passage the unit stands in opens under its source
            expect(answer.get_by_text("申请保险金时须提供身份证明", exact=False)).to_be_visible()
            page.wait_for_timeout(800)  # let the expander finish opening for the screenshot
            page.screenshot(path=str(ARTIFACTS / "ui_chat.png"), full_page=True)

            # an answer that fails verification: streamed as written, then replaced by the documents' own words
            page.get_by_role("button", name="New conversation").first.click()  # (the list may hold one so named)
            box.wait_for()
            page.evaluate("window.__seen = []")
            box.fill(Q)
            box.press("Enter")
            evidence = page.get_by_test_id("stChatMessage").filter(has_text="资料原文")
            expect(evidence).to_have_count(1)
            expect(evidence.locator("blockquote").first).to_contain_text("出险后十日内拨打 95500-88 报案。")
            expect(evidence).to_contain_text("the documents' own words")
            expect(evidence).not_to_contain_text("两天")  # the model's words are gone from the screen
            expect(evidence).not_to_contain_text("▌")
            seen = page.evaluate("window.__seen")
            assert any("两天" in t for t in seen), seen  # they were streamed, then replaced
            page.screenshot(path=str(ARTIFACTS / "ui_chat_evidence.png"), full_page=True)
        except Exception:
            page.screenshot(path=str(ARTIFACTS / "ui_failure.png"), full_page=True)
            raise
        finally:
            browser.close()
    assert (ARTIFACTS / "ui_chat.png").stat().st_size > 10_000
