"""Power limits that are always given back: :class:`PowerLimitGuard` and :func:`recover`.

A GPU power limit outlives the process that set it (it lasts until the driver
reloads or someone sets another), so a run that lowers it and dies would leave
the GPU slow for everyone after it. Every limit greenai changes goes through a
:class:`PowerLimitGuard`, which restores the original on every way out: normal
end of the ``with`` block, an exception, ``KeyboardInterrupt``, ``SIGTERM``,
``SIGHUP`` and ``SIGQUIT`` (a handler restores, then hands the signal on:
:mod:`greenai.control.limit_signals`) and interpreter exit (``atexit``).

The GPU is shared with other people's jobs, so a guard changes a GPU's limit only while
it holds that GPU's lease (:mod:`greenai.control.lease`): one process at a time, the one
that recorded the original. A guard that finds the lease taken changes nothing and says
which process controls the GPU. A limit that cannot be put back is a warning naming the
command that fixes it, and its lease is held until the process ends.

A hard kill (``SIGKILL``, OOM killer, power loss) runs none of that. For that
case the original limit is written to a journal file
(:mod:`greenai.control.limit_journal`) *before* the limit is changed; the next
guard to start (or anyone calling :func:`recover`) finds the entries of
processes that are gone and puts their originals back
(:mod:`greenai.control.recovery`).

Nested guards on the same device (in one process) are supported in LIFO order:
each guard restores the limit it found when it first changed the device, and
the journal keeps the outermost original (the one found first), which only the
guard that wrote it removes.
"""

from __future__ import annotations

import atexit
import logging
import math
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import NamedTuple

from greenai.control import lease, limit_signals
from greenai.control.limit_journal import (
    add_entry,
    default_journal_path,
    device_key,
    device_label,
    locked,
    remove_entry,
    thread_lock,
)
from greenai.control.recovery import recover_journal
from greenai.core.errors import (
    ControlWarning,
    DeviceError,
    NoPermissionError,
    NotSupportedError,
    warn,
)
from greenai.devices.base import Device

__all__ = [
    "PowerLimitGuard",
    "Refusal",
    "recover",
]

logger = logging.getLogger(__name__)


class Refusal(NamedTuple):
    """A limit the guard would have set but could not (no permission, not supported, ...).

    Attributes:
        device: The device it was meant for.
        limit_w: The limit that would have been set. Units: W.
        reason: Why it was not set, in words.
    """

    device: Device
    limit_w: float
    reason: str


def recover(
    journal_path: str | os.PathLike[str] | None = None,
    devices: Sequence[Device] | None = None,
) -> list[str]:
    """Put back the power limits that a killed greenai process left changed.

    Reads the journal; for each entry whose process is gone (or is an earlier
    process that had this pid), sets every recorded device that is present back
    to its original limit and removes it from the journal. Entries of live
    processes are left alone: they are still steering. Devices that are not
    present here (another ``CUDA_VISIBLE_DEVICES``) stay in the journal for a
    process that sees them. When one device appears under several dead
    processes, the earliest one's original wins (the later ones recorded a
    limit the earlier one had set). Never raises.

    Args:
        journal_path: The journal;
            :func:`~greenai.control.limit_journal.default_journal_path` when None.
        devices: Where to look for the recorded devices (matched by UUID, or name
            for devices without one); the visible NVIDIA GPUs when None.

    Returns:
        One line per limit restored, e.g. ``"gpu0 (GPU-...): 450 W -> 700 W (left by pid 12 on
        node1)"``. Empty when there was nothing to do.
    """
    path = Path(journal_path) if journal_path is not None else default_journal_path()
    return recover_journal(path, devices, steering_here=_journaled_here)


# --------------------------------------------------------------------------- the guard

_active: list[PowerLimitGuard] = []  # guards that may hold changed limits, oldest first
_atexit_registered = False


def _restore_all_active() -> None:
    """Restore every active guard, newest first (so nested guards unwind in order)."""
    with thread_lock:
        guards = list(reversed(_active))
    for guard in guards:
        try:
            guard.restore()
        except Exception as e:  # pragma: no cover - restore() itself never raises
            logger.debug("restoring %r failed: %r", guard, e)


def _at_exit() -> None:
    _restore_all_active()


def _journaled_here() -> bool:
    """Whether a guard of this process holds journal entries (its own entries are live)."""
    with thread_lock:
        return any(g._journaled for g in _active)


@dataclass
class _Held:
    """What a guard knows about one device whose limit it changed."""

    device: Device
    original_w: float


