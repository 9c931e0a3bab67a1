"""Shared fixtures. Integration tests run against the real stack and never skip.

The `stack` fixture brings the stack up through the project's own launcher (idempotent:
a running stack is reused). If a server cannot be reached the test FAILS, under CI and
everywhere else: a skipped integration test would prove nothing.
"""

from __future__ import annotations

import io
from collections.abc import Iterator

import pytest

from deploy.settings import Settings


@pytest.fixture(scope="session")
def settings() -> Settings:
    return Settings()


@pytest.fixture(scope="session")
def stack(settings: Settings) -> Iterator[Settings]:
    from deploy.stack import launcher
    from deploy.stack.errors import StackError

    out = io.StringIO()
    try:
        statuses = launcher.up(settings, out=out)
    except StackError as e:
        pytest.fail(f"the stack is not available: {e}\n{out.getvalue()}\n{e.log_tail}")
    not_ready = [s.name for s in statuses if s.state != "ready"]
    if not_ready:
        pytest.fail(f"stack components not ready: {not_ready}\n{out.getvalue()}")
    yield settings
