"""The power-limit journal: the original limits, on disk before they are changed.

A hard kill (``SIGKILL``, OOM killer, power loss) runs none of a
:class:`~greenai.control.limits.PowerLimitGuard`'s ways out, and a GPU power
limit outlives the process that set it. So the guard writes a device's original
limit here *before* changing it, and :func:`~greenai.control.limits.recover`
puts back the entries of processes that are gone.

Journal format (JSON, written atomically; its folder is
``$GREENAI_STATE_DIR`` or ``$XDG_STATE_HOME/greenai``)::

    {"format": "greenai-power-limits", "version": 1,
     "owners": [{"pid": 1234, "hostname": "node1", "started_at": 1718000000.0,
                 "proc_start_ticks": 987654,
                 "devices": [{"key": "GPU-...", "uuid": "GPU-...", "name": "gpu0",
                              "original_limit_w": 700.0}]}]}

One entry per process; processes sharing the journal serialize through an
``fcntl.flock`` on a sidecar ``.lock`` file (:func:`locked`) and keep each
other's entries. A process is told apart from an earlier one that had its pid
by its start time in clock ticks (Linux ``/proc``).

A journal sets hardware limits, so only one this user wrote is trusted: its folder is
created 0700, the journal and its lock are 0600 and opened without following links, and
a journal that belongs to another user is never read, rewritten or moved
(:class:`JournalForeign`).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from greenai.core.errors import ControlWarning, warn
from greenai.core.state import (
    POWER_LIMIT_JOURNAL,
    ForeignFileError,
    open_private,
    private_dir,
    state_dir,
)
from greenai.devices.base import Device

logger = logging.getLogger(__name__)

_FORMAT = "greenai-power-limits"
_VERSION = 1


def default_journal_path() -> Path:
    """``$GREENAI_STATE_DIR/power_limits.json``, else ``$XDG_STATE_HOME/greenai/power_limits.json``.

    ``XDG_STATE_HOME`` falls back to ``~/.local/state`` when unset, empty or not an
    absolute path (the XDG Base Directory rules).
    """
    return state_dir() / POWER_LIMIT_JOURNAL


def device_key(device: Device) -> str:
    """A stable identity for a device: its NVML UUID where it has one, else its name."""
    uuid = getattr(device, "uuid", None)
    return uuid if isinstance(uuid, str) and uuid else device.name


def device_label(device: Device) -> str:
    """The device's name, with its UUID where it has one: how messages name it."""
    key = device_key(device)
    return device.name if key == device.name else f"{device.name} ({key})"


thread_lock = threading.RLock()  # reentrant: a SIGTERM handler may run inside a journal update
_flocks: dict[Path, tuple[int, int]] = {}  # path -> (fd, depth) of the sidecar locks held


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold the journal exclusively: a thread lock in-process, ``flock`` across processes.

    Reentrant within a thread, so a signal handler that interrupts a journal update
    in the main thread does not deadlock on the lock its own thread holds.
    """
    with thread_lock:
        held = _flocks.get(path)
        if held is None:
            private_dir(path.parent)
            fd = open_private(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT)
            try:
                if sys.platform != "win32":
                    import fcntl

                    fcntl.flock(fd, fcntl.LOCK_EX)
            except BaseException:
                os.close(fd)
                raise
            held = (fd, 0)
        _flocks[path] = (held[0], held[1] + 1)
        try:
            yield
        finally:
            fd, depth = _flocks[path]
            if depth <= 1:
                del _flocks[path]
                os.close(fd)  # closing the only descriptor releases the flock
            else:
                _flocks[path] = (fd, depth - 1)


class JournalUnreadable(Exception):
    """The journal exists but is not a greenai power-limit journal this version can read."""


class JournalForeign(JournalUnreadable):
    """The journal belongs to another user (or is a link): it is not acted on, nor touched."""


def read_owners(path: Path) -> list[dict[str, Any]]:
    """The journal's owner entries; [] when there is no journal. Call under :func:`locked`.

    Raises:
        JournalForeign: The journal is another user's, or a link.
        JournalUnreadable: It is not a journal this version can read.
    """
    try:
        fd = open_private(path, os.O_RDONLY)
    except FileNotFoundError:
        return []
    except ForeignFileError as e:
        raise JournalForeign(str(e)) from None
    except OSError as e:
        raise JournalForeign(f"{path} cannot be opened safely ({e.strerror})") from None
    with os.fdopen(fd, "rb") as f:
        raw = f.read(1 << 20)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise JournalUnreadable(f"{path} is not UTF-8 text") from e
    try:
        data = json.loads(text)
    except ValueError as e:
        line = getattr(e, "lineno", "?")
        raise JournalUnreadable(f"{path} is not valid JSON (line {line})") from None
    if not isinstance(data, dict) or data.get("format") != _FORMAT:
        raise JournalUnreadable(f"{path} is not a greenai power-limit journal")
    if data.get("version") != _VERSION:
        raise JournalUnreadable(f"{path} has version {data.get('version')!r}, not {_VERSION}")
    owners = data.get("owners")
    if not isinstance(owners, list) or not all(isinstance(o, dict) for o in owners):
        raise JournalUnreadable(f"{path} has no valid owner list")
    return owners


def write_owners(path: Path, owners: list[dict[str, Any]]) -> None:
    """Replace the journal atomically, or delete it when no owner has entries left."""
    from greenai.core.files import fsync_directory, write_atomic

    owners = [o for o in owners if o.get("devices")]
    if not owners:
        try:
            path.unlink()
        except FileNotFoundError:
            return
        fsync_directory(path.parent)
        return
    data = {"format": _FORMAT, "version": _VERSION, "owners": owners}
    write_atomic(path, (json.dumps(data, indent=1) + "\n").encode("utf-8"), mode=0o600)


def proc_stat(pid: int) -> tuple[str, int] | None:
    """``(state, start time in clock ticks since boot)`` of a process, from Linux ``/proc``."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
        fields = text[text.rindex(")") + 2 :].split()
        return fields[0], int(fields[19])
    except (OSError, ValueError, IndexError):
        return None


