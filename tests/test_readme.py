from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.rst").read_text()


def setup_commands() -> list[str]:
    return [line.strip() for line in README.splitlines() if line.strip().startswith("python3 -m")]


def test_two_setup_commands_and_ci_runs_the_test_one() -> None:
    example, tests = setup_commands()
    assert "example_project/manage.py demo" in example
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
    assert len(in_code) == 20
    assert in_code == in_readme


def test_every_setting_is_documented() -> None:
    source = (ROOT / "django_sql_sessions" / "conf.py").read_text()
    in_code = set(re.findall(r'"(SQL_SESSIONS_[A-Z_]+)"', source))
    assert in_code
    for name in in_code:
        assert f"``{name}``\n    *" in README, name


def test_renders_without_warnings() -> None:
    # The package index shows it as the project page; a warning there means
    # a broken page, not a warning.
    import docutils.core

    docutils.core.publish_string(
        README, writer="html", settings_overrides={"halt_level": 2, "report_level": 2}
    )
