"""The staff UI in a real browser over the real model: time to the first streamed token on screen and to
the finished answer (sources, feedback) against the chain's own latency for the same turn (from the audit
log) — the UI's overhead as a ratio — plus screenshots of each page.

    .venv/bin/python bench/ui_latency.py [--port 8599] [--out bench/results]

Uses the current ASSISTANT_HOME (run the quickstart first: offline model, ingested corpus, demo logins)
and Debian's chromium through playwright.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from common import ROOT, print_table

QUESTIONS = [
    "意外身故保险金怎么申请？",
    "Who must approve a claim above CNY 300,000?",
    "帮我查一下保单 POL-2024-0003 的状态",
]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, default=8599)
    p.add_argument("--out", default=str(ROOT / "bench" / "results"))
    p.add_argument("--user", default="li.claims")
    a = p.parse_args()

    from playwright.sync_api import expect, sync_playwright

    from assistant.app.users import DEMO_USERS, ensure_demo_users
    from core.settings import load_settings

    settings = load_settings()
    ensure_demo_users(settings.app_db)
    passwords = {n: pw for n, pw, _, _ in DEMO_USERS}
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    server = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(ROOT / "ui" / "app.py"), "--server.port", str(a.port),
         "--server.headless", "true", "--browser.gatherUsageStats", "false"],
        cwd=ROOT, env=dict(os.environ, ASSISTANT_HOME=str(settings.home)), stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{a.port}"
    rows = []
    try:
        for _ in range(120):
            try:
                if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                    break
            except OSError:
                time.sleep(0.5)
        expect.set_options(timeout=600_000)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=shutil.which("chromium"),
                                         args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
            page = browser.new_page(viewport={"width": 1280, "height": 1100})

            def login(name: str) -> None:
                page.goto(url)
                page.get_by_role("textbox", name="User name").fill(name)
                page.get_by_role("textbox", name="Password").fill(passwords[name])
                page.get_by_role("textbox", name="Password").press("Enter")
                page.get_by_role("button", name="Log in").click()
                page.get_by_placeholder("Ask a question (/think for step-by-step reasoning)").wait_for()

            login(a.user)
            page.get_by_role("button", name="New conversation").first.click()
            for i, q in enumerate(QUESTIONS):
                box = page.get_by_placeholder("Ask a question (/think for step-by-step reasoning)")
                n_done = page.get_by_text(re.compile(r"audit #\d+")).count()
                t0 = time.perf_counter()
                box.fill(q)
                box.press("Enter")
                page.get_by_test_id("stChatMessage").filter(has_text="▌").first.wait_for()
                first = time.perf_counter() - t0
                expect(page.get_by_text(re.compile(r"audit #\d+"))).to_have_count(n_done + 1)
                total = time.perf_counter() - t0
                audit_id = int(re.findall(r"audit #(\d+)", page.get_by_text(re.compile(r"audit #\d+")).last
                                          .inner_text())[0])
                with sqlite3.connect(settings.audit_db) as conn:
                    chain_s, prefill = conn.execute("SELECT latency_s, prefill_s FROM turns WHERE id = ?",
                                                    (audit_id,)).fetchone()
                rows.append({"question": q[:34], "first token on screen s": round(first, 2),
                             "answer done on screen s": round(total, 2), "chain s": round(chain_s, 2),
                             "model prefill s": prefill, "UI/chain": f"×{total / chain_s:.2f}"})
                page.screenshot(path=str(out / f"ui_chat_{i + 1}.png"), full_page=True)
            # the first answer's first source opened, with its PDF page when it has one
            source = page.get_by_test_id("stExpander").filter(has_text=re.compile(r"^\[\d+\]")).first
            if source.count():
                source.click()
                toggle = page.get_by_text(re.compile(r"^Show page \d+$")).first
                if toggle.count():
                    toggle.click()
                    page.get_by_role("img").last.wait_for()
                page.wait_for_timeout(1000)
                page.screenshot(path=str(out / "ui_source.png"), full_page=True)
            login("admin")
            for name, label in (("knowledge", "Knowledge base"), ("adapters", "Adapters"), ("users", "Users")):
                page.get_by_text(label).click()
                page.wait_for_timeout(2500)
                page.screenshot(path=str(out / f"ui_{name}.png"), full_page=True)
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
    print_table(f"UI latency in Chromium, user {a.user}, model {settings.model} (screenshots in {out})", rows,
                list(rows[0]))


if __name__ == "__main__":
    main()
