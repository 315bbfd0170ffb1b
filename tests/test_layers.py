"""
The package's modules import each other in one direction only: from the
engine, the commands and the admin down to the settings, the keys and the
SQL. The one edge back up is Django's own lazy pair, the model naming its
session store (Session.get_session_store_class()).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "django_sql_sessions"
LAZY_EDGES = {
    ("django_sql_sessions.base_session", "django_sql_sessions.backends.db"),
    # The same pair for the storage layer: storage.table() is the cached
    # table (which wraps the plain one) when the cached engine is configured.
    ("django_sql_sessions.storage", "django_sql_sessions.caching"),
    # Type hints only: the session model's class.
    ("django_sql_sessions.storage", "django_sql_sessions.base_session"),
}
# Imports nothing of the package, or only what is listed.
FOUNDATIONS = {
    "django_sql_sessions.conf": set(),
    "django_sql_sessions.keys": set(),
    "django_sql_sessions.exceptions": set(),
    "django_sql_sessions.sql": set(),
    "django_sql_sessions.dialects": {"django_sql_sessions.keys", "django_sql_sessions.sql"},
    # What a vendor's error means is its dialect's; what is raised in its
    # place, exceptions.py's; whether to prepare, a setting's.
    "django_sql_sessions.cursors": {
        "django_sql_sessions.conf",
        "django_sql_sessions.dialects",
        "django_sql_sessions.exceptions",
        "django_sql_sessions.sql",
    },
    # The data column's field seals and opens what it stores.
    "django_sql_sessions.fields": {
        "django_sql_sessions.dialects",
        "django_sql_sessions.encryption",
        "django_sql_sessions.keys",
    },
    "django_sql_sessions.encryption": {"django_sql_sessions.conf"},
}
# The one module that may ask which vendor, or which flavour of a vendor's
# server, a connection is (issue 20): every other module asks its dialect.
DIALECTS = "django_sql_sessions.dialects"
VENDOR_NAMES = {"sqlite", "postgresql", "cockroachdb", "mysql", "mariadb", "microsoft"}
# A string that the package sends as SQL, rather than one it shows.
SQL_TEXT = re.compile(r"\s*(SELECT|SHOW|SET|UPDATE|INSERT|DELETE)\b", re.IGNORECASE)


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_imports(path: Path) -> set[str]:
    """The package's modules that this file imports, anywhere in it."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: relative import"
            base = node.module or ""
            if base == "django_sql_sessions":
                found.update(f"{base}.{alias.name}" for alias in node.names)
            elif base.startswith("django_sql_sessions."):
                found.add(base)
        elif isinstance(node, ast.Import):
            found.update(
                alias.name for alias in node.names if alias.name.startswith("django_sql_sessions")
            )
    return found


def graph() -> dict[str, set[str]]:
    modules = {
        module_name(path): path for path in PACKAGE.rglob("*.py") if "migrations" not in path.parts
    }
    return {
        name: {target for target in package_imports(path) if target in modules} - {name}
        for name, path in modules.items()
    }


def test_the_graph_is_read() -> None:
    edges = graph()
    assert "django_sql_sessions.sql" in edges["django_sql_sessions.backends.db"]
    assert ("django_sql_sessions.base_session", "django_sql_sessions.backends.db") in {
        (source, target) for source, targets in edges.items() for target in targets
    }


@pytest.mark.parametrize("module", sorted(FOUNDATIONS))
def test_foundations_import_nothing_above_them(module: str) -> None:
    assert graph()[module] == FOUNDATIONS[module]


def test_no_import_circle() -> None:
    edges = graph()
    for source, target in LAZY_EDGES:
        edges[source].discard(target)
    visiting: list[str] = []
    done: set[str] = set()

    def visit(module: str) -> None:
        if module in done:
            return
        assert module not in visiting, " -> ".join([*visiting, module])
        visiting.append(module)
        for target in sorted(edges[module]):
            visit(target)
        visiting.pop()
        done.add(module)

    for module in sorted(edges):
        visit(module)


@pytest.mark.parametrize(("source", "target"), sorted(LAZY_EDGES))
def test_the_lazy_edges_are_inside_functions(source: str, target: str) -> None:
    # At module level they would be real circles at import time.
    path = PACKAGE / (source.removeprefix("django_sql_sessions.").replace(".", "/") + ".py")
    tree = ast.parse(path.read_text())
    top_level = {
        node.module for node in tree.body if isinstance(node, ast.ImportFrom) and node.module
    }
    top_level |= {
        f"{node.module}.{alias.name}"
        for node in tree.body
        if isinstance(node, ast.ImportFrom) and node.module
        for alias in node.names
    }
    assert target not in top_level


def vendor_tests(source: str) -> list[str]:
    """
    Where source asks which vendor a connection is: a comparison or a lookup
    with a `.vendor` (or a variable named vendor) or a vendor's name,
    `mysql_is_mariadb`, and Galera's wsrep variables in a name or in SQL.
    """
    tree = ast.parse(source)
    found: list[str] = []

    def vendorish(node: ast.AST) -> bool:
        return (
            (isinstance(node, ast.Attribute) and node.attr == "vendor")
            or (isinstance(node, ast.Name) and node.id == "vendor")
            or (isinstance(node, ast.Constant) and node.value in VENDOR_NAMES)
        )

    for node in ast.walk(tree):
        where = f"line {getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Compare) and any(
            vendorish(side) for side in (node.left, *node.comparators)
        ):
            found.append(f"{where}: compares a vendor")
        elif isinstance(node, ast.Subscript) and vendorish(node.slice):
            found.append(f"{where}: looks a vendor up")
        elif isinstance(node, ast.Attribute) and node.attr == "mysql_is_mariadb":
            found.append(f"{where}: asks mysql_is_mariadb")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            if "mysql_is_mariadb" in node.value:
                found.append(f"{where}: asks mysql_is_mariadb")
            elif "wsrep" in node.value and SQL_TEXT.match(node.value):
                found.append(f"{where}: sends wsrep SQL")
        elif isinstance(node, (ast.Name, ast.FunctionDef, ast.arg)):
            name = getattr(node, "id", None) or getattr(node, "name", None) or node.arg  # type: ignore[union-attr]
            if "wsrep" in name:
                found.append(f"{where}: names wsrep")
    return found


def test_only_the_dialects_test_vendors() -> None:
    offenders = {
        module_name(path): found
        for path in PACKAGE.rglob("*.py")
        if module_name(path) != DIALECTS and (found := vendor_tests(path.read_text()))
    }
    assert offenders == {}


@pytest.mark.parametrize(
    "source",
    [
        "if connection.vendor == 'mysql': pass",
        "ok = connection.vendor in ('postgresql', 'cockroachdb')",
        "vendor = c.vendor\nif vendor != 'sqlite': pass",
        "sources = {'mysql': 1}[connection.vendor]",
        "mariadb = connection.mysql_is_mariadb",
        "mariadb = getattr(connection, 'mysql_is_mariadb')",
        "cursor.execute('SHOW VARIABLES LIKE \"wsrep_on\"')",
        "prefix = f'SET STATEMENT wsrep_sync_wait = {n} FOR '",
        "def is_wsrep_node(connection): pass",
    ],
)
def test_a_vendor_test_is_found(source: str) -> None:
    assert vendor_tests(source)


def test_the_dialects_are_where_the_vendor_tests_are() -> None:
    source = (PACKAGE / "dialects.py").read_text()
    assert vendor_tests(source)
    # Naming the vendor in a message is no test.
    assert not vendor_tests("message = f'{connection.vendor} is not supported'")
