"""Authentication attacks, each performed for real: password guessing from many fresh browser sessions and
from one address across accounts, weak passwords, sessions that outlive their account, a quickstart that
serves the network with published passwords; and the audit of logins and account changes."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest
from typer.testing import CliRunner

from assistant.app.users import (
    DEMO_USERS,
    FREE_FAILURES,
    FREE_FAILURES_ADDR,
    LoginThrottled,
    add_user,
    authenticate,
    ensure_demo_users,
    get_user,
    login,
    password_problem,
    remove_user,
    set_password,
    set_role,
)
from assistant.cli import app as assistant_cli
from core.audit import list_events
from core.errors import AssistantError

ROOT = Path(__file__).resolve().parent.parent
APP = str(ROOT / "ui" / "app.py")
PASSWORDS = {name: pw for name, pw, _, _ in DEMO_USERS}
GOOD = "Quiet-river-lantern-7"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A data home with the demo accounts; no model (the pages under test never load one)."""
    home = tmp_path / "home"
    ensure_demo_users(home / "app.db")
    monkeypatch.setenv("ASSISTANT_HOME", str(home))
    monkeypatch.setenv("ASSISTANT_MODEL", str(tmp_path / "no-model"))
    return home


def _session() -> AppTest:
    return AppTest.from_file(APP, default_timeout=60).run()


def _try(at: AppTest, name: str, password: str) -> AppTest:
    at.text_input(key="login_name").input(name)
    at.text_input(key="login_password").input(password)
    at.button(key="login").click().run()
    assert not at.exception, at.exception
    return at


def _login(name: str, password: str | None = None) -> AppTest:
    at = _try(_session(), name, password or PASSWORDS[name])
    assert "account" in at.session_state, [e.value for e in at.error]
    return at


# ---- password guessing ----------------------------------------------------------------------------------------


def test_fifty_guesses_from_ten_fresh_sessions_are_throttled(home: Path) -> None:
    """The attack: a new browser session for every few guesses (the old lockout lived in the session)."""
    outcomes = []
    for _ in range(10):
        at = _session()  # a fresh session, as a new tab or a script would open
        for i in range(5):
            _try(at, "admin", f"guess-number-{i}")
            outcomes.append(at.error[0].value)
    wrong = [o for o in outcomes if o == "Wrong user name or password."]
    throttled = [o for o in outcomes if o.startswith("Too many failed attempts")]
    assert len(wrong) == FREE_FAILURES and len(throttled) == 50 - FREE_FAILURES
    # even the right password waits, from yet another session: the guesser learns nothing while locked
    at = _try(_session(), "admin", PASSWORDS["admin"])
    assert at.error[0].value.startswith("Too many failed attempts") and "account" not in at.session_state
    # another account is not locked by the attack on this one
    assert "account" in _try(_session(), "li.claims", PASSWORDS["li.claims"]).session_state
    events = list_events(home / "audit.db", limit=500)
    assert sum(e["event"] == "login_failed" and e["user"] == "admin" for e in events) == FREE_FAILURES
    assert sum(e["event"] == "login_throttled" for e in events) == 50 - FREE_FAILURES + 1
    assert [e["user"] for e in events if e["event"] == "login"] == ["li.claims"]


def test_backoff_grows_and_survives_in_the_database(tmp_path: Path) -> None:
    db = tmp_path / "app.db"
    add_user(db, "li", GOOD, "claims", "claims")
    t = 1_000_000.0
    for i in range(FREE_FAILURES):
        assert login(db, "li", f"wrong-guess-{i}", "10.0.0.7", now=t + i) is None
    with pytest.raises(LoginThrottled) as locked:
        login(db, "li", GOOD, "10.0.0.7", now=t + FREE_FAILURES)
    assert 55 <= locked.value.wait_s <= 60
    t += FREE_FAILURES + 61  # the first lock is over: one more wrong guess locks for twice as long
    assert login(db, "li", "wrong-again-1", "10.0.0.8", now=t) is None
    with pytest.raises(LoginThrottled) as locked:
        login(db, "li", GOOD, "10.0.0.9", now=t + 1)  # a new address does not help either
    assert 115 <= locked.value.wait_s <= 120
    account = login(db, "li", GOOD, "10.0.0.9", now=t + 121)
    assert account is not None and account.name == "li"
    assert login(db, "li", "wrong-after-success", now=t + 122) is None  # a success starts the count afresh
    assert login(db, "li", GOOD, now=t + 123) is not None


