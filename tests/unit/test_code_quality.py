"""ruff and mypy are part of the test run: a lint error fails CI like a broken test."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_ruff_finds_nothing() -> None:
    res = _run(str(BIN / "ruff"), "check", ".")
    assert res.returncode == 0, res.stdout + res.stderr


def test_mypy_strict_is_clean_on_every_package() -> None:
    res = _run(str(BIN / "mypy"))
    assert res.returncode == 0, res.stdout + res.stderr


def test_test_modules_have_unique_basenames() -> None:
    # tests/ has no __init__.py: pytest imports test modules by basename, and two files
    # of one name in unit/ and integration/ stop the whole collection.
    names = [p.name for p in (ROOT / "tests").rglob("test_*.py")]
    assert sorted({n for n in names if names.count(n) > 1}) == []
