"""Processes the launcher starts and owns: pid files, liveness, ports, logs, RSS.

A pid file alone is not proof of ownership (pids are reused), so every process we start
carries a marker on its command line (``-Dlivecomments.component=kafka`` or the path of
its own config file) and ``owned_pid`` checks ``/proc/<pid>/cmdline`` for it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class ManagedProcess:
    name: str
    pid_file: Path
    log_file: Path
    marker: str

    def owned_pid(self) -> int | None:
        """The pid of our running process, or None (stale pid files are removed).

        Without a pid file, a process carrying our marker is ours all the same (the
        file was lost): it is adopted, so `up` does not start a second one beside it
        and `down` can stop it.
        """
        try:
            pid = int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            found = find_by_marker(self.marker)
            if found is not None:
                self.pid_file.parent.mkdir(parents=True, exist_ok=True)
                self.pid_file.write_text(f"{found}\n")
            return found
        try:
            args = _cmdline(pid)
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            self.pid_file.unlink(missing_ok=True)
            return None
        # A whole argument, not a substring: `.stack` must not match `.stack-ci`.
        if self.marker.encode() not in args or state == "Z":
            self.pid_file.unlink(missing_ok=True)
            return None
        return pid

    def start(
        self,
        argv: list[str],
        cwd: Path,
        env: dict[str, str] | None = None,
        preexec_fn: Callable[[], None] | None = None,
    ) -> int:
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as log:
            log.write(f"\n--- livecomments: starting {self.name} at {time.ctime()}\n".encode())
            log.flush()
            # A session of its own: Ctrl-C in the caller's terminal must not kill the stack.
            proc = subprocess.Popen(
                argv,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={**os.environ, **(env or {})},
                preexec_fn=preexec_fn,
            )
        self.pid_file.write_text(f"{proc.pid}\n")
        return proc.pid

    def stop(self, timeout_s: float = 60.0) -> bool:
        """SIGTERM, wait, then SIGKILL. Returns True if a process was stopped."""
        pid = self.owned_pid()
        if pid is None:
            return False
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not pid_alive(pid):
                break
            time.sleep(0.2)
        else:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 10
            while pid_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.1)
        self.pid_file.unlink(missing_ok=True)
        return True

    def tail(self, lines: int = 30) -> str:
        return tail_file(self.log_file, lines)


def _cmdline(pid: int) -> list[bytes]:
    """A process's arguments. Right after a (v)fork + exec the new image's arguments are
    not set up yet and /proc shows an empty command line for a moment (seen: a server
    just started was judged "not ours", its pid file removed, and the server stopped as
    "exited before it was ready"); wait that moment out."""
    path = Path(f"/proc/{pid}/cmdline")
    deadline = time.monotonic() + 2.0
    while True:
        raw = path.read_bytes()
        if raw or time.monotonic() > deadline:
            return raw.split(b"\0")
        time.sleep(0.01)


def find_by_marker(marker: str) -> int | None:
    """A live process with ``marker`` as a whole argument (the oldest if several)."""
    want = marker.encode()
    found: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            args = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if want in args and pid_alive(int(entry.name)):
            found.append(int(entry.name))
    return min(found) if found else None


def pid_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    if state == "Z":
        # Our own child that exited: reap it so it does not linger as a zombie.
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)
        return False
    return True


def rss_bytes(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def port_open(host: str, port: int, timeout_s: float = 0.5) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(timeout_s)
        return s.connect_ex((host, port)) == 0


def port_owner(port: int) -> str:
    """Best-effort description of who listens on a port (for the error message)."""
    try:
        out = subprocess.run(
            ["ss", "-ltnpH", f"sport = :{port}"], capture_output=True, text=True, timeout=5
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "another process"
    if "users:" in out:
        return out.split("users:", 1)[1].strip()
    return "another process"


def tail_file(path: Path, lines: int) -> str:
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 64 * 1024))
            data = f.read().decode(errors="replace")
    except FileNotFoundError:
        return f"(no log at {path})"
    return "\n".join(data.splitlines()[-lines:])


def without_memory_locking() -> None:
    """For a child that calls mlockall() (Cassandra): make the call fail, harmlessly.

    As root, Cassandra's mlockall() succeeds and pins the whole heap before anything
    else: seconds of start time and RSS equal to the heap at once. Dropping
    CAP_IPC_LOCK and a tiny RLIMIT_MEMLOCK make it log a warning and carry on.
    """
    import ctypes
    import resource

    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(24, 14, 0, 0, 0)  # PR_CAPBSET_DROP, IPC_LOCK
    with contextlib.suppress(Exception):
        resource.setrlimit(resource.RLIMIT_MEMLOCK, (64 * 1024, 64 * 1024))
