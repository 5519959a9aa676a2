"""Lock files: one writer per output folder and per dataset, across processes and hosts.

A lock is a file created with ``O_CREAT | O_EXCL`` holding its owner as JSON (host, PID
namespace, PID, start time, purpose). While held, a heartbeat thread touches it every
``heartbeat_s`` seconds. A lock is stale, and may be broken, when
- its owner is on this host and in this PID namespace and its PID is gone, or
- its heartbeat is older than ``stale_after_s`` (an owner on another host or in another PID
  namespace, e.g. a container or ``unshare --pid``, whose PIDs mean nothing here).
A live owner elsewhere is never judged by PID, so hosts sharing a folder never break each
other's live locks. ``FileLock(path).acquire(timeout=0)`` fails at once with ``LockHeld``
(one line naming the owner); ``timeout=None`` waits until the lock is free or stale.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

HEARTBEAT_S = 30.0
STALE_AFTER_S = 300.0


LOCK_NAME = ".flyvis-study.lock"  # the writer lock of a results folder (study.execute.block_lock)


class LockHeld(RuntimeError):
    """The lock is held by a live owner (message: one line naming it)."""

    def __init__(self, path: Path, owner: dict):
        self.path, self.owner = path, owner
        super().__init__(f"{path} is held by {describe_owner(owner)}; wait for it to finish, or delete "
                         f"{path.name} if that process is gone")


def this_process() -> dict:
    """The owner record of this process."""
    return {"host": socket.gethostname(), "pid_namespace": _pid_namespace(), "pid": os.getpid()}


def describe_owner(owner: dict) -> str:
    return (f"{owner.get('purpose') or 'a process'} (host {owner.get('host', '?')}, pid {owner.get('pid', '?')}, "
            f"since {owner.get('started', '?')})")


def read_owner(path: str | Path) -> dict | None:
    """The owner written in a lock file; None if absent; {} if unreadable (being written or damaged)."""
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}


def is_stale(path: str | Path, owner: dict | None = None, stale_after_s: float = STALE_AFTER_S) -> bool:
    """True if the lock at ``path`` may be broken (see the module docstring)."""
    path = Path(path)
    owner = read_owner(path) if owner is None else owner
    try:
        age = time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return False
    if age > stale_after_s:
        return True
    me = this_process()
    if owner and owner.get("host") == me["host"] and owner.get("pid_namespace") == me["pid_namespace"]:
        return not pid_alive(int(owner.get("pid", -1)))
    return False


def held_by_ancestor(path: str | Path) -> bool:
    """True if the lock's live owner is this process or one of its ancestors on this host.

    A notebook kernel started by ``flyvis-study block`` (which holds the folder's lock) works
    under its parent's lock.
    """
    owner = holder(path)
    me = this_process()
    if not owner or owner.get("host") != me["host"] or owner.get("pid_namespace") != me["pid_namespace"]:
        return False
    return int(owner.get("pid", -1)) in _ancestors()


def holder(path: str | Path, stale_after_s: float = STALE_AFTER_S) -> dict | None:
    """The live owner of the lock at ``path``, or None when it is free or stale."""
    owner = read_owner(path)
    if owner is None or is_stale(path, owner, stale_after_s):
        return None
    return owner


class FileLock:
    """A lock file with a heartbeat; a context manager (``acquire(timeout)`` on enter)."""

    def __init__(self, path: str | Path, purpose: str = "", timeout: float | None = 0,
                 heartbeat_s: float = HEARTBEAT_S, stale_after_s: float = STALE_AFTER_S, poll_s: float = 0.5):
        self.path = Path(path)
        self.purpose, self.timeout = purpose, timeout
        self.heartbeat_s, self.stale_after_s, self.poll_s = heartbeat_s, stale_after_s, poll_s
        self._token = uuid.uuid4().hex
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def acquire(self, timeout: float | None = None) -> None:
        """Take the lock; raise ``LockHeld`` if a live owner keeps it past ``timeout`` s (None: wait)."""
        timeout = self.timeout if timeout is None else timeout
        self.path.parent.mkdir(parents=True, exist_ok=True)
        owner = {**this_process(), "purpose": self.purpose, "token": self._token,
                 "started": datetime.now(UTC).isoformat(timespec="seconds")}
        t0 = time.monotonic()
        while True:
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                current = read_owner(self.path)
                if current is not None and is_stale(self.path, current, self.stale_after_s):
                    self._break(current)
                    continue
                if current is not None and timeout is not None and time.monotonic() - t0 >= timeout:
                    raise LockHeld(self.path, current) from None
                time.sleep(self.poll_s)
                continue
            with os.fdopen(fd, "w") as fh:
                json.dump(owner, fh)
            break
        self._stop.clear()
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat {self.path.name}", daemon=True)
        self._thread.start()

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if (read_owner(self.path) or {}).get("token") == self._token:
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> FileLock:
        self.acquire(self.timeout)
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            if (read_owner(self.path) or {}).get("token") != self._token:
                return  # broken by someone who judged it stale: nothing left to keep alive
            os.utime(self.path)

    def _break(self, judged: dict) -> None:
        """Remove a stale lock; if it changed hands meanwhile, put the new one back."""
        aside = self.path.with_name(f"{self.path.name}.stale-{uuid.uuid4().hex[:8]}")
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return
        if read_owner(aside) != judged:
            try:
                os.link(aside, self.path)  # restore the live lock (fails if a third took it)
            except FileExistsError:
                pass
        aside.unlink(missing_ok=True)


def _ancestors() -> set[int]:
    """This process's PID and its ancestors' (from /proc; the parent only elsewhere)."""
    pids, pid = {os.getpid(), os.getppid()}, os.getppid()
    while pid > 1:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            break
        pid = int(stat.rsplit(")", 1)[1].split()[1])  # field 4, after the command name
        pids.add(pid)
    return pids


def _pid_namespace() -> str:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""


def pid_alive(pid: int) -> bool:
    """True if a process ``pid`` runs on this machine (one we may not signal counts)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
