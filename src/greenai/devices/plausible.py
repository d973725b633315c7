"""What a device's readings may be: counter restarts, noise and impossible values told apart.

Every energy and power reading of every device passes through a :class:`ReadingGuard`
(one per device, owned by the tracker's sampler), so these rules live in one place:

* a **restart** is the counter starting again from near zero (a driver reload): it
  decreased, and its new value is no more than the device could have spent since the
  last accepted reading (:func:`allowance_j`). Counting goes on from the new value; the
  energy between the last reading and the restart is lost.
* a **dip** no larger than :meth:`ReadingGuard.noise_j` (the counter's resolution, the
  float rounding of a large value, and two reads of one counter crossing by up to
  :data:`SKEW_S`) is noise: no change.
* an **impossible** reading is rejected: energy that rose by more than
  :func:`allowance_j`, any other decrease, a power above the maximum power times
  :data:`MARGIN`, or a value that is NaN, infinite or negative. A rejected energy reading
  is held at the last accepted value; if the next reading agrees with the rejected one
  rather than the old one, the counter really moved, and counting goes on from there
  (and, should it come back, from where it was before it moved).

The maximum power is the device's highest settable power limit (NVML's power limit
constraints); devices without one (RAPL, estimates, most custom devices) are bounded by
:data:`UNKNOWN_MAX_W`. Units: s, J, W.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

MARGIN = 1.5
"""How far beyond its maximum power limit a device may draw, briefly (boost, sensor error)."""

UNKNOWN_MAX_W = 20_000.0
"""Maximum power assumed for a device that declares none: above any single accelerator,
CPU package or memory domain (the largest GPU modules draw 1-3 kW)."""

LAG_S = 1.0
"""A counter read may be up to one update period stale (NVML: 20-100 ms): allowances
cover this much beyond the time between reads."""

RESOLUTION_J = 0.001
"""An energy counter's resolution when the device declares none (NVML counts millijoules)."""

SKEW_S = 0.005
"""How far two reads of one counter, in two threads, may cross in time."""

_NOISE_STEPS = 10
_REL_ROUNDING = 1e-9

EventKind = Literal["restart", "rejected", "moved", "bad value", "device restart"]


@dataclass(frozen=True)
class Event:
    """Something a device reported that the tracker did not take at face value."""

    t: float
    kind: EventKind
    message: str


def max_power_w(device: object) -> float | None:
    """The device's highest settable power limit, or None when it declares none. Units: W."""
    try:
        hi_w = float(device.power_limit_range_w()[1])  # type: ignore[attr-defined]
    except Exception:  # no limits (RAPL, estimates), or a custom device that cannot say
        return None
    return hi_w if math.isfinite(hi_w) and hi_w > 0 else None


def allowance_j(max_w: float, elapsed_s: float) -> float:
    """The most a device of maximum power ``max_w`` can spend in ``elapsed_s``, with margins."""
    return max_w * MARGIN * (max(0.0, elapsed_s) + LAG_S)


