"""API keys through the admin's Users page (AppTest, the real script and databases): a key created for an account
shows its token once, and that token authenticates; the key is listed; revoked through the page it is refused;
bad input is an error message; creation and revocation are audited as `assistant keys` audits them. And a cached
answer says so in the chat (ui.answer_view)."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from streamlit.testing.v1 import AppTest

from assistant.app import api_keys
from assistant.app.users import add_user
from core.audit import list_events
from core.settings import Settings
from tests.test_ui import plain

APP = str(Path(__file__).resolve().parent.parent / "ui" / "app.py")
PASSWORD = "Quiet-Harbour-Lantern-2026"


@pytest.fixture(autouse=True)
def _restore_main() -> Iterator[None]:
    """AppTest runs its script as `__main__` and leaves it there: a process spawned later in the session (as the
    chain_env fixture's are) would run that script again. Put the real `__main__` back."""
    main = sys.modules["__main__"]
    yield
    sys.modules["__main__"] = main


@pytest.fixture
def admin_page(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """A fresh data home with an admin and one staff account; the admin logged in on the Users page."""
    settings = Settings(home=tmp_path / "home")
    monkeypatch.setenv("ASSISTANT_HOME", str(settings.home))
    add_user(settings.app_db, "root", PASSWORD, "admin", "operations")
    add_user(settings.app_db, "li.claims", PASSWORD, "claims", "claims")
    at = AppTest.from_file(APP, default_timeout=120).run()
    at.text_input(key="login_name").input("root")
    at.text_input(key="login_password").input(PASSWORD)
    at.button(key="login").click().run()
    at.sidebar.radio(key="page").set_value("Users").run()
    assert not at.exception, at.exception
    return {"at": at, "settings": settings}


def create(at: AppTest, user: str | None = "li.claims", scopes: list[str] | None = None, expiry: str = "",
           rpm: int = 30, daily: int = 5000, label: str = "") -> AppTest:
    if user is not None:
        at.selectbox(key="api_key_user").set_value(user)
    at.multiselect(key="api_key_scopes").set_value(scopes if scopes is not None else list(api_keys.SCOPES))
    at.text_input(key="api_key_expiry").input(expiry)
    at.number_input(key="api_key_rpm").set_value(rpm)
    at.number_input(key="api_key_daily_tokens").set_value(daily)
    at.text_input(key="api_key_label").input(label)
    at.button(key="api_key_create").click().run()
    assert not at.exception, at.exception
    return at


def keys_table(at: AppTest) -> Any:
    return next(d.value for d in at.dataframe if "tokens/day" in d.value.columns)


def test_admin_creates_lists_and_revokes_a_key_and_it_is_audited(admin_page: dict) -> None:
    at, settings = admin_page["at"], admin_page["settings"]
    assert at.tabs[1].label == ":material/key: API keys"
    assert any("No API keys yet." in c.value for c in at.caption)
    assert at.number_input(key="api_key_rpm").value == settings.api_rpm  # the defaults of a new key
    assert at.number_input(key="api_key_daily_tokens").value == settings.api_daily_tokens

    create(at, expiry="soon")  # bad input: the library's message, no key, no traceback
    assert any("give a duration such as 30d" in plain(e.value) for e in at.error)
    assert not at.code and api_keys.list_keys(settings.app_db) == []
    create(at, expiry="2001-01-01")
    assert any("already past" in plain(e.value) for e in at.error) and not api_keys.list_keys(settings.app_db)
    create(at, scopes=[])
    assert any("at least one scope" in plain(e.value) for e in at.error) and not api_keys.list_keys(settings.app_db)

    create(at, scopes=["chat"], expiry="30d", label="claims bot ![x](http://evil.example/a.png)")
    assert not at.error
    [token] = [c.value for c in at.code]
    assert token.startswith("da-") and any("shown only this once" in w.value for w in at.warning)
    key, account = api_keys.authenticate(settings.app_db, token, "chat")
    assert account.name == "li.claims" and key.scopes == ("chat",) and (key.rpm, key.daily_tokens) == (30, 5000)
    assert key.expires and 29 * 86400 < key.expires - time.time() <= 30 * 86400
    with pytest.raises(api_keys.KeyRejected, match="may not use 'retrieve'"):
        api_keys.authenticate(settings.app_db, token, "retrieve")
    row = keys_table(at).set_index("id").loc[key.id]
    assert (row["user"], row["scopes"], row["state"], row["per minute"], row["tokens/day"]) == (
        "li.claims", "chat", "active", 30, 5000)
    assert row["label"] == "claims bot ![x](http://evil.example/a.png)" and row["last used"] == ""
    label = next(m.value for m in at.markdown if key.id in m.value and "li.claims" in m.value)
    assert "![" not in label and plain(label).endswith("claims bot ![x](http://evil.example/a.png)")  # literal

    at.run()  # any later run: the token is gone from the page (only its hash is stored)
    assert not at.code and token not in str(keys_table(at).to_dict())

    at.button(key=f"api_key_revoke_{key.id}").click().run()
    assert not at.exception, at.exception
    assert any(f"key {key.id} of li.claims revoked" in plain(s.value) for s in at.success)
    assert keys_table(at).set_index("id").loc[key.id]["state"] == "revoked"
    assert not [b for b in at.button if b.key == f"api_key_revoke_{key.id}"]  # no button for a revoked key
    with pytest.raises(api_keys.KeyRejected, match="revoked"):
        api_keys.authenticate(settings.app_db, token, "chat")

    [created] = list_events(settings.audit_db, "api_key_created")
    assert created["user"] == "root" and created["detail"] == {
        "key_id": key.id, "target": "li.claims", "scopes": ["chat"], "rpm": 30, "daily_tokens": 5000,
        "expires": key.expires}
    [revoked] = list_events(settings.audit_db, "api_key_revoked")
    assert revoked["user"] == "root" and revoked["detail"] == {"key_id": key.id, "target": "li.claims"}


def test_usage_is_listed_per_key_and_day(admin_page: dict) -> None:
    at, settings = admin_page["at"], admin_page["settings"]
    assert any("No API requests in the last 7 days." in c.value for c in at.caption)
    key, _ = api_keys.create_key(settings.app_db, "li.claims", ["chat"], None, 60, 1000, "report")
    api_keys.admit(settings.app_db, key)
    api_keys.record_tokens(settings.app_db, key, 120, cached=True)
    at.run()
    usage = next(d.value for d in at.dataframe if "refused (429)" in d.value.columns)
    [row] = usage.to_dict("records")
    assert row["key"] == key.id and row["user"] == "li.claims" and row["label"] == "report"
    assert (row["requests"], row["tokens"], row["of quota"], row["refused (429)"], row["cached"]) == (1, 120, 1000,
                                                                                                     0, 1)
    assert keys_table(at).set_index("id").loc[key.id]["last used"] != ""


def _render_answer(payload: dict) -> None:  # an AppTest script: one saved answer, drawn as the chat draws it
    from ui import answer_view

    answer_view.answer(payload, key="t")


ANSWER = {"outcome": "answer", "lead": "十日内报案 [1]", "answer": "十日内报案 [1]", "sources": [],
          "verification": {"status": "verified", "reasons": []}, "tool_calls": [], "question": "多久内报案？",
          "latency_s": 0.01, "audit_id": 42}


def test_a_cached_answer_says_so_and_an_answer_made_now_does_not() -> None:
    created = time.mktime((2026, 3, 5, 14, 7, 0, 0, 0, -1))  # local time, as the caption shows it
    cached = ANSWER | {"cached": True, "cached_from": 17,
                       "cache": {"created": created, "question": "多久内报案？", "similarity": None}}
    at = AppTest.from_function(_render_answer, args=(cached,)).run()
    assert not at.exception, at.exception
    captions = [plain(c.value) for c in at.caption]
    assert (":material/bolt: Answered from the cache (first answered 2026-03-05 14:07, turn #17); the documents it "
            "cites are unchanged since.") in captions
    assert "audit #42" in captions[-1]  # the footer stays last

    similar = cached | {"cache": {"created": created, "question": "报案期限 ![x](http://evil.example/q.png)",
                                  "similarity": 0.934}}
    at = AppTest.from_function(_render_answer, args=(similar,)).run()
    [note] = [c.value for c in at.caption if "Answered from the cache" in c.value]
    assert "![" not in note  # the earlier question is literal text
    assert plain(note).endswith("turn #17) for the question \u201c报案期限 ![x](http://evil.example/q.png)\u201d "
                                "(similarity 0.93); the documents it cites are unchanged since.")

    for payload in (ANSWER, ANSWER | {"cached": False, "cached_from": None, "cache": {}}):  # made now; saved before
        at = AppTest.from_function(_render_answer, args=(payload,)).run()
        assert not at.exception, at.exception
        assert not any("cache" in c.value for c in at.caption)