class PowerLimitGuard:
    """Owns the power limits of some GPUs and gives every changed one back.

    Use as a context manager (or call :meth:`close`). On entry it first runs
    :func:`recover` for its devices, so limits left by a killed run are put back
    before this one starts. :meth:`set_limit_w` records a device's original limit
    in the journal before the first change; :meth:`restore` (called on every way
    out) sets the originals back and removes their journal entries.

    Without permission to set limits (containers, no root) nothing is raised:
    one :class:`~greenai.core.errors.ControlWarning` says so, :attr:`permitted`
    becomes False, and :attr:`refused` lists what would have been set, so a
    controller can report what it would have chosen. Metering is unaffected.

    Args:
        devices: The GPUs this guard may steer (objects with the
            :class:`~greenai.devices.base.Device` protocol), identified by their
            ``uuid`` attribute where present, else their ``name``.
        journal_path: The journal file;
            :func:`~greenai.control.limit_journal.default_journal_path` when None.

    Attributes:
        permitted: False once a limit was refused (no permission, not supported).
        refused: Every limit that could not be set, in order.
        recovered: What :func:`recover` put back when this guard was entered.
        journal_path: The journal file in use.
    """

    def __init__(
        self,
        devices: Sequence[Device],
        *,
        journal_path: str | os.PathLike[str] | None = None,
    ) -> None:
        self._devices: dict[str, Device] = {}
        for device in devices:
            key = device_key(device)
            if key in self._devices:
                raise ValueError(f"device {device_label(device)} is listed twice")
            self._devices[key] = device
        self.journal_path = (
            Path(journal_path) if journal_path is not None else default_journal_path()
        )
        self.permitted = True
        self.refused: list[Refusal] = []
        self.recovered: list[str] = []
        self._held: dict[str, _Held] = {}  # devices changed and not yet restored
        self._journaled: set[str] = set()  # devices whose journal entry this guard wrote
        self._denied: set[str] = set()  # devices not to be tried again
        self._warned = False
        self._lock = threading.RLock()
        self._leased: set[str] = set()  # devices whose lease this guard holds
        self._entered = False

    def __repr__(self) -> str:
        names = ", ".join(d.name for d in self._devices.values())
        return f"PowerLimitGuard([{names}], journal_path={str(self.journal_path)!r})"

    # -- context manager

    def __enter__(self) -> PowerLimitGuard:
        """Recover limits left by killed runs, then start guarding (signal handlers, atexit)."""
        if self._entered:
            raise RuntimeError(f"{self!r} is already active; a guard cannot be entered twice")
        self.recovered = recover(self.journal_path, list(self._devices.values()))
        self._entered = True
        self._activate()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Restore every changed limit; never raises (the block's own exception goes on)."""
        self.close()

    def close(self) -> list[str]:
        """Restore every changed limit and stop guarding. A limit that could not be put back
        is a :class:`~greenai.core.errors.ControlWarning` naming the command that fixes it.

        Returns:
            What :meth:`restore` could not put back (empty when all went well).
        """
        failed = self.restore()
        self._entered = False
        with thread_lock:
            if not self._held and self in _active:
                _active.remove(self)
            if not _active:
                limit_signals.uninstall()
        if failed:
            warn(
                "greenai could not restore the power limit of "
                + "; ".join(failed)
                + ". Restore it with `greenai limits --restore` (as a user allowed to set "
                "limits), or `nvidia-smi -i INDEX -pl WATTS`.",
                ControlWarning,
            )
        return failed

    # -- steering

    def limit_range_w(self, device: Device) -> tuple[float, float]:
        """The lowest and highest limit ``device`` accepts. Units: W."""
        return self._owned(device).power_limit_range_w()

    def set_limit_w(self, device: Device, limit_w: float) -> bool:
        """Set ``device``'s power limit, journaling its original first time round.

        Args:
            device: One of the guard's devices.
            limit_w: The new limit. Units: W.

        Returns:
            True when the limit is now in force; False when it was refused (see
            :attr:`refused`): no permission, not supported, the journal cannot be
            written, or the device failed.

        Raises:
            ValueError: ``limit_w`` is outside the device's range (the range is in
                the message), or ``device`` is not one of the guard's devices.
            TypeError: ``limit_w`` is not a real number.
        """
        owned = self._owned(device)
        if isinstance(limit_w, bool) or not isinstance(limit_w, int | float):
            raise TypeError(f"limit_w must be a number of watts, got {limit_w!r}")
        key = device_key(owned)
        label = device_label(owned)
        with self._lock:
            if key in self._denied:
                self._refuse(owned, limit_w, "refused earlier")
                return False
            try:
                lo_w, hi_w = owned.power_limit_range_w()
            except DeviceError as e:
                self._deny(owned, limit_w, e)
                return False
            if not (math.isfinite(limit_w) and lo_w <= limit_w <= hi_w):
                raise ValueError(
                    f"limit_w={limit_w!r} is outside {label}'s power limit range "
                    f"[{lo_w:g}, {hi_w:g}] W"
                )
            first = key not in self._held
            if first:
                if not self._take_lease(owned, limit_w):
                    return False
                try:
                    original_w = owned.power_limit_w()
                except DeviceError as e:
                    self._drop_lease(key)
                    self._deny(owned, limit_w, e)
                    return False
                try:
                    self._journal_add(owned, original_w)
                except OSError as e:
                    self._drop_lease(key)
                    self._refuse(
                        owned,
                        limit_w,
                        f"the journal {self.journal_path} cannot be written ({e})",
                        warn_about=True,
                        deny=True,
                    )
                    return False
                self._held[key] = _Held(owned, original_w)
                self._activate()
            try:
                owned.set_power_limit_w(float(limit_w))
            except DeviceError as e:
                if first:  # nothing changed: forget the original again
                    del self._held[key]
                    self._journal_remove(key)
                    self._drop_lease(key)
                self._deny(owned, limit_w, e)
                return False
            return True

    def restore(self) -> list[str]:
        """Set every changed device back to the limit it had before this guard changed it.

        Idempotent; safe from signal handlers and ``atexit``. A device that fails
        (lost, permission withdrawn) is kept in the journal (so the next start tries
        again), keeps its lease while this process lives (so no other process records
        the wrong original) and is named in the return value; nothing raises.

        Returns:
            One line per device that could not be restored; empty when all were.
        """
        failed: list[str] = []
        with self._lock:
            for key, held in reversed(list(self._held.items())):
                if key not in self._held:
                    continue  # restored meanwhile (a signal handler ran inside this loop)
                try:
                    held.device.set_power_limit_w(held.original_w)
                except Exception as e:  # never out of __exit__, a handler or atexit
                    logger.debug(
                        "%s: could not restore the power limit to %g W: %r",
                        device_label(held.device),
                        held.original_w,
                        e,
                    )
                    failed.append(f"{device_label(held.device)} to {held.original_w:g} W ({e})")
                    continue
                del self._held[key]
                try:
                    self._journal_remove(key)
                except Exception as e:
                    logger.debug("could not update %s: %r", self.journal_path, e)
                self._drop_lease(key)
        return failed

    @property
    def changed(self) -> dict[str, float]:
        """Original limits of the devices changed and not yet restored, by device name. Units: W."""
        with self._lock:
            return {h.device.name: h.original_w for h in self._held.values()}

    # -- internals

    def _owned(self, device: Device) -> Device:
        owned = self._devices.get(device_key(device))
        if owned is None:
            raise ValueError(f"{device_label(device)} is not one of this guard's devices")
        return owned

    def _deny(self, device: Device, limit_w: float, error: DeviceError) -> None:
        if isinstance(error, NoPermissionError):
            reason = f"no permission to set power limits ({error})"
        elif isinstance(error, NotSupportedError):
            reason = f"power limits are not supported ({error})"
        else:
            reason = f"the device failed ({error})"
        self._refuse(device, limit_w, reason, warn_about=True, deny=True)

    def _refuse(
        self,
        device: Device,
        limit_w: float,
        reason: str,
        *,
        warn_about: bool = False,
        deny: bool = False,
    ) -> None:
        self.permitted = False
        self.refused.append(Refusal(device, float(limit_w), reason))
        if deny:
            self._denied.add(device_key(device))
        if warn_about and not self._warned:
            self._warned = True
            warn(
                f"greenai cannot set the power limit of {device_label(device)}: {reason}. "
                f"Metering goes on; the limits greenai would have chosen are reported instead "
                f"(here {float(limit_w):g} W).",
                ControlWarning,
            )

    def _activate(self) -> None:
        """Join the process-wide list restored at exit and on signals; install the handlers."""
        global _atexit_registered
        with thread_lock:
            if self not in _active:
                _active.append(self)
            if not _atexit_registered:
                atexit.register(_at_exit)
                _atexit_registered = True
            if self._entered:
                limit_signals.install(_restore_all_active)

    def _take_lease(self, device: Device, limit_w: float) -> bool:
        """Take ``device``'s lease, then put back what killed runs left on it; False (refused)
        when another process controls it or the lease cannot be taken."""
        key = device_key(device)
        path = lease.lease_path(self.journal_path.parent, key)
        try:
            lease.acquire(path)
        except lease.LeaseHeld as e:
            self._refuse(
                device,
                limit_w,
                f"it is {e} (another greenai process); metering only",
                warn_about=True,
                deny=True,
            )
            return False
        except OSError as e:
            self._refuse(
                device, limit_w, f"its lease {path} cannot be taken ({e})", warn_about=True
            )
            return False
        self._leased.add(key)
        self.recovered += recover(self.journal_path, [device])
        return True

    def _drop_lease(self, key: str) -> None:
        if key in self._leased:
            self._leased.discard(key)
            lease.release(lease.lease_path(self.journal_path.parent, key))

    def _journal_add(self, device: Device, original_w: float) -> None:
        """Record ``device``'s original limit under this process, unless already recorded."""
        with locked(self.journal_path):
            if add_entry(self.journal_path, device, original_w):
                self._journaled.add(device_key(device))

    def _journal_remove(self, key: str) -> None:
        """Drop this guard's journal entry for ``key`` (the original is back in force)."""
        if key not in self._journaled:
            return
        with locked(self.journal_path):
            remove_entry(self.journal_path, key)
            self._journaled.discard(key)
