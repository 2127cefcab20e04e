"""The floor plan: each package imports only from the packages below it (read from the source, lazy imports too)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROJECT = {"core", "ingest", "finetune", "assistant", "ui", "tests", "bench", "scripts"}
# what each package may import from the project (itself always): the floors of ../shared/ARCHITECTURE.md
# (core 1, ingest 2, finetune 3, assistant 4, ui 5), except that the chain does not need training code
ALLOWED = {
    "core": set(),
    "ingest": {"core"},
    "finetune": {"core", "ingest"},  # retraining reads the knowledge bases' manifests: who may read a passage
    "assistant": {"core", "ingest"},
    "ui": {"core", "ingest", "finetune", "assistant"},
    "bench": {"core", "ingest", "finetune", "assistant", "ui"},
    "scripts": {"core", "ingest", "finetune", "assistant", "ui"},
}


def imported_packages(path: Path) -> set[tuple[str, int]]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        for name in names:
            top = name.split(".")[0]
            if top in PROJECT:
                found.add((top, node.lineno))
    return found


def test_packages_only_import_downwards() -> None:
    problems = []
    for package, allowed in ALLOWED.items():
        for path in sorted((ROOT / package).rglob("*.py")):
            if ROOT / "bench" / "results" in path.parents:  # benchmark outputs (other commits' worktrees)
                continue
            for top, line in imported_packages(path):
                if top != package and top not in allowed:
                    problems.append(f"{path.relative_to(ROOT)}:{line} imports {top} (allowed: {sorted(allowed)})")
    assert not problems, "imports that run up the floor plan:\n" + "\n".join(problems)


def test_checker_sees_a_violation(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from assistant.chain import build_assistant\n", encoding="utf-8")
    assert imported_packages(bad) == {("assistant", 2)}
