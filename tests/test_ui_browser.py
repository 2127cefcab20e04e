"""The real app in a real browser: `streamlit run ui/app.py` as a server, headless Chromium (Debian's, driven
by playwright) logs in, asks, watches the answer stream in and opens its source. The screenshot is kept in
test-artifacts/ (or $UI_ARTIFACTS)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from assistant.app.users import DEMO_USERS, ensure_demo_users
from tests.chain_env import CHAIN_ENV_VARS, Q_RAG
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


@pytest.fixture
def server(chain_env: dict, tmp_path: Path) -> Iterator[str]:
    home = tmp_path / "home"
    shutil.copytree(chain_env["settings"].home, home)
    ensure_demo_users(home / "app.db")
    with app_server(home, tmp_path / "streamlit.log", {
            "ASSISTANT_MODEL": str(chain_env["tiny"]), "ASSISTANT_MAX_NEW_TOKENS": "48",
            "ASSISTANT_RETRIEVAL_K": "2", **CHAIN_ENV_VARS}) as url:
        yield url


def test_browser_login_question_streamed_answer_and_source(server: str) -> None:
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=120_000)  # the first question also loads the model

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
            box.fill(Q_RAG)
            box.press("Enter")
            answer = page.get_by_test_id("stChatMessage").filter(has_text="十日内报案")
            expect(answer).to_have_count(1)
            source = answer.get_by_text("claims.md")
            expect(source).to_be_visible()
            expect(answer).not_to_contain_text("▌")
            seen = page.evaluate("window.__seen")
            assert any("十" in t for t in seen), seen  # the answer was on screen, cursor and all, while written
            source.click()  # the cited passage opens under its source
            expect(answer.get_by_text("95500-88")).to_be_visible()
            page.wait_for_timeout(800)  # let the expander finish opening for the screenshot
            page.screenshot(path=str(ARTIFACTS / "ui_chat.png"), full_page=True)
        except Exception:
            page.screenshot(path=str(ARTIFACTS / "ui_failure.png"), full_page=True)
            raise
        finally:
            browser.close()
    assert (ARTIFACTS / "ui_chat.png").stat().st_size > 10_000