def test_one_address_spraying_many_accounts_is_throttled(tmp_path: Path) -> None:
    """The attack: a few guesses on each of many accounts stays under every account's limit."""
    db = tmp_path / "app.db"
    names = [f"staff{i:02d}" for i in range(FREE_FAILURES_ADDR + 2)]
    for n in names:
        add_user(db, n, GOOD, "staff", "sales")
    t = 2_000_000.0
    for i, n in enumerate(names[:FREE_FAILURES_ADDR]):
        assert login(db, n, "Summer-2026-guess", "203.0.113.5", now=t + i) is None
    with pytest.raises(LoginThrottled):
        login(db, names[-1], GOOD, "203.0.113.5", now=t + 30)
    assert login(db, names[-1], GOOD, "198.51.100.1", now=t + 31) is not None  # other clients go on


# ---- password rules --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("password, problem", [
    ("Short-1", "too short"),
    ("password1234", "common"),
    ("Dragon2026!!", "common"),
    ("qwertyuiop", "common"),
    ("zhao.finance-2026", "user name"),
])
def test_weak_passwords_are_refused(tmp_path: Path, password: str, problem: str) -> None:
    db = tmp_path / "app.db"
    assert problem in (password_problem("zhao.finance", password) or "")
    with pytest.raises(AssistantError, match=problem):
        add_user(db, "zhao.finance", password, "finance", "finance")
    assert get_user(db, "zhao.finance") is None
    add_user(db, "zhao.finance", GOOD, "finance", "finance")
    with pytest.raises(AssistantError, match=problem):
        set_password(db, "zhao.finance", password)
    assert authenticate(db, "zhao.finance", GOOD) is not None
    r = CliRunner().invoke(assistant_cli, ["users", "add", "qian", "--password", password.replace("zhao.finance", "qian"),
                                           "--home", str(tmp_path / "h2")])
    assert r.exit_code == 2 and "refused" in r.output


def test_roles_and_departments_are_case_insensitive(tmp_path: Path) -> None:
    db = tmp_path / "app.db"
    acc = add_user(db, "hr.li", GOOD, " Staff", "HR")
    assert (acc.role, acc.department) == ("staff", "hr") and get_user(db, "hr.li").department == "hr"
    assert set_role(db, "hr.li", "CLAIMS", "Claims").department == "claims"
    from core.settings import Settings

    assert Settings(kb_access={"people": ["HR", " Legal"]}).kb_access == {"people": ["hr", "legal"]}


# ---- sessions re-checked -------------------------------------------------------------------------------------


def test_a_removed_user_loses_the_open_session(home: Path) -> None:
    db = home / "app.db"
    at = _login("wang.staff")
    assert at.sidebar.markdown and "wang.staff" in at.sidebar.markdown[0].value
    remove_user(db, "wang.staff")
    at.run()  # the next interaction
    assert not at.exception, at.exception
    assert "account" not in at.session_state and at.text_input(key="login_name")
    assert "removed" in at.warning[0].value


def test_a_demoted_admin_loses_the_admin_pages(home: Path) -> None:
    db = home / "app.db"
    add_user(db, "second.admin", GOOD, "admin", "operations")  # so that admin may be demoted
    at = _login("admin")
    assert ":material/group: Users" in at.sidebar.radio(key="page").options
    at.sidebar.radio(key="page").set_value("Users").run()
    assert at.header[0].value == "Users"
    set_role(db, "admin", "staff", "operations")
    at.run()
    assert "account" not in at.session_state and not at.sidebar.radio and not at.header
    assert "role or department changed" in at.warning[0].value
    at = _login("admin")  # signing in again gives the staff view
    assert not at.sidebar.radio and at.session_state["account"].role == "staff"


