"""A real PostgreSQL for the tests (a pytest plugin, loaded by conftest.py).

`postgres_server` (session): a throwaway server (core/pg_server.py; skipped where PostgreSQL is not installed).
`postgres_url`: a fresh empty database of it for one test.
With ASSISTANT_TEST_POSTGRES=1 every test keeps its app state (users, conversations, feedback, keys, jobs, audit)
in a fresh PostgreSQL database, whatever data home it uses: `ASSISTANT_TEST_POSTGRES=1 pytest tests/test_users.py`.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator

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


@pytest.fixture(autouse=True)
def _app_state_on_postgres(request: pytest.FixtureRequest, _isolated_env: None) -> Iterator[None]:
    """ASSISTANT_TEST_POSTGRES=1: every data home of the test (and its subprocesses) on one fresh database."""
    if not ON_POSTGRES or request.node.get_closest_marker("sqlite_only"):
        yield
        return
    url = request.getfixturevalue("postgres_url")
    db.use("*", url)
    mp = request.getfixturevalue("monkeypatch")
    mp.setenv("ASSISTANT_DATABASE_URL", url)
    try:
        yield
    finally:
        db.use("*", None)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "sqlite_only: reads or tampers with a SQLite file itself (not run on "
                            "PostgreSQL with ASSISTANT_TEST_POSTGRES=1)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if ON_POSTGRES:
        skip = pytest.mark.skip(reason="reads the SQLite file itself; its PostgreSQL twin is in test_postgres_state")
        for item in items:
            if item.get_closest_marker("sqlite_only"):
                item.add_marker(skip)
