"""Power-limit profiles: time and energy per step at each limit, and where they are kept.

A profile is what the governor measured (or loaded): for each candidate power
limit, the mean step time and the GPUs' energy per step, as Zeus profiles a job.
Between measured limits it is interpolated with monotone cubic (PCHIP) curves:
GPUs' curves are smooth and monotone (energy per step falls, time per step
rises as the limit drops), PCHIP keeps that shape without overshoot, and unlike
straight segments it lets a cost that weighs time against energy have its
minimum between two measured limits. The closed loop corrects what remains.

Profiles are saved as small JSON files, one per job name, GPU model(s) and
limit range, under ``$GREENAI_STATE_DIR/profiles`` or
``$XDG_STATE_HOME/greenai/profiles`` (``~/.local/state`` by default), so a job
run again on the same kind of GPU starts at its chosen limit at once.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from greenai.core.files import write_atomic
from greenai.core.state import state_dir

if TYPE_CHECKING:
    from greenai.control.target import EnergyTarget

logger = logging.getLogger(__name__)

_FORMAT = "greenai-power-profile/1"


@dataclass(frozen=True)
class ProfilePoint:
    """One measured power limit.

    Attributes:
        limit_w: The power limit, set on every governed GPU. Units: W.
        time_s: Mean wall time per step (the slowest GPU's). Units: s.
        energy_j: Mean energy per step, summed over the governed GPUs. Units: J.
    """

    limit_w: float
    time_s: float
    energy_j: float


@dataclass(frozen=True)
class Profile:
    """Step time and energy against power limit; ``points`` sorted by rising limit."""

    points: tuple[ProfilePoint, ...]

    def __post_init__(self) -> None:
        if not self.points:
            raise ValueError("a profile needs at least one point")
        object.__setattr__(self, "points", tuple(sorted(self.points, key=lambda p: p.limit_w)))

    @property
    def lowest_w(self) -> float:
        """Lowest profiled limit. Units: W."""
        return self.points[0].limit_w

    @property
    def highest_w(self) -> float:
        """Highest profiled limit. Units: W."""
        return self.points[-1].limit_w

    def at(self, limit_w: float) -> tuple[float, float]:
        """``(time_s, energy_j)`` per step at ``limit_w``: PCHIP between points, held beyond."""
        limits = [p.limit_w for p in self.points]
        return (
            _pchip(limits, [p.time_s for p in self.points], limit_w),
            _pchip(limits, [p.energy_j for p in self.points], limit_w),
        )

    def grid(self, step_w: float = 1.0) -> list[float]:
        """Limits from the lowest to the highest profiled one, ``step_w`` apart, both ends in."""
        lo, hi = self.lowest_w, self.highest_w
        count = max(int((hi - lo) / step_w), 0)
        return [*(lo + k * step_w for k in range(count)), hi]

    def to_json(self) -> list[dict[str, float]]:
        """The points as JSON-ready dicts, highest limit first."""
        return [
            {"limit_w": p.limit_w, "time_s": p.time_s, "energy_j": p.energy_j}
            for p in reversed(self.points)
        ]

    @classmethod
    def from_json(cls, data: Sequence[dict[str, Any]]) -> Profile:
        """Inverse of :meth:`to_json`; raises ValueError/KeyError/TypeError on bad data."""
        return cls(
            tuple(
                ProfilePoint(float(d["limit_w"]), float(d["time_s"]), float(d["energy_j"]))
                for d in data
            )
        )


def _pchip(xs: Sequence[float], ys: Sequence[float], x: float) -> float:
    """Monotone piecewise-cubic (Fritsch-Carlson) interpolation of ``ys(xs)`` at ``x``.

    ``xs`` rises strictly; outside them the end values are held.
    """
    n = len(xs)
    i = bisect_left(xs, x)
    if i < n and xs[i] == x:
        return ys[i]
    if i in (0, n):
        return ys[0] if i == 0 else ys[-1]
    secants = [(ys[k + 1] - ys[k]) / (xs[k + 1] - xs[k]) for k in range(n - 1)]

    def slope(k: int) -> float:
        if k == 0 or k == n - 1:
            return secants[0] if k == 0 else secants[-1]
        a, b = secants[k - 1], secants[k]
        if a * b <= 0:
            return 0.0
        wa, wb = (
            2 * (xs[k + 1] - xs[k]) + (xs[k] - xs[k - 1]),
            (xs[k + 1] - xs[k]) + 2 * (xs[k] - xs[k - 1]),
        )
        return (wa + wb) / (wa / a + wb / b)

    k = i - 1
    h = xs[k + 1] - xs[k]
    t = (x - xs[k]) / h
    d0, d1 = slope(k), slope(k + 1)
    if n > 2:  # end slopes: no steeper than three times the secant, zero against its sign
        if k == 0 and d0 * secants[0] > 0:
            d0 = min(d0, 3 * secants[0], key=abs)
        if k + 1 == n - 1 and d1 * secants[-1] > 0:
            d1 = min(d1, 3 * secants[-1], key=abs)
    h00, h10 = 2 * t**3 - 3 * t**2 + 1, t**3 - 2 * t**2 + t
    h01, h11 = -2 * t**3 + 3 * t**2, t**3 - t**2
    return h00 * ys[k] + h10 * h * d0 + h01 * ys[k + 1] + h11 * h * d1


def profile_limits(target: EnergyTarget, lowest_w: float, highest_w: float) -> tuple[float, ...]:
    """The limits to profile on GPUs that accept ``[lowest_w, highest_w]``: the target's
    ``limits_w`` inside that range, else its number of ``candidates``, highest first.

    Raises:
        ValueError: None of ``limits_w`` is inside the range.
    """
    if target.limits_w is None:
        return candidate_limits(lowest_w, highest_w, target.candidates)
    limits = tuple(w for w in target.limits_w if lowest_w <= w <= highest_w)
    if not limits:
        raise ValueError(
            f"none of limits_w={target.limits_w} is within the GPUs' "
            f"range [{lowest_w}, {highest_w}] W"
        )
    return limits


def candidate_limits(lowest_w: float, highest_w: float, count: int) -> tuple[float, ...]:
    """``count`` limits evenly spaced from ``highest_w`` down to ``lowest_w`` (W, whole watts)."""
    if highest_w <= lowest_w or count < 2:
        return (float(highest_w),)
    step = (highest_w - lowest_w) / (count - 1)
    return tuple(float(round(highest_w - k * step)) for k in range(count))


def default_profile_dir() -> Path:
    """``$GREENAI_STATE_DIR/profiles``, else ``$XDG_STATE_HOME/greenai/profiles``.

    ``XDG_STATE_HOME`` falls back to ``~/.local/state`` when unset, empty or not an
    absolute path (the XDG Base Directory rules).
    """
    return state_dir() / "profiles"


def profile_key(
    job: str, models: Sequence[str], range_w: tuple[float, float], limits_w: Sequence[float]
) -> dict[str, Any]:
    """What makes two profiles interchangeable: the job, GPU models, limit range and limits."""
    return {
        "job": job,
        "gpu_models": list(models),
        "limit_range_w": [float(range_w[0]), float(range_w[1])],
        "limits_w": sorted(float(w) for w in limits_w),
    }


class ProfileStore:
    """Saved profiles, one JSON file per key, in ``directory`` (:func:`default_profile_dir`).

    Never raises on I/O: a profile that cannot be read is profiled again, one that
    cannot be written is only lost for the next run (both logged at DEBUG).
    """

    def __init__(self, directory: str | os.PathLike[str] | None = None) -> None:
        self.directory = Path(directory) if directory is not None else default_profile_dir()

    def path(self, key: dict[str, Any]) -> Path:
        """The file holding ``key``'s profile."""
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in str(key["job"]))[:40]
        return self.directory / f"{safe}-{digest}.json"

    def load(self, key: dict[str, Any]) -> Profile | None:
        """The saved profile for ``key``, or None (none saved, unreadable or another key's)."""
        path = self.path(key)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if data.get("format") != _FORMAT or data.get("key") != key:
                return None
            return Profile.from_json(data["points"])
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            logger.debug("unreadable power profile %s", path, exc_info=True)
            return None

    def save(self, key: dict[str, Any], profile: Profile) -> None:
        """Save ``profile`` under ``key``, replacing any older one atomically."""
        data = {"format": _FORMAT, "key": key, "points": profile.to_json()}
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            write_atomic(self.path(key), json.dumps(data, indent=1).encode())
        except OSError:
            logger.debug("could not save power profile to %s", self.directory, exc_info=True)
