from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
# a test asks what it asks afresh, also in fixtures set up before the per-test environment below; the answer cache
# is tested where it is switched on (tests/test_answer_cache.py, tests/test_api.py)
os.environ["ASSISTANT_CACHE"] = "false"
CORPUS = ROOT / "corpus"
# ASSISTANT_VECTOR_STORE=milvus runs the suite's knowledge bases on Milvus Lite (one file in each test's home)
VECTOR_STORE = os.environ.get("ASSISTANT_VECTOR_STORE")
pytest_plugins = ["tests.postgres"]  # a real PostgreSQL: fixtures, and the whole run on it with ASSISTANT_TEST_POSTGRES=1


# seconds each test module took (setup, call and teardown of its tests), for the order parallel workers take them in;
# TEST_DURATIONS_OUT=tests/module_seconds.json bash scripts/test.sh tests/ refreshes the file
MODULE_SECONDS = Path(__file__).with_name("module_seconds.json")
_took: dict[str, float] = {}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The longest modules first (a module unknown to the file counts as longest), so that with one worker per core
    (scripts/test.sh: a module per worker at a time) no long module starts last and runs alone."""
    known = json.loads(MODULE_SECONDS.read_text(encoding="utf-8")) if MODULE_SECONDS.exists() else {}
    longest = max(known.values(), default=0.0) + 1
    items.sort(key=lambda it: -known.get(it.nodeid.split("::")[0], longest))  # stable: a module's own order kept


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    module = report.nodeid.split("::")[0]
    _took[module] = _took.get(module, 0.0) + report.duration


def pytest_sessionfinish(session: pytest.Session) -> None:
    out = os.environ.get("TEST_DURATIONS_OUT")
    if out and _took and not hasattr(session.config, "workerinput"):  # the controller sees every worker's reports
        Path(out).write_text(json.dumps({m: round(t, 1) for m, t in sorted(_took.items())}, indent=1) + "\n",
                             encoding="utf-8")


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test reads the developer's ASSISTANT_* variables or .env, or writes outside tmp_path."""
    for key in list(os.environ):
        if key.startswith("ASSISTANT_"):
            monkeypatch.delenv(key)
    # a test asks what it asks afresh; the answer cache is tested where it is switched on (tests/test_answer_cache.py)
    monkeypatch.setenv("ASSISTANT_CACHE", "false")
    if VECTOR_STORE:
        monkeypatch.setenv("ASSISTANT_VECTOR_STORE", VECTOR_STORE)
    monkeypatch.chdir(tmp_path)


@pytest.fixture(autouse=True)
def _main_module_kept() -> Iterator[None]:
    """A test leaves the process's `__main__` as it found it: Streamlit's AppTest installs its page script there, and
    spawned worker processes (`ingest --workers`) would run that script first."""
    main = sys.modules["__main__"]
    yield
    sys.modules["__main__"] = main


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home")


@pytest.fixture
def docs_dir(tmp_path: Path) -> Path:
    d = tmp_path / "docs"
    d.mkdir()
    return d


@pytest.fixture(scope="session")
def chain_env(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The tiny Qwen3 with its chain adapter, knowledge base and databases (trained once per session)."""
    from tests.chain_env import build_chain_env

    return build_chain_env(tmp_path_factory.mktemp("chain"))
