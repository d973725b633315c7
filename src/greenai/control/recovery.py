"""Putting back the power limits that killed greenai processes left changed.

The work behind :func:`greenai.control.limits.recover`: read the journal
(:mod:`greenai.control.limit_journal`), find the entries of processes that are
gone, set their devices back to the recorded originals and drop the entries.
Whether this process's own entries are still live is the guards' to say, so
they pass that in.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from greenai.control.limit_journal import (
    JournalUnreadable,
    device_key,
    device_label,
    locked,
    own_start_ticks,
    proc_stat,
    read_owners,
    set_aside,
    write_owners,
)
from greenai.core.errors import DeviceError
from greenai.devices.base import Device

logger = logging.getLogger(__name__)


def recover_journal(
    path: Path, devices: Sequence[Device] | None, steering_here: Callable[[], bool]
) -> list[str]:
    """Restore and drop the entries of ``path`` whose process is gone; see
    :func:`~greenai.control.limits.recover`, which this does the work of.

    Args:
        path: The journal.
        devices: Where to look for the recorded devices; the visible NVIDIA GPUs
            when None.
        steering_here: Whether this process still holds journal entries (its own
            entries are then live); asked under :func:`~greenai.control.limit_journal.locked`.
    """
    restored: list[str] = []
    try:
        if not path.exists():
            return restored
        with locked(path):
            try:
                owners = read_owners(path)
            except JournalUnreadable as e:
                set_aside(path, str(e))
                return restored
            stale = [o for o in owners if not _owner_alive(o, steering_here)]
            if not stale:
                return restored
            present = _present_devices(devices)
            done: set[str] = set()
            for owner in sorted(stale, key=lambda o: float(o.get("started_at") or 0.0)):
                kept: list[dict[str, Any]] = []
                for entry in owner.get("devices") or []:
                    key = entry.get("key") if isinstance(entry, dict) else None
                    if not isinstance(key, str):
                        continue  # malformed: nothing could ever restore it
                    if key in done:
                        continue  # an earlier owner's original was already put back
                    device = present.get(key)
                    if device is None:
                        kept.append(entry)
                        continue
                    line = _restore_entry(device, entry, owner)
                    if line is None:
                        kept.append(entry)  # try again at the next start
                    else:
                        done.add(key)
                        restored.append(line)
                owner["devices"] = kept
            write_owners(path, owners)
    except Exception as e:  # recovery is best effort: it must never stop a run from starting
        logger.debug("power-limit recovery from %s failed: %r", path, e, exc_info=True)
    return restored


def _present_devices(devices: Sequence[Device] | None) -> dict[str, Device]:
    if devices is None:
        from greenai.devices import probe_gpus

        devices = probe_gpus()
    return {device_key(d): d for d in devices}


def _restore_entry(device: Device, entry: dict[str, Any], owner: dict[str, Any]) -> str | None:
    """Set one journaled original back; the report line, or None when it failed."""
    original_w = entry.get("original_limit_w")
    if isinstance(original_w, bool) or not isinstance(original_w, int | float):
        return None
    try:
        before_w = device.power_limit_w()
        device.set_power_limit_w(float(original_w))
    except (DeviceError, ValueError) as e:
        logger.debug("%s: could not restore %s W: %r", device_label(device), original_w, e)
        return None
    return (
        f"{device_label(device)}: {before_w:g} W -> {float(original_w):g} W "
        f"(left by pid {owner.get('pid')} on {owner.get('hostname')})"
    )


def _owner_alive(owner: dict[str, Any], steering_here: Callable[[], bool]) -> bool:
    """Whether the process that wrote a journal entry may still be steering its devices.

    Errs towards "alive" where it cannot tell (another host), so a live run's
    limits are never reset under it.
    """
    if owner.get("hostname") != socket.gethostname():
        return True  # a journal on a shared home: that host's processes cannot be checked
    pid = owner.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    ticks = owner.get("proc_start_ticks")
    if pid == os.getpid():
        own_ticks = own_start_ticks()
        if isinstance(ticks, int) and own_ticks is not None and ticks != own_ticks:
            return False  # an earlier process that had our pid (a restarted container)
        return steering_here()
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, under another user
    except OSError:
        return True
    stat = proc_stat(pid)
    if stat is None:
        return True
    state, now_ticks = stat
    if state in ("Z", "X"):
        return False  # killed, not yet reaped
    return not (isinstance(ticks, int) and ticks != now_ticks)  # else the pid was reused
