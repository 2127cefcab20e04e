"""Logins and passwords, round two (issue 29): account names told apart by login timing, and weak passwords that
passed the first rules (ten spaces, one letter ten times, a word twice, the user name in full-width letters).
Real accounts in a real SQLite database, real scrypt, the real app."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from assistant.app.users import (
    DEMO_USERS,
    PASSWORD_RULE,
    add_user,
    ensure_demo_users,
    get_user,
    login,
    password_problem,
    set_password,
)
from core.errors import AssistantError

APP = str(Path(__file__).resolve().parent.parent / "ui" / "app.py")
GOOD = "Quiet-river-lantern-7"


def test_unknown_names_and_wrong_passwords_take_the_same_time(tmp_path: Path) -> None:
    """Before: 126 ms for an unknown name (two scrypts) vs 58 ms for a wrong password, so names could be listed."""
    db = tmp_path / "app.db"
    add_user(db, "li.claims", GOOD, "claims", "claims")
    login(db, "warm-up", "x", "192.0.2.1", now=0.0)  # the one dummy hash is made on first use
    times: dict[str, list[float]] = {"unknown": [], "wrong": []}
    t = 1_000_000.0
    for i in range(20):
        for kind, name in (("unknown", f"no.such.user{i}"), ("wrong", "li.claims")):
            t += 200_000  # a day apart: the throttle never answers for the check
            t0 = time.perf_counter()
            assert login(db, name, f"Guess-number-{i}", "192.0.2.1", now=t) is None
            times[kind].append(time.perf_counter() - t0)
    # the fastest of each: other programs on the machine only ever add time to a measurement
    unknown, wrong = min(times["unknown"]), min(times["wrong"])
    assert abs(unknown - wrong) / wrong < 0.10, (unknown, wrong)


@pytest.mark.parametrize("password, problem", [
    (" " * 10, "only whitespace"),
    ("\t \u3000 " * 3, "only whitespace"),
    ("aaaaaaaaaa", "too few characters"),
    ("abababababab", "too few characters"),
    ("passwordpassword", "'password' repeated"),
    ("Ab3$xAb3$xAb3$x", "'ab3$x' repeated"),
    ("ｚｈａｏ．ｆｉｎａｎｃｅ-2026", "user name"),  # full-width letters: NFKC makes them the name
    ("ZHAO-FINANCE-Quiet", "user name"),  # the name without its dot, in capitals
    ("Qwerty-2026-abc!", "keyboard runs"),
    ("1qaz2wsx3edc4rfv", "keyboard runs"),
    ("Welcome-Admin-2025", "keyboard runs"),
])
def test_weak_passwords_of_round_two_are_refused(tmp_path: Path, password: str, problem: str) -> None:
    db = tmp_path / "app.db"
    assert problem in (password_problem("zhao.finance", password) or ""), password_problem("zhao.finance", password)
    with pytest.raises(AssistantError, match="refused") as info:
        add_user(db, "zhao.finance", password, "finance", "finance")
    assert PASSWORD_RULE in str(info.value)  # the message says what would pass
    assert get_user(db, "zhao.finance") is None
    add_user(db, "zhao.finance", GOOD, "finance", "finance")
    with pytest.raises(AssistantError, match="refused"):
        set_password(db, "zhao.finance", password)


@pytest.mark.parametrize("password", [GOOD, "Quiet-Harbour-Lantern-2026", "finance-pass-1", "correct horse battery",
                                      "operations-demo-2026", "海上明月共潮生-2026"])
def test_passphrases_pass(password: str) -> None:
    assert password_problem("zhao.finance", password) is None


def test_the_rule_is_shown_where_passwords_are_chosen(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    ensure_demo_users(home / "app.db", admin_must_change=True)
    monkeypatch.setenv("ASSISTANT_HOME", str(home))
    monkeypatch.setenv("ASSISTANT_MODEL", str(tmp_path / "no-model"))
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.text_input(key="login_name").input("admin")
    at.text_input(key="login_password").input(next(p for n, p, _, _ in DEMO_USERS if n == "admin"))
    at.button(key="login").click().run()
    assert PASSWORD_RULE in [c.value for c in at.caption]  # the forced change of a first login
    at.text_input(key="new_password").input(" " * 12)
    at.text_input(key="new_password_again").input(" " * 12)
    at.button(key="change_password").click().run()
    assert "only whitespace" in at.error[0].value and PASSWORD_RULE in at.error[0].value
    at.text_input(key="new_password").input(GOOD)
    at.text_input(key="new_password_again").input(GOOD)
    at.button(key="change_password").click().run()
    at.sidebar.radio(key="page").set_value("Users").run()
    assert not at.exception, at.exception
    assert PASSWORD_RULE in [c.value for c in at.caption]  # the admin's form for new accounts
