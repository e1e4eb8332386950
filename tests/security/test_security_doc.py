"""SECURITY.md names, for every claim, the test that proves it: each named test must exist, so a
renamed or deleted test cannot leave a claim standing on nothing."""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent.parent
REFERENCE = re.compile(r"`(?:tests/)?((?:[a-z_]+/)*test_[a-z0-9_]+\.py)?(?:::([a-z0-9_]+))?`")


def _tests_in(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {node.name for node in ast.walk(tree)
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
            and node.name.startswith("test_")}


def references(text: str) -> list[tuple[str, str | None]]:
    """(file, test or None) for every `file::test`, `file` and `::test` (which continues the
    last file named) in the text."""
    found: list[tuple[str, str | None]] = []
    current: str | None = None
    for match in REFERENCE.finditer(text):
        file, test = match.group(1), match.group(2)
        if file is None and test is None:
            continue
        if file is not None:
            current = file
        assert current is not None, f"{match.group(0)} names no test file before it"
        found.append((current, test))
    return found


def test_every_test_security_md_names_exists() -> None:
    text = (REPO / "SECURITY.md").read_text(encoding="utf-8")
    named = references(text)
    assert len(named) > 80  # the page really is built on named tests
    missing = []
    for file, test in named:
        path = REPO / "tests" / file
        if not path.is_file():
            missing.append(file)
        elif test is not None and test not in _tests_in(path):
            missing.append(f"{file}::{test}")
    assert not missing, f"SECURITY.md names tests that do not exist: {missing}"


def test_a_bare_test_name_continues_the_last_file() -> None:
    assert references("`tests/test_a.py::test_one`, `::test_two` and `test_b.py`") == [
        ("test_a.py", "test_one"), ("test_a.py", "test_two"), ("test_b.py", None)]
