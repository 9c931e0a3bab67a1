"""The launcher's progress lines, in a module of their own.

Bootstrap and containers report progress while the launcher drives them; with the
class in launcher.py each of them imported the launcher that imports them (a cycle
inside deploy/stack).
"""

from __future__ import annotations

import threading
import time
from typing import TextIO


class Progress:
    """One line per component as it changes state, with seconds since `up` began."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._t0 = time.monotonic()
        self._lock = threading.Lock()

    def elapsed(self) -> float:
        return time.monotonic() - self._t0

    def say(self, name: str, what: str) -> None:
        with self._lock:
            self._out.write(f"  {name:<10} {what:<48} {self.elapsed():6.1f}s\n")
            self._out.flush()
