"""A real PostgreSQL for the tests (a pytest plugin, loaded by conftest.py).

`postgres_server` (session): a throwaway server (core/pg_server.py; skipped where PostgreSQL is not installed).
`postgres_url`: a fresh empty database of it for one test.
With ASSISTANT_TEST_POSTGRES=1 every data home the tests use keeps its app state (users, conversations, feedback,
keys, jobs, audit) in a PostgreSQL database of its own: `ASSISTANT_TEST_POSTGRES=1 pytest tests/test_users.py`.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from core import db, pg_server

ON_POSTGRES = os.environ.get("ASSISTANT_TEST_POSTGRES") == "1"  # read before the per-test environment is cleared
_numbers = itertools.count()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[pg_server.Server]:
    if not (pg_server.find_bin("initdb") and pg_server.find_bin("pg_ctl")):
        if ON_POSTGRES:
            pytest.fail("ASSISTANT_TEST_POSTGRES=1 but PostgreSQL is not installed (apt-get install postgresql)")
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")
    server = pg_server.start()
    yield server
    from core import pg

    pg.close_pools()
    server.stop()


@pytest.fixture
def postgres_url(postgres_server: pg_server.Server) -> Iterator[str]:
    url = postgres_server.create_database(f"t{os.getpid()}_{next(_numbers)}")
    yield url
    from core import pg

    pg.close_pools()  # each test's database has its own pool: give its connections back


@pytest.fixture(scope="session", autouse=True)
def _app_state_on_postgres(request: pytest.FixtureRequest) -> Iterator[None]:
    """ASSISTANT_TEST_POSTGRES=1: the stores of every data home the tests use (session and module fixtures' too)
    in a database of their own on one server; jobs started by the tests are handed its URL by the app itself."""
    if not ON_POSTGRES:
        yield
        return
    server: pg_server.Server = request.getfixturevalue("postgres_server")
    made: dict[str, str] = {}
    lock = threading.Lock()

    def database_for(home: Path) -> str:
        name = "h" + hashlib.sha256(str(home).encode()).hexdigest()[:24]
        with lock:
            if name not in made:
                made[name] = server.create_database(name)
            return made[name]

    db.route_unbound(database_for)
    try:
        yield
    finally:
        db.route_unbound(None)


@pytest.fixture(autouse=True)
def _close_pools_after_each_test() -> Iterator[None]:
    yield
    if ON_POSTGRES:  # each data home has its own database and pool: give the connections back (reopened on use)
        from core import pg

        pg.close_pools()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "sqlite_only: reads or tampers with a SQLite file itself (not run on "
                            "PostgreSQL with ASSISTANT_TEST_POSTGRES=1)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if ON_POSTGRES:
        skip = pytest.mark.skip(reason="reads the SQLite file itself; its PostgreSQL twin is in test_postgres_state")
        for item in items:
            if item.get_closest_marker("sqlite_only"):
                item.add_marker(skip)
