"""
The benchmarks of issue 23's features (encryption at rest, the per-user
limit): they run, and their fragments hold what they measured.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_smoke_run_on_sqlite(tmp_path: Path) -> None:
    command = [
        *[sys.executable, "benchmarks/encryption.py", "--databases", "sqlite"],
        *["--rows", "40", "--requests", "10", "--runs", "2"],
        *["--data-dir", str(tmp_path), "--docs", str(tmp_path / "perf")],
    ]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    fragment = (tmp_path / "perf" / "encryption.rst").read_text()
    for cell in ("ours", "cached", "read", "write", "seal", "open"):
        assert f"   * - {cell}\n" in fragment or f"     - {cell}\n" in fragment, cell
    assert "%\n" in fragment


def test_logins_smoke_run_on_sqlite(tmp_path: Path) -> None:
    command = [
        *[sys.executable, "benchmarks/logins.py", "--databases", "sqlite"],
        *["--logins", "5", "--runs", "2"],
        *["--data-dir", str(tmp_path), "--docs", str(tmp_path / "perf")],
    ]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    # It checks, run by run, that the limit left exactly LIMIT sessions.
    assert result.returncode == 0, result.stderr
    fragment = (tmp_path / "perf" / "logins.rst").read_text()
    assert "limit 3, one revoked" in fragment
    assert "%\n" in fragment
