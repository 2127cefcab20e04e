"""Accounts: salted scrypt hashes, validation with clear messages, the `assistant users` CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from assistant.app.db import connect
from assistant.app.users import add_user, authenticate, hash_password, remove_user, verify_password
from assistant.cli import app
from core.errors import AssistantError


def test_hash_is_salted_and_verifies() -> None:
    a, b = hash_password("correct horse"), hash_password("correct horse")
    assert a != b and a.startswith("scrypt$16384$8$1$")  # a fresh salt each time
    assert verify_password("correct horse", a) and not verify_password("correct horsE", a)
    assert not verify_password("x", "plain-text-password") and not verify_password("x", "md5$abc")


def test_accounts_and_rules(tmp_path: Path) -> None:
    db = tmp_path / "app.db"
    add_user(db, "admin", "ops-desk-pass-1", "admin", "operations")
    add_user(db, "li", "claims-pass-1", "claims", "claims")
    assert authenticate(db, "li", "claims-pass-1").user.role == "claims"
    assert authenticate(db, "li", "wrong-pass-1") is None and authenticate(db, "nobody", "whatever-1") is None
    with pytest.raises(AssistantError, match="exists"):
        add_user(db, "li", "another-pass", "staff")
    with pytest.raises(AssistantError, match="too short"):
        add_user(db, "zhao", "short", "staff")
    with pytest.raises(AssistantError, match="role 'boss!'"):
        add_user(db, "zhao", "long-enough-1", "Boss!")
    with pytest.raises(AssistantError, match="last admin"):
        remove_user(db, "admin")
    assert authenticate(db, "admin", "ops-desk-pass-1") is not None  # the refused removal changed nothing
    with connect(db) as conn:  # SQLite's file or PostgreSQL's schema, whichever the test runs on
        assert "claims-pass-1" not in json.dumps([list(r) for r in conn.execute("SELECT * FROM users").fetchall()])


def test_users_cli(tmp_path: Path) -> None:
    run = CliRunner().invoke
    home = ["--home", str(tmp_path / "home")]
    r = run(app, ["users", "add", "admin", "--role", "admin", "--department", "ops", *home],
            input="ops-desk-pass-1\nops-desk-pass-1\n")
    assert r.exit_code == 0 and "user admin (admin, ops) saved" in r.output
    r = run(app, ["users", "add", "wang", *home], env={"ASSISTANT_NEW_PASSWORD": "staff-pass-1"})
    assert r.exit_code == 0
    r = run(app, ["users", "add", "wang", "--password", "staff-pass-2", *home])
    assert r.exit_code == 2 and "exists; remove it first or use --replace" in r.output
    r = run(app, ["users", "list", "--json", *home])
    assert [(u["name"], u["role"]) for u in json.loads(r.output)] == [("admin", "admin"), ("wang", "staff")]
    assert "password" not in r.output
    r = run(app, ["users", "remove", "ghost", *home])
    assert r.exit_code == 2 and "no user 'ghost'" in r.output
    assert run(app, ["users", "remove", "wang", *home]).exit_code == 0
    r = run(app, ["users", "demo", "--demo-passwords", *home])
    assert r.exit_code == 0 and "wang.staff  / staff-demo-2026" in r.output and "(new)" in r.output
    assert "admin       / (exists; password not shown)" in r.output  # an existing password is never printed