def own_start_ticks() -> int | None:
    """This process's start time in clock ticks since boot (None where ``/proc`` is not)."""
    stat = proc_stat(os.getpid())
    return None if stat is None else stat[1]


def is_this_process(owner: dict[str, Any]) -> bool:
    """Whether a journal owner entry is this process's (not an earlier one with its pid)."""
    if owner.get("pid") != os.getpid() or owner.get("hostname") != socket.gethostname():
        return False
    ticks = owner.get("proc_start_ticks")
    own = own_start_ticks()
    return not (isinstance(ticks, int) and own is not None and ticks != own)


def set_aside(path: Path, why: str) -> None:
    """Move an unreadable journal out of the way once, saying so: it cannot be acted on."""
    aside = path.with_name(path.name + ".unreadable")
    try:
        os.replace(path, aside)
    except OSError as e:
        logger.debug("could not move %s aside: %r", path, e)
        return
    warn(
        f"greenai: {why}; moved it to {aside}. Power limits it recorded were not restored; "
        "check them with `nvidia-smi -q -d POWER`.",
        ControlWarning,
    )


def add_entry(path: Path, device: Device, original_w: float) -> bool:
    """Record ``device``'s original limit under this process, unless already recorded.

    Call under :func:`locked`.

    Returns:
        True when this call wrote the entry; False when this process's entry for the
        device was there already (an outer guard holds the first original).
    """
    key = device_key(device)
    try:
        owners = read_owners(path)
    except JournalForeign as e:
        raise PermissionError(f"the journal is not safe to use: {e}") from None
    except JournalUnreadable as e:
        set_aside(path, str(e))
        owners = []
    pid = os.getpid()
    owner = next((o for o in owners if is_this_process(o)), None)
    if owner is None:
        owner = {
            "pid": pid,
            "hostname": socket.gethostname(),
            "started_at": time.time(),
            "proc_start_ticks": own_start_ticks(),
            "devices": [],
        }
        owners.append(owner)
    entries: list[dict[str, Any]] = owner.setdefault("devices", [])
    if any(isinstance(e, dict) and e.get("key") == key for e in entries):
        return False
    uuid = getattr(device, "uuid", None)
    entries.append(
        {
            "key": key,
            "uuid": uuid if isinstance(uuid, str) else None,
            "name": device.name,
            "original_limit_w": float(original_w),
        }
    )
    write_owners(path, owners)
    return True


def remove_entry(path: Path, key: str) -> None:
    """Drop this process's entry for the device ``key``; call under :func:`locked`."""
    try:
        owners = read_owners(path)
    except JournalUnreadable as e:
        logger.debug("not updating %s: %s", path, e)
        return
    for owner in owners:
        if is_this_process(owner):
            owner["devices"] = [
                e
                for e in owner.get("devices") or []
                if not (isinstance(e, dict) and e.get("key") == key)
            ]
    write_owners(path, owners)