# ---- quickstart -----------------------------------------------------------------------------------------------


def test_demo_accounts_get_random_passwords_and_the_admin_must_change_its(home: Path, tmp_path: Path) -> None:
    run = CliRunner().invoke
    h = ["--home", str(tmp_path / "demo")]
    r = run(assistant_cli, ["users", "demo", *h])
    assert r.exit_code == 0, r.output
    for _name, published, _, _ in DEMO_USERS:
        assert published not in r.output
    shown = {line.split()[0]: line.split()[2] for line in r.output.splitlines() if " / " in line}
    db = tmp_path / "demo" / "app.db"
    assert set(shown) == set(PASSWORDS) and all(authenticate(db, n, p) for n, p in shown.items())
    assert get_user(db, "admin").must_change and not get_user(db, "li.claims").must_change
    again = run(assistant_cli, ["users", "demo", *h]).output
    assert not any(p in again for p in shown.values())  # printed once only
    assert {e["detail"]["target"] for e in list_events(tmp_path / "demo" / "audit.db", "user_added")} == set(PASSWORDS)

    # the UI: the admin's first login opens only the password change, which applies the rules
    os.environ["ASSISTANT_HOME"] = str(tmp_path / "demo")  # monkeypatch (home fixture) restores it
    at = _login("admin", shown["admin"])
    assert at.title[0].value == "Choose a new password" and not at.sidebar.radio
    at.run()  # still there on the next step
    assert at.title[0].value == "Choose a new password"
    for pw in ("password1234", shown["admin"]):
        at.text_input(key="new_password").input(pw)
        at.text_input(key="new_password_again").input(pw)
        at.button(key="change_password").click().run()
        assert at.error and at.title[0].value == "Choose a new password"
    at.text_input(key="new_password").input(GOOD)
    at.text_input(key="new_password_again").input(GOOD)
    at.button(key="change_password").click().run()
    assert ":material/group: Users" in at.sidebar.radio(key="page").options
    assert not get_user(db, "admin").must_change and authenticate(db, "admin", GOOD)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _listening_addresses(port: int) -> set[str]:
    """The local addresses a TCP socket listens on at `port`, read from the kernel's tables (/proc/net/tcp*):
    no packet leaves this machine, not even to its own network address."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            addr, _, hexport = local.partition(":")
            if state == "0A" and int(hexport, 16) == port:  # 0A = LISTEN
                found.add(addr)
    return found


LOOPBACK = {"0100007F", "00000000000000000000000001000000"}  # 127.0.0.1 and ::1 as the kernel writes them


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def test_the_ui_serves_this_machine_only_by_default(home: Path, tmp_path: Path) -> None:
    """The attack would connect from another host: the server must listen on loopback only."""
    if not Path("/proc/net/tcp").exists():
        pytest.skip("no /proc/net/tcp to read listening sockets from")
    port = _free_port()
    log = open(tmp_path / "streamlit.log", "wb")  # noqa: SIM115 (closed below)
    # the project's own .streamlit/config.toml, read from the working directory as `streamlit run` does
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", APP, "--server.port", str(port)],
                            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ))
    try:
        deadline = time.time() + 60
        while not _reachable("127.0.0.1", port):
            assert proc.poll() is None and time.time() < deadline, (tmp_path / "streamlit.log").read_text()
            time.sleep(0.3)
        # reachable from another host only if bound to a non-loopback address (0.0.0.0 / :: included)
        listening = _listening_addresses(port)
        assert listening and listening <= LOOPBACK, listening
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        log.close()


def _fake_venv(tmp_path: Path) -> Path:
    """The quickstart script with its setup and tools replaced by recorders (the real ones take minutes)."""
    root = tmp_path / "qs"
    (root / "scripts").mkdir(parents=True)
    shutil.copy(ROOT / "scripts" / "quickstart.sh", root / "scripts" / "quickstart.sh")
    (root / "scripts" / "setup.sh").write_text("exit 0\n")
    (root / ".venv" / "bin").mkdir(parents=True)
    for tool in ("ingest", "assistant", "streamlit"):
        f = root / ".venv" / "bin" / tool
        f.write_text(f'#!/bin/sh\necho "{tool} $*" >> "$(dirname "$0")/../../calls.txt"\n')
        f.chmod(0o755)
    return root


@pytest.mark.parametrize("address, warned", [(None, False), ("0.0.0.0", True)])
def test_quickstart_binds_loopback_unless_told(tmp_path: Path, address: str | None, warned: bool) -> None:
    root = _fake_venv(tmp_path)
    env = {k: v for k, v in os.environ.items() if k != "ASSISTANT_UI_ADDRESS"}
    if address:
        env["ASSISTANT_UI_ADDRESS"] = address
    r = subprocess.run(["bash", str(root / "scripts" / "quickstart.sh")], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    calls = (root / "calls.txt").read_text().splitlines()
    serve = next(c for c in calls if c.startswith("streamlit run"))
    assert f"--server.address {address or '127.0.0.1'}" in serve
    assert ("WARNING" in r.stdout) == warned
    assert "assistant users demo" in calls and "--demo-passwords" not in " ".join(calls)
    r = subprocess.run(["bash", str(root / "scripts" / "quickstart.sh"), "--demo-passwords"], env=env,
                       capture_output=True, text=True)
    assert "assistant users demo --demo-passwords" in (root / "calls.txt").read_text()


# ---- audit of account changes ---------------------------------------------------------------------------------


def test_account_changes_are_audited(home: Path) -> None:
    run = CliRunner().invoke
    h = ["--home", str(home)]
    assert run(assistant_cli, ["users", "add", "zhao", "--role", "Finance", "--department", "FIN", "--password",
                               GOOD, *h]).exit_code == 0
    assert run(assistant_cli, ["users", "role", "zhao", "--role", "claims", "--department", "claims", *h]).exit_code == 0
    assert run(assistant_cli, ["users", "remove", "zhao", *h]).exit_code == 0
    events = list_events(home / "audit.db")[::-1]
    assert [(e["event"], e["detail"]["target"]) for e in events] == [
        ("user_added", "zhao"), ("user_role_changed", "zhao"), ("user_removed", "zhao")]
    assert events[0]["detail"]["role"] == "finance" and events[0]["detail"]["department"] == "fin"
    assert events[1]["detail"]["was_role"] == "finance" and events[0]["user"].startswith("cli:")

    at = _login("admin")  # the admin page: add (rules applied, first login must change), change role, remove
    at.sidebar.radio(key="page").set_value("Users").run()
    at.text_input(key="new_user_name").input("qian.hr")
    at.text_input(key="new_user_password").input("password2026")
    at.text_input(key="new_user_dept").input("HR")
    at.button(key="add_user").click().run()
    assert "common" in at.error[0].value and get_user(home / "app.db", "qian.hr") is None
    at.text_input(key="new_user_password").input(GOOD)
    at.button(key="add_user").click().run()
    qian = get_user(home / "app.db", "qian.hr")
    assert qian.department == "hr" and qian.must_change
    at.selectbox(key="role_user_name").set_value("qian.hr").run()
    at.selectbox(key="role_user_role").set_value("claims")
    at.text_input(key="role_user_dept").input("claims")
    at.button(key="role_user").click().run()
    assert get_user(home / "app.db", "qian.hr").role == "claims"
    at.selectbox(key="remove_user_name").set_value("qian.hr").run()
    at.button(key="remove_user").click().run()
    assert get_user(home / "app.db", "qian.hr") is None
    ui_events = [(e["event"], e["user"], e["detail"].get("target")) for e in list_events(home / "audit.db")[:4]][::-1]
    assert ui_events == [("login", "admin", None), ("user_added", "admin", "qian.hr"),
                         ("user_role_changed", "admin", "qian.hr"), ("user_removed", "admin", "qian.hr")]
