"""A server of ours whose pid file was lost is adopted, not started a second time."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from deploy.stack.process import ManagedProcess


def _started(proc: subprocess.Popen[bytes], timeout_s: float = 5.0) -> None:
    """Until the child's own arguments show in /proc (they are empty just after exec)."""
    deadline = time.monotonic() + timeout_s
    while not Path(f"/proc/{proc.pid}/cmdline").read_bytes():
        assert time.monotonic() < deadline, "the child never started"
        time.sleep(0.01)


def test_a_running_server_without_its_pid_file_is_adopted_and_can_be_stopped(
    tmp_path: Path,
) -> None:
    marker = f"-Dlivecomments.component=kafka@{tmp_path}"
    proc = subprocess.Popen(
        [sys.executable, "-c", "import signal; signal.pause()", marker], start_new_session=True
    )
    try:
        _started(proc)
        managed = ManagedProcess("kafka", tmp_path / "run" / "kafka.pid", tmp_path / "log", marker)
        assert managed.owned_pid() == proc.pid
        assert managed.pid_file.read_text().strip() == str(proc.pid)
        assert managed.stop(timeout_s=10)
        assert proc.wait(5) is not None
        assert managed.owned_pid() is None
    finally:
        proc.kill()
        proc.wait()


def test_a_marker_is_matched_as_a_whole_argument_only(tmp_path: Path) -> None:
    marker = f"-Dlivecomments.component=kafka@{tmp_path}"
    proc = subprocess.Popen(
        [sys.executable, "-c", "import signal; signal.pause()", marker + "-ci"],
        start_new_session=True,
    )
    try:
        _started(proc)
        managed = ManagedProcess("kafka", tmp_path / "run" / "kafka.pid", tmp_path / "log", marker)
        assert managed.owned_pid() is None
    finally:
        proc.kill()
        proc.wait()
