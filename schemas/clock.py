"""The wall clock in the unit every record uses: UTC milliseconds since the epoch.

One function so that code reading the time takes it as a parameter (``clock=now_ms``)
and a test passes its own.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeAlias

Clock: TypeAlias = Callable[[], int]
"""A source of ``now_ms()``-like readings; inject one where code reads the time."""


def now_ms() -> int:
    """UTC milliseconds since the Unix epoch (Avro ``timestamp-millis``)."""
    return time.time_ns() // 1_000_000
