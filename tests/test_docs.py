"""
The Sphinx site in docs/ builds with warnings as errors and nitpicky
references, as `nox -s docs` builds it in CI. Skipped where Sphinx or the
theme is not installed: the nox session is the one that must run it.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("sphinx") is None or importlib.util.find_spec("furo") is None,
    reason="Sphinx and furo are not installed (nox -s docs builds the docs)",
)


@pytest.fixture(scope="module")
def html(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("html")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "sphinx",
            "-W",
            "--keep-going",
            "-n",
            "-q",
            "-b",
            "html",
            "-d",
            str(out / ".doctrees"),
            str(DOCS),
            str(out),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return out


def test_every_page_is_built(html: Path) -> None:
    pages = {p.stem for p in DOCS.glob("*.rst")}
    assert {"index", "usage", "design", "deployment", "performance", "development"} <= pages
    for page in pages:
        assert (html / f"{page}.html").is_file(), page


def test_links_between_pages_resolve(html: Path) -> None:
    # -n checks Sphinx's own references; the README's named links, which
    # the pages that include it point at the built pages, are checked here.
    for page in html.glob("*.html"):
        for target in re.findall(r'href="([^"#:]+\.html)(?:#[^"]*)?"', page.read_text()):
            assert (page.parent / target).is_file(), f"{page.name} links to {target}"


def test_readme_reference_is_included(html: Path) -> None:
    usage = (html / "usage.html").read_text()
    for name in ["SQL_SESSIONS_DB_ALIAS", "django_sql_sessions.W006", "purgesessions"]:
        assert name in usage
