"""Per-GPU leases: one process at a time may change a GPU's power limit.

Two processes that each lower a limit and each restore "the original" throttle the GPU
for good: the second records the first one's lowered limit as original and puts it back
after the first has left. So a process changes a GPU's limit only while it holds that
GPU's lease: an exclusive ``flock`` on ``leases/<uuid>.lock`` beside the journal, taken
without waiting and held until the limit is restored. The holder is the only process that
records an original, so the original is the limit from before any greenai process touched
the GPU; a process that finds the lease taken meters only and says who holds it (the
holder writes its pid and host into the file).

The kernel drops an ``flock`` when its holder dies, however it dies, so a killed process
never keeps a GPU leased; what it changed is then in the journal for the next start to
put back. A forked child closes its copies of the descriptors (``os.register_at_fork``),
so the lease ends with the process that took it, not with the last of its workers.
Within one process a lease is counted (nested guards share it).
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import socket
import threading
from pathlib import Path

from greenai.core.state import open_private, private_dir

LEASES = "leases"

_held: dict[Path, list[int]] = {}  # lease file -> [descriptor, holders in this process]
_lock = threading.RLock()  # reentrant: a signal handler may release inside an acquire


class LeaseHeld(Exception):
    """Another process holds the GPU's lease: it is steering that GPU's power limit."""

    def __init__(self, holder: str) -> None:
        super().__init__(f"controlled by {holder}")
        self.holder = holder


def lease_path(directory: Path, key: str) -> Path:
    """The lease file of the GPU ``key`` (its UUID) under the state folder ``directory``."""
    return directory / LEASES / (re.sub(r"[^A-Za-z0-9._-]", "_", key) + ".lock")


def acquire(path: Path) -> None:
    """Take the lease at ``path`` (again, if this process holds it: counted).

    Raises:
        LeaseHeld: Another process holds it (its pid and host are in the message).
        OSError: The lease cannot be taken (a folder or file that is not this user's, a
            link, no space).
    """
    with _lock:
        held = _held.get(path)
        if held is not None:
            held[1] += 1
            return
        private_dir(path.parent.parent)  # the state folder, then its leases
        private_dir(path.parent)
        fd = open_private(path, os.O_RDWR | os.O_CREAT)
        try:
            _flock(fd)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise LeaseHeld(holder or "another process") from None
        except BaseException:
            os.close(fd)
            raise
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        except OSError:
            os.close(fd)  # releases the lock
            raise
        _held[path] = [fd, 1]


def release(path: Path) -> None:
    """Give back one hold of the lease at ``path``; the last one frees it for other processes."""
    with _lock:
        held = _held.get(path)
        if held is None:
            return
        held[1] -= 1
        if held[1] <= 0:
            del _held[path]
            os.close(held[0])  # the only descriptor of its open file: the flock goes with it


def holder(path: Path) -> str | None:
    """Who holds the lease at ``path`` ("pid N on HOST"), or None when nobody does."""
    with _lock:
        if path in _held:
            return f"pid {os.getpid()} on {socket.gethostname()}"
    try:
        fd = open_private(path, os.O_RDWR)
    except OSError:
        return None
    try:
        _flock(fd)
    except BlockingIOError:
        return _read_holder(fd) or "another process"
    finally:
        os.close(fd)  # also drops the lock if this call took it
    return None


def _flock(fd: int) -> None:
    """Lock ``fd`` exclusively without waiting; BlockingIOError when another holds it."""
    try:
        import fcntl
    except ImportError:  # Windows: no flock, so no cross-process lease
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        if e.errno in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES):
            raise BlockingIOError(e.errno, "lease held") from e
        raise


def _read_holder(fd: int) -> str:
    """The holder line a lease file carries (never more than a short line of it)."""
    try:
        text = os.pread(fd, 128, 0).decode("utf-8", errors="replace")
    except OSError:
        return ""
    line = text.splitlines()[0] if text else ""
    return line if re.fullmatch(r"pid \d+ on [\w.-]+", line) else ""


def _forget_in_child() -> None:
    """In a forked child: close the copies of the lease descriptors, so the leases end with
    the parent (the parent's descriptors still hold them), and take a fresh lock (another
    thread of the parent may have held this one at the fork)."""
    global _lock
    _lock = threading.RLock()
    for fd, _ in _held.values():
        with contextlib.suppress(OSError):  # closed already: the parent's lease is unaffected
            os.close(fd)
    _held.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_in_child)