class ReadingGuard:
    """Checks one device's readings; turns its counter into a checked, continuous series.

    Not thread-safe: the sampler calls it under its lock.

    Args:
        name: The device's name, for messages.
        max_w: Its maximum power limit, or None for :data:`UNKNOWN_MAX_W`. Units: W.
        resolution_j: Its counter's resolution. Units: J.
    """

    def __init__(
        self, name: str, max_w: float | None, *, resolution_j: float = RESOLUTION_J
    ) -> None:
        self.name = name
        self.max_w = UNKNOWN_MAX_W if max_w is None else max_w
        self.max_label = f"{self.max_w:g} W" + (" (assumed)" if max_w is None else "")
        self.resolution_j = resolution_j
        self.total_j = 0.0  # the continuous counter: accepted increases since the first reading
        self._last: tuple[float, float] | None = None  # (t, raw) of the last accepted reading
        self._suspect: tuple[float, float] | None = None  # (t, raw) of the last rejected one
        # (t, raw, total) before the counter last moved: it may come back there
        self._moved_from: tuple[float, float, float] | None = None

    def noise_j(self, raw_j: float) -> float:
        """The largest decrease of a counter at ``raw_j`` that is noise. Units: J."""
        return (
            _NOISE_STEPS * self.resolution_j
            + _REL_ROUNDING * abs(raw_j)
            + self.max_w * MARGIN * SKEW_S
        )

    def energy(self, t: float, raw_j: float) -> tuple[float | None, Event | None]:
        """Check the counter ``raw_j`` read at ``t``.

        Returns:
            The continuous counter (None when the reading is rejected) and what happened,
            if it was anything but an ordinary reading or noise.
        """
        if not math.isfinite(raw_j) or raw_j < 0:
            return None, Event(t, "bad value", f"{self.name} reported energy {raw_j!r} J")
        if self._last is None:
            self._last = (t, raw_j)
            return self.total_j, None
        last_t, last_j = self._last
        change = self._classify(last_t, last_j, t, raw_j)
        if change is not None:
            # the base moves only when the counter rose: a dip within the noise keeps the
            # higher reading, and the allowance runs from the counter's last change
            self._accept(t, raw_j, change, rebase=change > 0)
            return self.total_j, None
        if self._moved_from is not None:
            from_t, from_j, from_total_j = self._moved_from
            back_j = self._classify(from_t, from_j, t, raw_j)
            if back_j is not None:  # the counter came back: count from before it moved
                self._accept(t, raw_j, 0.0, rebase=True)
                self.total_j = max(self.total_j, from_total_j + back_j)
                return self.total_j, Event(
                    t,
                    "moved",
                    f"{self.name}'s energy counter came back to {raw_j:.3f} J after "
                    f"reading {last_j:.3f} J",
                )
        if raw_j < last_j and raw_j <= allowance_j(self.max_w, t - last_t):
            self._accept(t, raw_j, raw_j, rebase=True)
            return self.total_j, Event(
                t,
                "restart",
                f"{self.name}'s energy counter restarted (read {last_j:.3f} J, then "
                f"{raw_j:.3f} J {t - last_t:.3f} s later); the energy between those "
                "reads is missing",
            )
        suspect, self._suspect = self._suspect, (t, raw_j)
        moved_j = None if suspect is None else self._classify(*suspect, t, raw_j)
        if moved_j is not None:  # agrees with the rejected reading: the counter really moved
            self._moved_from = (last_t, last_j, self.total_j)
            self._accept(t, raw_j, moved_j, rebase=True)
            return self.total_j, Event(
                t,
                "moved",
                f"{self.name}'s energy counter moved from {last_j:.3f} J to about "
                f"{raw_j:.3f} J and stayed there; the energy between those reads is missing",
            )
        return None, Event(
            t,
            "rejected",
            f"{self.name} reported energy {raw_j:.3f} J, {t - last_t:.3f} s after "
            f"{last_j:.3f} J: more than a {self.max_label} device can change; rejected",
        )

    def power(self, t: float, power_w: float) -> tuple[float, Event | None]:
        """Check the power ``power_w`` read at ``t``: it, or NaN and why it was rejected."""
        if not math.isfinite(power_w) or power_w < 0:
            return math.nan, Event(t, "bad value", f"{self.name} reported power {power_w!r} W")
        if power_w > self.max_w * MARGIN:
            return math.nan, Event(
                t,
                "rejected",
                f"{self.name} reported power {power_w:g} W, more than its maximum "
                f"{self.max_label} x {MARGIN:g}; rejected",
            )
        return power_w, None

    def _classify(self, last_t: float, last_j: float, t: float, raw_j: float) -> float | None:
        """The energy between two readings if the second is plausible after the first."""
        change_j = raw_j - last_j
        if 0 <= change_j <= allowance_j(self.max_w, t - last_t):
            return change_j
        # a read taken before the last one (its thread reached the lock later) may be lower
        # by what the device can spend between the two instants
        behind_s = max(0.0, last_t - t)
        if change_j < 0 and -change_j <= self.noise_j(last_j) + self.max_w * MARGIN * behind_s:
            return 0.0
        return None

    def _accept(self, t: float, raw_j: float, change_j: float, *, rebase: bool) -> None:
        self.total_j += change_j
        self._suspect = None
        if rebase:
            self._last = (t, raw_j)
