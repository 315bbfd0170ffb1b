"""
The benchmarks of issue 23's features (encryption at rest, the per-user
limit, the "your sessions" pages): they run, and print what they measured.
(The fragments' charts need matplotlib, which the test run does not install:
tests/test_benchmarks_report.py covers writing them.)
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(tmp_path: Path, *args: str) -> str:
    command = [sys.executable, *args, "--databases", "sqlite", "--data-dir", str(tmp_path)]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_encryption_smoke_run_on_sqlite(tmp_path: Path) -> None:
    sizes = ["--rows", "40", "--requests", "10", "--runs", "2"]
    out = run(tmp_path, "benchmarks/encryption.py", *sizes)
    for engine in ("ours", "cached"):
        for workload in ("read", "write"):
            row = re.search(rf"^{engine} +{workload} +[\d,]+ +[\d,]+ +[+-][\d.]+%$", out, re.M)
            assert row, (engine, workload, out)
    assert re.search(r"^seal +[\d.]+$", out, re.M)
    assert re.search(r"^open +[\d.]+$", out, re.M)


def test_logins_smoke_run_on_sqlite(tmp_path: Path) -> None:
    # It checks, run by run, that the limit left exactly LIMIT sessions.
    out = run(tmp_path, "benchmarks/logins.py", "--logins", "5", "--runs", "2")
    assert "limit 3, one revoked" in out
    assert "%\n" in out


def test_pages_smoke_run_on_sqlite(tmp_path: Path) -> None:
    # It checks that the list shows the user's sessions, this one marked
    # and named, and that "log out others" leaves one.
    out = run(tmp_path, "benchmarks/pages.py", "--rows", "40", "--requests", "10", "--runs", "1")
    for count in (1, 10, 50):
        assert re.search(rf"^ *{count} +[\d,]+ +[\d,]+ +[+-][\d,]+ +[\d,]+$", out, re.M), out
