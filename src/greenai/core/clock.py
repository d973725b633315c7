"""The clock every timestamp in greenai comes from.

Tracking reads :func:`active` once at start. Outside a simulation that is the
process's monotonic clock; :func:`greenai.sim.simulated_nvml` with
``virtual_clock=True`` installs a :class:`VirtualClock`, on which time advances
only when the simulation advances it, so hour-long scenarios run in milliseconds
and the tracker sees exactly the simulation's time. Units: seconds.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Protocol

from greenai.core.forks import renew_in_child


class Clock(Protocol):
    """A source of time in seconds, and a way to let time pass."""

    virtual: bool

    def now(self) -> float:
        """Seconds on this clock (monotonic, arbitrary origin)."""
        ...

    def sleep(self, seconds: float) -> None:
        """Let ``seconds`` pass: block in real time, or advance a virtual clock."""
        ...


class MonotonicClock:
    """Real time: :func:`time.monotonic`."""

    virtual = False

    def now(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


class Timer:
    """A callback scheduled on a :class:`VirtualClock`; ``cancel()`` stops it from running."""

    __slots__ = ("callback", "cancelled")

    def __init__(self, callback: Callable[[float], None]) -> None:
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class VirtualClock:
    """Simulated time that moves only through :meth:`advance`.

    Code that would run periodically on a thread in real time (the tracker's
    sampler) schedules callbacks with :meth:`call_at` instead; :meth:`advance`
    runs them in time order, each at its exact scheduled instant, in the
    advancing thread. So no thread is needed and every run is reproducible.
    """

    virtual = True

    def __init__(self, start_s: float = 0.0) -> None:
        self._now = float(start_s)
        self._queue: list[tuple[float, int, Timer]] = []
        self._seq = itertools.count()
        self._lock = threading.RLock()
        renew_in_child(self)

    def _after_fork_in_child(self) -> None:
        """The timers are the parent's samplers': none of them runs in a forked child."""
        self._lock = threading.RLock()
        self._queue = []

    def now(self) -> float:
        return self._now

    def sleep(self, seconds: float) -> None:
        self.advance(seconds)

    def call_at(self, when_s: float, callback: Callable[[float], None]) -> Timer:
        """Run ``callback(now)`` when the clock reaches ``when_s`` (on the next advance if past)."""
        timer = Timer(callback)
        with self._lock:
            heapq.heappush(self._queue, (max(when_s, self._now), next(self._seq), timer))
        return timer

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds``, running due callbacks at their own instants."""
        if not seconds >= 0:  # also rejects NaN
            raise ValueError(f"seconds must be a non-negative number, got {seconds!r}")
        with self._lock:
            target = self._now + seconds
            while self._queue and self._queue[0][0] <= target:
                when, _, timer = heapq.heappop(self._queue)
                if timer.cancelled:
                    continue
                self._now = max(self._now, when)
                timer.callback(self._now)
            self._now = target


_default: Clock = MonotonicClock()
_active: Clock = _default


def active() -> Clock:
    """The clock in force now (the monotonic clock unless a simulation installed another)."""
    return _active


@contextmanager
def use(clock: Clock) -> Iterator[Clock]:
    """Make ``clock`` the active clock inside the ``with`` block."""
    global _active
    previous = _active
    _active = clock
    try:
        yield clock
    finally:
        _active = previous
