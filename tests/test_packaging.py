from __future__ import annotations

import email
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Build from a copy, so the build leaves nothing in the work tree.
    source = tmp_path_factory.mktemp("source") / "src"
    shutil.copytree(
        ROOT,
        source,
        ignore=shutil.ignore_patterns(
            ".git", ".nox", ".venv", "build", "dist", "*.egg-info", "_build"
        ),
    )
    return source


@pytest.fixture(scope="module")
def wheel(source: Path, tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(out),
            str(source),
        ],
        check=True,
        capture_output=True,
    )
    [path] = out.glob("django_sql_sessions-*.whl")
    return zipfile.ZipFile(path)


@pytest.fixture(scope="module")
def sdist(source: Path, tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    """The names in the source distribution, without its top-level folder."""
    out = tmp_path_factory.mktemp("sdist")
    subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from setuptools import build_meta; build_meta.build_sdist(sys.argv[1])",
            str(out),
        ],
        cwd=source,
        check=True,
        capture_output=True,
    )
    [path] = out.glob("django_sql_sessions-*.tar.gz")
    with tarfile.open(path) as archive:
        return {name.partition("/")[2] for name in archive.getnames()}


def metadata(wheel: zipfile.ZipFile) -> email.message.Message:
    [name] = [n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")]
    return email.message_from_bytes(wheel.read(name))


def test_wheel_ships_migrations_commands_and_types(wheel: zipfile.ZipFile) -> None:
    names = set(wheel.namelist())
    for required in [
        "django_sql_sessions/py.typed",
        "django_sql_sessions/migrations/0001_initial.py",
        "django_sql_sessions/migrations/__init__.py",
        "django_sql_sessions/management/commands/purgesessions.py",
        "django_sql_sessions/backends/db.py",
    ]:
        assert required in names


def test_wheel_ships_no_tests_or_example(wheel: zipfile.ZipFile) -> None:
    top_level = {name.split("/")[0] for name in wheel.namelist()}
    assert {t for t in top_level if not t.endswith(".dist-info")} == {"django_sql_sessions"}


def test_sdist_ships_the_changelog_and_the_docs(sdist: set[str]) -> None:
    for required in [
        "README.rst",
        "CHANGELOG.rst",
        "docs/conf.py",
        "docs/requirements.txt",
        "docs/index.rst",
        "docs/performance.rst",
        "docs/perf/requests.rst",
    ]:
        assert required in sdist
    assert not any(name.startswith("docs/_build") for name in sdist)


def test_support_claims_agree(wheel: zipfile.ZipFile) -> None:
    """The classifiers, the test matrix and the README name the same versions."""
    classifiers = metadata(wheel).get_all("Classifier") or []
    classified = {
        c.rsplit(" ", 1)[1] for c in classifiers if c.startswith("Framework :: Django ::")
    }
    noxfile = (ROOT / "noxfile.py").read_text()
    supported = re.search(r"SUPPORTED = \{(.*?)\n\}", noxfile, re.DOTALL)
    assert supported
    tested = set(re.findall(r'"(\d+\.\d+)": \(', supported[1]))
    readme = (ROOT / "README.rst").read_text()
    [requirements] = re.findall(r"Django versions? ([\d., and]+)\.", readme)
    documented = set(re.findall(r"\d+\.\d+", requirements))
    assert classified == tested == documented
    pythons = {c.rsplit(" ", 1)[1] for c in classifiers if re.fullmatch(r".*Python :: 3\.\d+", c)}
    tested_pythons = set(re.findall(r'"(3\.\d+)"[,)]', supported[1]))
    [python_range] = re.findall(r"Python (3\.\d+) to (3\.\d+)\.", readme)
    low, high = (int(v.split(".")[1]) for v in python_range)
    assert pythons == tested_pythons == {f"3.{minor}" for minor in range(low, high + 1)}


def test_metadata(wheel: zipfile.ZipFile) -> None:
    meta = metadata(wheel)
    assert meta["Name"] == "django-sql-sessions"
    assert meta["Requires-Python"] == ">=3.10"
    requires = meta.get_all("Requires-Dist") or []
    assert "Django<6.2,>=5.2" in requires
