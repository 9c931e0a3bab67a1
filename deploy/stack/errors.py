"""The one error type of the launcher: which component failed, and a sentence saying why."""

from __future__ import annotations


class StackError(Exception):
    def __init__(self, component: str, message: str, log_tail: str = "") -> None:
        super().__init__(f"{component}: {message}")
        self.component = component
        self.message = message
        self.log_tail = log_tail
