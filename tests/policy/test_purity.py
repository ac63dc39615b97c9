"""The policy package stays pure: no I/O libraries, no clock, no environment."""

import ast
from pathlib import Path

import pytest

import workers.policy

PACKAGE = Path(workers.policy.__file__).parent
MODULES = sorted(PACKAGE.glob("*.py"))
ALLOWED_IMPORTS = {
    "__future__", "collections", "dataclasses", "datetime", "difflib", "functools", "hashlib",
    "re", "string", "typing", "zoneinfo", "pydantic", "yaml", "workers",
}
FORBIDDEN_METHODS = {"now", "utcnow", "today", "getenv", "sleep", "monotonic", "perf_counter"}
FORBIDDEN_FUNCTIONS = {"open", "input", "print", "getenv"}


def _imports(tree):
    """Top-level names of every module a file imports."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            yield (node.module or "").split(".")[0]


@pytest.mark.parametrize("path", MODULES, ids=[p.name for p in MODULES])
def test_module_imports_only_pure_libraries(path):
    """No Flask, RQ, database, HTTP, os or socket in the policy package."""
    assert set(_imports(ast.parse(path.read_text()))) <= ALLOWED_IMPORTS


@pytest.mark.parametrize("path", MODULES, ids=[p.name for p in MODULES])
def test_module_reads_no_clock_or_environment(path):
    """Time is a parameter: nothing calls now(), today(), time.time(), open() or getenv()."""
    calls = [node.func for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.Call)]
    methods = {f.attr for f in calls if isinstance(f, ast.Attribute)}
    functions = {f.id for f in calls if isinstance(f, ast.Name)}
    dotted = {f"{getattr(f.value, 'id', '')}.{f.attr}" for f in calls if isinstance(f, ast.Attribute)}
    assert not methods & FORBIDDEN_METHODS
    assert not functions & FORBIDDEN_FUNCTIONS
    assert "time.time" not in dotted


def test_package_docstring_says_it_does_no_io():
    """The package says what it promises."""
    assert "no I/O" in (workers.policy.__doc__ or "")
