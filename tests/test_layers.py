"""The packages' layers, read from every module's imports with ``ast``.

``categories`` (the pure core: imports nothing of ours) < ``deployment`` (settings) < ``store``
(Redis) < ``proxy_addons`` and ``admin_api`` (the two services, which never import each other)
< ``esafety`` (the command line, which nothing imports). ``bench/`` and ``tests/`` may import
anything. Every import counts, at the top of a module or inside a function, class or ``if``.

Below the command line an import of our own packages inside a function is refused too: such
lazy imports hide a cycle or an upward dependency. The one exception is the optional C
extension ``categories._urlfast``, imported where it is used so that a missing build falls
back to pure Python.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

ALLOWED: dict[str, frozenset[str]] = {
    "categories": frozenset(),
    "deployment": frozenset({"categories"}),
    "store": frozenset({"categories", "deployment"}),
    "proxy_addons": frozenset({"categories", "deployment", "store"}),
    "admin_api": frozenset({"categories", "deployment", "store"}),
    "esafety": frozenset({"categories", "deployment", "store", "proxy_addons", "admin_api"}),
}
"""Package -> the other packages of ours it may import."""

OURS = frozenset(ALLOWED)
NO_LAZY_IMPORTS = frozenset({"categories", "deployment", "store", "admin_api", "proxy_addons"})
LAZY_ALLOWED = frozenset({"categories._urlfast"})


@dataclass(frozen=True)
class Import:
    module: str
    """The importing module's file, relative to the repository."""
    line: int
    target: str
    """The imported module, absolute (``a.b`` for ``from a import b`` too)."""
    in_function: bool

    def __str__(self) -> str:
        return f"{self.module}:{self.line} imports {self.target}"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    """The absolute module a ``from ... import`` names (relative ones resolved)."""
    if node.level == 0:
        return node.module or ""
    base = module.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


class _Imports(ast.NodeVisitor):
    def __init__(self, path: Path) -> None:
        self.path = path
        self.module = _module_name(path)
        self.is_package = path.name == "__init__.py"
        self.depth = 0
        self.found: list[Import] = []

    def _function(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) -> None:
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_FunctionDef = _function
    visit_AsyncFunctionDef = _function
    visit_Lambda = _function

    def _add(self, node: ast.stmt, target: str) -> None:
        where = str(self.path.relative_to(REPO))
        self.found.append(Import(where, node.lineno, target, self.depth > 0))

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(node, alias.name)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = _resolve(node, self.module, self.is_package)
        for alias in node.names:
            # ``from admin_api import roles`` imports admin_api.roles; ``from x import name``
            # names something in x: either way the top package is what the layers check.
            self._add(node, ".".join(part for part in (base, alias.name) if part)
                      if alias.name != "*" else base)

    def visit_Call(self, node: ast.Call) -> None:
        # importlib.import_module("pkg.mod") / __import__("pkg"): imports all the same
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        if name in ("import_module", "__import__") and node.args:
            first = node.args[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                self.found.append(Import(str(self.path.relative_to(REPO)), node.lineno,
                                         first.value, self.depth > 0))
        self.generic_visit(node)


def _package_files() -> list[Path]:
    return sorted(path for package in OURS for path in (REPO / package).rglob("*.py"))


def imports_of(path: Path) -> list[Import]:
    visitor = _Imports(path)
    visitor.visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
    return visitor.found


def _all_imports() -> list[tuple[str, Import]]:
    """(importing package, import) for every import in our packages."""
    return [(path.relative_to(REPO).parts[0], found)
            for path in _package_files() for found in imports_of(path)]


def upward_imports() -> list[str]:
    wrong = []
    for package, found in _all_imports():
        target = found.target.split(".")[0]
        if target in OURS and target != package and target not in ALLOWED[package]:
            wrong.append(f"{found}: {package} may import only "
                         f"{', '.join(sorted(ALLOWED[package])) or 'nothing of ours'}")
    return wrong


def lazy_imports() -> list[str]:
    return [f"{found}: inside a function" for package, found in _all_imports()
            if package in NO_LAZY_IMPORTS and found.in_function
            and found.target.split(".")[0] in OURS
            and not any(found.target == allowed or found.target.startswith(allowed + ".")
                        for allowed in LAZY_ALLOWED)]


def test_the_scan_sees_every_package() -> None:
    """Guards the test itself: an empty scan would pass anything. (Function-level imports are
    caught in the sample below: none is left in the packages themselves.)"""
    found = _all_imports()
    assert {package for package, _ in found} == OURS
    assert any(i.target.startswith("categories.") for p, i in found if p == "deployment")


def test_the_scanner_catches_what_it_must() -> None:
    sample = REPO / "store" / "_layers_sample.py"
    assert not sample.exists()
    visitor = _Imports(sample)
    visitor.visit(ast.parse(
        "import admin_api.app\n"
        "from .. import esafety\n"
        "def f():\n"
        "    from deployment import config\n"
        "    import importlib\n"
        "    importlib.import_module('proxy_addons.runner')\n"))
    found = [(i.target, i.in_function) for i in visitor.found]
    assert ("admin_api.app", False) in found
    assert ("esafety", False) in found
    assert ("deployment.config", True) in found
    assert ("proxy_addons.runner", True) in found


def test_no_package_imports_a_layer_above_it() -> None:
    wrong = upward_imports()
    assert not wrong, "imports that point up a layer:\n" + "\n".join(wrong)


def test_no_lazy_imports_of_our_packages_below_the_command_line() -> None:
    wrong = lazy_imports()
    assert not wrong, ("function-level imports (move them to the top; a cycle they dodge "
                       "is a layering fault):\n" + "\n".join(wrong))


def test_nothing_imports_the_command_line() -> None:
    wrong = [str(found) for package, found in _all_imports()
             if package != "esafety" and found.target.split(".")[0] == "esafety"]
    assert not wrong, "\n".join(wrong)
