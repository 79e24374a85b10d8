"""The shape of the code, checked: the layer contracts themselves are import-linter's
(pyproject.toml, run by scripts/test.sh); these are the rules it cannot express."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "mlopsctl"
INIT_CODE_LINES = 60
# Imports of mlopsctl's own modules written inside functions. Most keep heavy libraries off the
# start-up path (a service module that imports pandas at its top); the layer and cycle contracts
# see them all the same. The ceiling only stops the count from creeping back up.
MAX_FUNCTION_LEVEL_IMPORTS = 315


def _modules() -> list[tuple[str, Path, ast.Module]]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts.pop()
        found.append((".".join(parts), path, ast.parse(path.read_text(), str(path))))
    return found


def _top(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2])


def _absolute(importer: str, node: ast.ImportFrom, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    base = importer.split(".")
    if not is_package:
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def test_no_private_name_is_imported_from_another_package() -> None:
    offences = []
    for module, path, tree in _modules():
        for node in ast.walk(tree):
            if not isinstance(node, ast.ImportFrom):
                continue
            source = _absolute(module, node, path.name == "__init__.py")
            if not source.startswith("mlopsctl.") or _top(source) == _top(module):
                continue
            private = [a.name for a in node.names if a.name.startswith("_") and a.name[:2] != "__"]
            if private or any(p.startswith("_") for p in source.split(".")[1:]):
                offences.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {source}")
    assert offences == [], "private names imported across packages:\n" + "\n".join(offences)


def _code_lines(tree: ast.Module) -> int:
    lines = 0
    for index, node in enumerate(tree.body):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            continue
        if index == 0 and isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            continue  # the docstring
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if all(isinstance(t, ast.Name) and t.id == "__all__" for t in targets):
                continue
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        assert node.end_lineno is not None
        lines += node.end_lineno - node.lineno + 1
    return lines


@pytest.mark.parametrize(
    "path", sorted(PACKAGE.rglob("__init__.py")), ids=lambda p: str(p.relative_to(PACKAGE))
)
def test_package_init_only_reexports(path: Path) -> None:
    lines = _code_lines(ast.parse(path.read_text()))
    assert lines <= INIT_CODE_LINES, f"{path} holds {lines} lines of code; move them to a module"


def test_function_level_imports_of_own_modules_do_not_grow() -> None:
    seen: set[int] = set()  # an import in a nested function is counted once
    count = 0
    for _module, _path, tree in _modules():
        for func in ast.walk(tree):
            if not isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(func):
                if isinstance(node, ast.ImportFrom):
                    names = [node.module or ""]
                elif isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                else:
                    continue
                if id(node) not in seen:
                    seen.add(id(node))
                    count += any(name.startswith("mlopsctl") for name in names)
    assert count <= MAX_FUNCTION_LEVEL_IMPORTS, (
        f"{count} imports of mlopsctl modules inside functions (ceiling "
        f"{MAX_FUNCTION_LEVEL_IMPORTS}): import cheap modules at the top of the file"
    )
