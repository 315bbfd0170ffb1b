"""
The package as users get it: the built wheel, not the checkout, installed in
a fresh virtual environment, then the example project and the README's quick
start run against it, every command through manage.py in its own process,
system checks on. `nox -s wheel` (run by .ci/run) builds the wheel and runs
this:

    python tests/installed_wheel.py DIST_DIR

Only the standard library here: this runs on the Python that nox runs, and
everything else runs in the fresh environment. Nothing from the checkout is
importable there: the commands run in a temporary directory, without
PYTHONPATH.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# A client that is not a browser: its page and the admin name it ("curl 7"),
# never show the user agent as sent.
USER_AGENT = "curl/7.88.1"

# The example's pages in its own settings: the counter, a login through the
# admin's form, "your sessions", the admin's list and a session's page.
BROWSE = r"""
import hashlib, json, re
from django.test import Client
import django_sql_sessions

client = Client(HTTP_USER_AGENT=%(agent)r)
counter = client.get("/")
login = client.post("/admin/login/?next=/sessions/", {"username": "admin", "password": "admin"})
sessions = client.get("/sessions/").content.decode()
key_hash = hashlib.sha256(client.cookies["sessionid"].value.encode()).hexdigest()
changelist = client.get("/admin/django_sql_sessions/session/")
detail = client.get(f"/admin/django_sql_sessions/session/{key_hash}/change/")

def text(html):
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())

print(json.dumps({
    "package": django_sql_sessions.__file__,
    "counter": counter.status_code,
    "login": login.status_code,
    "device": [text(c) for c in re.findall(r'<td class="device"[^>]*>(.*?)</td>', sessions)],
    "changelist": changelist.status_code,
    "user_link": '<a href="/admin/auth/user/' in changelist.content.decode(),
    "detail": detail.status_code,
    "async_counter": client.get("/async/").status_code,
}))
"""

# The quick start's project: a login through the admin, where the session
# landed, and the package it came from.
LOG_IN = r"""
import json
from django.contrib.auth import get_user_model
from django.test import Client
import django_sql_sessions
from django_sql_sessions.models import Session
get_user_model().objects.create_superuser("ada", "ada@example.com", "pw")
client = Client(SERVER_NAME="localhost")
client.post("/admin/login/", {"username": "ada", "password": "pw"})
key = client.cookies["sessionid"].value
print(json.dumps({
    "package": django_sql_sessions.__file__,
    "admin": client.get("/admin/django_sql_sessions/session/").status_code,
    "user_id": Session.objects.get(session_key=key).user_id,
    "raw_key_stored": Session.objects.filter(key_hash=key).exists(),
}))
"""


def readme_settings(heading: str) -> str:
    """The first python code block after `heading` in README.rst."""
    readme = (ROOT / "README.rst").read_text()
    rest = readme[readme.index(heading) :]
    start = re.search(r"\.\. code-block:: python\n\n( +)", rest)
    assert start, f"no settings block after {heading!r}"
    indent, lines = start[1], []
    for line in rest[start.start(1) :].splitlines():
        if line.strip() and not line.startswith(indent):
            break
        lines.append(line[len(indent) :])
    return "\n".join(lines).strip() + "\n"


class Environment:
    """A fresh virtual environment with the wheel installed."""

    def __init__(self, path: Path, wheel: Path) -> None:
        self.path = path
        subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
        self.bin = path / ("Scripts" if os.name == "nt" else "bin")
        self.env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        self.env.pop("DJANGO_SETTINGS_MODULE", None)
        # With the devices extra, as the README's demo command installs it.
        self.run(self.bin / "python", "-m", "pip", "install", "-q", f"{wheel}[devices]")

    def run(self, *command: object, cwd: Path | None = None) -> str:
        result = subprocess.run(
            [str(part) for part in command],
            cwd=cwd or self.path,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if result.returncode:
            sys.exit(
                f"{' '.join(map(str, command))} exited {result.returncode}:\n"
                f"{result.stdout}\n{result.stderr}"
            )
        return result.stdout

    def manage(self, project: Path, *args: str) -> str:
        return self.run(self.bin / "python", "manage.py", *args, cwd=project)

    def shell(self, project: Path, code: str) -> dict[str, object]:
        report: dict[str, object] = json.loads(
            self.manage(project, "shell", "-c", code).strip().splitlines()[-1]
        )
        installed = Path(str(report.pop("package"))).resolve()
        assert installed.is_relative_to(self.path.resolve()), f"not the wheel: {installed}"
        return report


def example_project(env: Environment, tmp: Path) -> None:
    project = tmp / "example_project"
    shutil.copytree(ROOT / "example_project", project, ignore=shutil.ignore_patterns("*.sqlite3*"))
    env.env["EXAMPLE_DATA_DIR"] = str(project)
    env.manage(project, "check")
    assert "Created the demo superuser admin" in env.manage(project, "demo", "--no-serve")
    env.manage(project, "check", "--database", "sessions")
    report = env.shell(project, BROWSE % {"agent": USER_AGENT})
    assert report == {
        "counter": 200,
        "login": 302,
        "device": ["curl 7"],
        "changelist": 200,
        "user_link": True,
        "detail": 200,
        "async_counter": 200,
    }, report


def quick_start(env: Environment, tmp: Path) -> None:
    project = tmp / "quick_start"
    project.mkdir()
    env.run(env.bin / "django-admin", "startproject", "mysite", project)
    settings = project / "mysite" / "settings.py"
    settings.write_text(settings.read_text() + "\n" + readme_settings("Quick start\n==========="))
    env.manage(project, "migrate")
    env.manage(project, "check")
    report = env.shell(project, LOG_IN)
    assert report == {"admin": 200, "user_id": "1", "raw_key_stored": False}, report
    env.manage(project, "clearsessions")
    assert "Would delete 0 expired sessions" in env.manage(project, "purgesessions", "--dry-run")


def main(dist: Path) -> None:
    started = time.monotonic()
    [wheel] = dist.glob("django_sql_sessions-*.whl")
    with tempfile.TemporaryDirectory(prefix="installed-wheel-") as name:
        tmp = Path(name)
        env = Environment(tmp / "venv", wheel.resolve())
        example_project(env, tmp)
        quick_start(env, tmp)
    print(
        f"{wheel.name}, installed in a fresh venv: the example project and the README's "
        f"quick start ran against it ({time.monotonic() - started:.0f} s)."
    )


if __name__ == "__main__":
    main(Path(sys.argv[1]))
