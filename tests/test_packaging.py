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
    # A template and a static file, where an app keeps them: should the
    # package get any (the admin's pages, say), the wheel must carry them.
    for probe in PROBES:
        (source / probe).parent.mkdir(parents=True, exist_ok=True)
        (source / probe).write_text("probe\n")
    return source


PROBES = (
    "django_sql_sessions/templates/django_sql_sessions/probe.html",
    "django_sql_sessions/static/django_sql_sessions/probe.css",
)


@pytest.fixture(scope="module")
def sdist_archive(source: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
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
    return path


@pytest.fixture(scope="module")
def sdist(sdist_archive: Path) -> set[str]:
    """The names in the source distribution, without its top-level folder."""
    with tarfile.open(sdist_archive) as archive:
        return {name.partition("/")[2] for name in archive.getnames()}


@pytest.fixture(scope="module")
def wheel(sdist_archive: Path, tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    """The wheel built from the sdist, as `python -m build` builds it."""
    unpacked = tmp_path_factory.mktemp("unpacked")
    with tarfile.open(sdist_archive) as archive:
        # The data filter where this Python has it (3.10.12, 3.11.4 and later).
        if hasattr(tarfile, "data_filter"):
            archive.extractall(unpacked, filter="data")
        else:
            archive.extractall(unpacked)  # our own sdist
    [tree] = unpacked.iterdir()
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
            str(tree),
        ],
        check=True,
        capture_output=True,
    )
    [path] = out.glob("django_sql_sessions-*.whl")
    return zipfile.ZipFile(path)


def metadata(wheel: zipfile.ZipFile) -> email.message.Message:
    [name] = [n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")]
    return email.message_from_bytes(wheel.read(name))


def test_wheel_ships_migrations_commands_and_types(wheel: zipfile.ZipFile) -> None:
    names = set(wheel.namelist())
    migrations = {
        f"django_sql_sessions/migrations/{path.name}"
        for path in (ROOT / "django_sql_sessions" / "migrations").glob("*.py")
    }
    assert "django_sql_sessions/migrations/0001_initial.py" in migrations
    for required in [
        "django_sql_sessions/py.typed",
        *migrations,
        "django_sql_sessions/management/commands/purgesessions.py",
        "django_sql_sessions/backends/db.py",
        # The "your sessions" pages: views, URLconfs and their templates.
        "django_sql_sessions/urls.py",
        "django_sql_sessions/async_urls.py",
        "django_sql_sessions/templates/django_sql_sessions/base.html",
        "django_sql_sessions/templates/django_sql_sessions/session_list.html",
        "django_sql_sessions/templates/django_sql_sessions/time.html",
    ]:
        assert required in names


def test_wheel_ships_the_package_whole(source: Path, wheel: zipfile.ZipFile) -> None:
    """
    Every file of the package, modules or not (py.typed, and the templates
    and static files that pages or the admin need, the probes among them),
    and nothing else of it.
    """
    in_tree = {
        path.relative_to(source).as_posix()
        for path in (source / "django_sql_sessions").rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    }
    shipped = {name for name in wheel.namelist() if name.startswith("django_sql_sessions/")}
    assert shipped == in_tree
    assert {"django_sql_sessions/py.typed", *PROBES} <= shipped


def test_wheel_ships_no_tests_or_example(wheel: zipfile.ZipFile) -> None:
    top_level = {name.split("/")[0] for name in wheel.namelist()}
    assert {t for t in top_level if not t.endswith(".dist-info")} == {"django_sql_sessions"}
    for outside in ("tests/", "benchmarks/", "clusters/", "example_project/", "docs/"):
        assert not [name for name in wheel.namelist() if f"{outside}" in name], outside
    assert not [name for name in wheel.namelist() if name.endswith((".sh", ".sqlite3"))]


def test_ci_installs_the_built_wheel_not_the_checkout() -> None:
    """
    .ci/run runs `nox -s wheel`: python -m build, twine check --strict, and
    tests/installed_wheel.py, which runs the example project and the
    README's quick start against the wheel in a fresh venv.
    """
    ci = (ROOT / ".ci" / "run").read_text()
    [sessions] = re.findall(r"^\.venv/bin/python -m nox .*-s (.*)$", ci, re.MULTILINE)
    assert "wheel" in sessions.split()
    noxfile = (ROOT / "noxfile.py").read_text()
    wheel_session = noxfile[noxfile.index("def wheel(") :].split("\n@nox.session")[0]
    for step in (
        '"python", "-m", "build"',
        '"twine", "check", "--strict"',
        '"python", "tests/installed_wheel.py"',
    ):
        assert step in wheel_session, step


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
