"""Every test in this folder needs the real stack (see tests/conftest.py: never skipped)."""

from __future__ import annotations

from pathlib import Path

import pytest

from deploy.settings import Settings

HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(autouse=True)
def _needs_stack(stack: Settings) -> None:
    """Brings the stack up once per session before the first integration test."""
