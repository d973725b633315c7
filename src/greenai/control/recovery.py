"""Putting back the power limits that killed greenai processes left changed.

The work behind :func:`greenai.control.limits.recover`: read the journal
(:mod:`greenai.control.limit_journal`), find the entries of processes that are
gone, set their devices back to the recorded originals and drop the entries.
Whether this process's own entries are still live is the guards' to say, so
they pass that in. A device is put back only under its lease
(:mod:`greenai.control.lease`), so never under a process that is steering it.
"""

from __future__ import annotations

import logging
import math
import os
import socket
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from greenai.control import lease
from greenai.control.limit_journal import (
    JournalForeign,
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
from greenai.core.errors import ControlWarning, DeviceError, warn
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
        if not os.path.lexists(path):
            return restored
        with locked(path):
            try:
                owners = read_owners(path)
            except JournalForeign as e:
                _warn_untrusted(path, str(e))
                return restored
            except JournalUnreadable as e:
                set_aside(path, str(e))
                return restored
            stale = [o for o in owners if not _owner_alive(o, steering_here)]
            if not stale:
                return restored
            present = _present_devices(devices)
            done: set[str] = set()
            unrestored: list[str] = []
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
                    line = _restore_leased(path, device, entry, owner, unrestored)
                    if line is None:
                        kept.append(entry)  # try again at the next start
                    else:
                        done.add(key)
                        restored.append(line)
                owner["devices"] = kept
            write_owners(path, owners)
        _warn_unrestored(unrestored)
    except PermissionError as e:  # the state folder or the lock is another user's
        _warn_untrusted(path, str(e))
    except Exception as e:  # recovery is best effort: it must never stop a run from starting
        logger.debug("power-limit recovery from %s failed: %r", path, e, exc_info=True)
    return restored


_warned_untrusted: set[Path] = set()
_warned_unrestored: set[str] = set()


def _warn_unrestored(lines: list[str]) -> None:
    """Say once per device and process that a limit a killed run left could not be put back."""
    fresh = [line for line in lines if line not in _warned_unrestored]
    if not fresh:
        return
    _warned_unrestored.update(fresh)
    warn(
        "greenai: power limits left changed by a killed run could not be restored: "
        + "; ".join(fresh)
        + ". Restore them with `greenai limits --restore` as a user allowed to set limits.",
        ControlWarning,
    )


def _warn_untrusted(path: Path, why: str) -> None:
    """Say once per journal that it was not acted on (another user's, or a link)."""
    if path in _warned_untrusted:
        return
    _warned_untrusted.add(path)
    warn(
        f"greenai: ignoring the power-limit journal {path}: {why}. Only journals this user "
        "wrote are trusted; check the GPUs' limits with `greenai limits`.",
        ControlWarning,
    )


def default_limit_w(device: Device) -> float | None:
    """The GPU's default power limit, where its driver reports one. Units: W."""
    read = getattr(device, "default_power_limit_w", None)
    if read is None:
        return None
    try:
        value = float(read())
    except (DeviceError, TypeError, ValueError):
        logger.debug("%s: no default power limit", device_label(device), exc_info=True)
        return None
    return value if math.isfinite(value) and value > 0 else None


def trusted_limit_w(device: Device, recorded: object) -> tuple[float, str] | None:
    """The limit to put ``device`` back to from a ``recorded`` original: the original when it
    is a number inside the GPU's own range, else the GPU's default limit; with a note on
    which it is. None when neither is known."""
    try:
        lo_w, hi_w = device.power_limit_range_w()
    except DeviceError:
        return None
    if (
        isinstance(recorded, int | float)
        and not isinstance(recorded, bool)
        and math.isfinite(recorded)
        and lo_w <= recorded <= hi_w
    ):
        return float(recorded), ""
    default_w = default_limit_w(device)
    if default_w is None or not lo_w <= default_w <= hi_w:
        return None
    shown = f"{recorded:g} W" if isinstance(recorded, float | int) else "not a number"
    why = f"the recorded original, {shown}, is outside [{lo_w:g}, {hi_w:g}] W"
    return default_w, f" (its default: {why})"


def _present_devices(devices: Sequence[Device] | None) -> dict[str, Device]:
    if devices is None:
        from greenai.devices import probe_gpus

        devices = probe_gpus()
    return {device_key(d): d for d in devices}


def _restore_leased(
    path: Path,
    device: Device,
    entry: dict[str, Any],
    owner: dict[str, Any],
    unrestored: list[str],
) -> str | None:
    """:func:`_restore_entry` under the device's lease: never under a process steering it."""
    lease_file = lease.lease_path(path.parent, device_key(device))
    try:
        lease.acquire(lease_file)
    except (lease.LeaseHeld, OSError) as e:
        logger.debug("%s: not restoring now: %r", device_label(device), e)
        return None
    try:
        return _restore_entry(device, entry, owner, unrestored)
    finally:
        lease.release(lease_file)


def _restore_entry(
    device: Device, entry: dict[str, Any], owner: dict[str, Any], unrestored: list[str]
) -> str | None:
    """Set one journaled original back (the GPU's default where the original is not one it
    could have had); the report line, or None when it failed (said in ``unrestored``)."""
    chosen = trusted_limit_w(device, entry.get("original_limit_w"))
    if chosen is None:
        unrestored.append(f"{device_label(device)} (no trustworthy original, no default limit)")
        return None
    limit_w, note = chosen
    try:
        before_w = device.power_limit_w()
        device.set_power_limit_w(limit_w)
    except (DeviceError, ValueError) as e:
        logger.debug("%s: could not restore %s W: %r", device_label(device), limit_w, e)
        unrestored.append(f"{device_label(device)} to {limit_w:g} W ({e})")
        return None
    return (
        f"{device_label(device)}: {before_w:g} W -> {limit_w:g} W{note} "
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


class JournalEntry(NamedTuple):
    """One device a greenai process changed, as the journal records it (for ``greenai
    limits``): whose process, whether it is still running, and the original limit. Units: W."""

    pid: object
    hostname: object
    alive: bool
    key: str
    name: object
    original_limit_w: object


def journal_entries(path: Path) -> list[JournalEntry]:
    """What the journal at ``path`` records; [] when there is none.

    Raises:
        JournalUnreadable: It cannot be read (:class:`JournalForeign`: another user's).
    """
    if not os.path.lexists(path):
        return []
    with locked(path):
        owners = read_owners(path)
    entries = []
    for owner in owners:
        alive = _owner_alive(owner, lambda: False)
        for entry in owner.get("devices") or []:
            if isinstance(entry, dict) and isinstance(entry.get("key"), str):
                entries.append(
                    JournalEntry(
                        owner.get("pid"),
                        owner.get("hostname"),
                        alive,
                        entry["key"],
                        entry.get("name"),
                        entry.get("original_limit_w"),
                    )
                )
    return entries
