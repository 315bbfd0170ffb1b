from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.rst").read_text()
CHANGELOG = ROOT / "CHANGELOG.rst"
# The package index shows the README as the project page; it stays a page a
# Django user reads through, with the long form in docs/.
MAX_LINES = 450
FIRST_SCREEN = 60


def setup_commands() -> list[str]:
    return [line.strip() for line in README.splitlines() if line.strip().startswith("python3 -m")]


def render(text: str) -> None:
    # A docutils warning on the package index means a broken page, not a
    # warning.
    import docutils.core

    docutils.core.publish_string(
        text, writer="html", settings_overrides={"halt_level": 2, "report_level": 2}
    )


def test_two_setup_commands_and_ci_runs_the_test_one() -> None:
    example, tests = setup_commands()
    assert "example_project/manage.py demo" in example
    # With the devices extra: the example's pages and the admin name each
    # device with ua-parser, as a project that installs the extra sees them.
    assert ' -m pip install -q -e ".[devices]" && ' in example
    assert tests.endswith("-m nox")
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert tests in ci_lines
    # Then the whole matrix, where a missing Python is a failure.
    assert any("--error-on-missing-interpreters -s matrix" in line for line in ci_lines)


def test_every_check_id_is_documented() -> None:
    # The settings' checks are declared with the settings, the rest in checks.py.
    source = "".join(
        (ROOT / "django_sql_sessions" / name).read_text() for name in ("checks.py", "conf.py")
    )
    in_code = set(re.findall(r'"(?:django_sql_sessions\.)?([EW]\d{3})"', source))
    in_readme = set(re.findall(r"django_sql_sessions\.([EW]\d{3})", README))
    assert len(in_code) == 33
    assert in_code == in_readme


def test_every_setting_has_a_heading_with_type_default_and_example() -> None:
    source = (ROOT / "django_sql_sessions" / "conf.py").read_text()
    in_code = set(re.findall(r'"(SQL_SESSIONS_[A-Z_]+)"', source))
    assert in_code
    for name in in_code:
        heading = f"``{name}``"
        match = re.search(
            rf"^{re.escape(heading)}\n-{{{len(heading)}}}\n\n(\*.+?\n)\n", README, re.MULTILINE
        )
        assert match, f"no heading for {name}"
        summary = match[1]
        assert "default ``" in summary, name
        assert "Example: ``" in summary, name


def test_renders_without_warnings() -> None:
    render(README)


def test_the_clusters_readme_renders_without_warnings() -> None:
    render((ROOT / "clusters" / "README.rst").read_text())


def test_fits_a_package_page() -> None:
    assert len(README.splitlines()) <= MAX_LINES


def test_quick_start_and_both_commands_in_the_first_screen() -> None:
    first_screen = "\n".join(README.splitlines()[:FIRST_SCREEN])
    assert "\nQuick start\n===========\n" in first_screen
    for command in setup_commands():
        assert command in first_screen


PIPE_TABLE_RULE = re.compile(r"^\s*\|?(\s*:?-{3,}:?\s*\|)+\s*:?-*:?\s*\|?\s*$", re.MULTILINE)


@pytest.mark.parametrize(
    "path",
    [
        ROOT / "README.rst",
        CHANGELOG,
        ROOT / "clusters" / "README.rst",
        *sorted(p for p in (ROOT / "docs").rglob("*.rst") if "_build" not in p.parts),
    ],
    ids=lambda path: str(path.relative_to(ROOT)),
)
def test_no_markdown_pipe_tables(path: Path) -> None:
    # Markdown tables are not tables in reStructuredText: they show as text
    # (or, in a literal block, as a wall of pipes). Use grid, simple or
    # list-table tables.
    assert not PIPE_TABLE_RULE.search(path.read_text())


def test_pipe_table_rule_finds_markdown_tables() -> None:
    assert PIPE_TABLE_RULE.search("    | a | b |\n    |---|---:|\n")
    assert PIPE_TABLE_RULE.search("a | b\n--- | ---\n")
    assert not PIPE_TABLE_RULE.search("+---+---+\n| a | b |\n+===+===+\n")
    assert not PIPE_TABLE_RULE.search("===  ===\na    b\n===  ===\n")


def test_changelog_renders_without_warnings() -> None:
    text = CHANGELOG.read_text()
    assert "\nUnreleased\n----------\n" in text
    render(text)


def test_links_to_the_changelog() -> None:
    assert "\n.. _CHANGELOG.rst: CHANGELOG.rst\n" in README


def test_the_test_command_says_what_it_uses() -> None:
    # Beside the command: the variables that name the servers, the one that
    # stops it looking for servers here, and the Debian packages that tests
    # need (without them, they are skipped: 12 for unixODBC alone).
    section = README[README.index("Try it, or test it") : README.index(".. docs-usage-start")]
    settings = (ROOT / "tests" / "settings.py").read_text()
    for variable in ("POSTGRES_HOST", "MYSQL_HOST", "MSSQL_HOST", "REDIS_URL"):
        assert f"``{variable}``" in section, variable
        assert variable.split("_")[0] in settings
    for suffix in ("_PORT", "_USER", "_PASSWORD"):
        assert f"``{suffix}``" in section
        assert f'f"{{prefix}}{suffix}"' in settings
    assert "``SQL_SESSIONS_TEST_LOCAL=0``" in section
    for package in (
        "libmariadb-dev",
        "pkg-config",
        "unixodbc",
        "chromium",
        "chromium-driver",
        "pgbouncer",
    ):
        assert f"``{package}``" in section, package
