"""
Sphinx configuration for the long-form documentation.

Built by ``nox -s docs`` (``sphinx-build -W --keep-going -n -b html docs
docs/_build/html``), so every warning, including an unresolved internal
reference, fails the build. Nothing here needs the network: no intersphinx,
no remote images.
"""

from __future__ import annotations

import configparser
import re
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
_metadata = configparser.ConfigParser()
_metadata.read(ROOT / "setup.cfg")

project = "django-sql-sessions"
author = "The django-sql-sessions developers"
project_copyright = f"2026, {author}"
release = _metadata["metadata"]["version"]
version = release

extensions: list[str] = []
nitpicky = True
# The generated benchmark fragments are included by performance.rst, not
# pages of their own.
exclude_patterns = ["_build", "perf"]
highlight_language = "none"

html_theme = "furo"
html_title = f"{project} {release}"
html_show_sourcelink = False

# An image path in an included file is relative to the document that
# includes it. The benchmarks write fragments into docs/perf/ whose images
# sit next to them, so make those paths relative to the fragment instead.
_IMAGE = re.compile(r"^(\s*\.\. (?:image|figure)::\s+)(?![/\\]|[a-z][a-z0-9+.-]*:)(\S.*)$", re.M)


def _images_next_to_fragment(
    app: Any, relative_path: Path, parent_docname: str, content: list[str]
) -> None:
    folder = relative_path.parent.as_posix()
    if folder in ("", ".") or folder.startswith(".."):
        return
    content[0] = _IMAGE.sub(lambda m: f"{m[1]}/{folder}/{m[2]}", content[0])


def setup(app: Any) -> dict[str, Any]:
    app.connect("include-read", _images_next_to_fragment)
    return {"parallel_read_safe": True}
