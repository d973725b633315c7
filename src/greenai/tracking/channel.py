"""One device's metering state for the life of the process: a :class:`DeviceChannel`.

Every tracker, window and thread that meters a device reads it through the same channel
(see :mod:`greenai.tracking.sampler`), so what is learned about the device outlives any
one run: when its GPU energy counter updates (the :class:`UpdateLog` that settles window
boundaries at once), what its :class:`~greenai.devices.plausible.ReadingGuard` accepted,
what went wrong and when (:class:`Incidents`), and its cumulative energy so far. Runs keep
their own samples; the channel keeps only its last one, to continue the integral.

Nothing here takes a lock: the sampler calls these methods under its own.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections import deque
from collections.abc import Callable

from greenai.core.errors import NotSupportedError
from greenai.devices import Device
from greenai.devices.plausible import Event, ReadingGuard, max_power_w
from greenai.tracking.power_readings import PowerLog
from greenai.tracking.staleness import SAME_INSTANT_S, CounterBoundary, UpdateLog, place_interval

MAX_SPANS = 256
"""Incident spans kept per device and kind; past it the two oldest merge into one."""

MAX_NOTICES = 64
"""Warnings kept per device for the runs to show (older ones are dropped)."""

_notice_seq = itertools.count(1)


class Incidents:
    """What a device's guard saw, by kind: spans of time with at least one incident.

    Bounded for a process of any length: past :data:`MAX_SPANS` spans of one kind, the two
    oldest merge (so an old window may be marked partial for an incident near it, and none
    is ever missed).
    """

    def __init__(self) -> None:
        self.spans: dict[str, deque[tuple[float, float, Event]]] = {}

    def __bool__(self) -> bool:
        return bool(self.spans)

    def add(self, event: Event) -> None:
        spans = self.spans.setdefault(event.kind, deque())
        if len(spans) >= MAX_SPANS:
            a, b = spans.popleft(), spans.popleft()
            spans.appendleft((a[0], b[1], a[2]))
        spans.append((event.t, event.t, event))

    def any_within(self, t0: float, t1: float) -> bool:
        return any(s[0] <= t1 and s[1] >= t0 for spans in self.spans.values() for s in spans)

    def reasons(self, t0: float, t1: float, t_origin: float) -> list[str]:
        """One partial reason per kind of incident within ``[t0, t1]``."""
        reasons = []
        for kind, spans in self.spans.items():
            inside = [s for s in spans if s[0] <= t1 and s[1] >= t0]
            if inside:
                first = inside[0][2]
                times = "once" if len(inside) == 1 else f"{len(inside)} times"
                reasons.append(
                    f"{first.message} ({max(first.t, t0) - t_origin:.3f} s into the run; "
                    f"{kind} {times} in this window)"
                )
        return reasons


class DeviceChannel:
    """One device, metered for every run in this process that names it.

    Attributes:
        last_t: When the last sample was taken (-inf before the first). Units: s.
        last_cum_j: Cumulative energy at ``last_t``: the checked counter, or the integral
            of the power readings for a device without one. Units: J.
        last_power_w: Power at ``last_t`` (NaN when unknown). Units: W.
        notices: Warnings for the runs to show, each with a sequence number and time.
    """

    def __init__(self, device: Device, *, fit_phase: bool = True) -> None:
        self.device = device
        self.name = device.name
        self.counter = device.has_energy_counter
        self.coarse = self.counter and device.kind == "gpu"
        # GPUs report a smoothed power; other counters' power is derived from energy deltas.
        self.power_from_reading = not self.counter or self.coarse
        self.failed_at: float | None = None
        self.failure = ""
        self.resets_seen = device.counter_resets
        self.guard = ReadingGuard(self.name, max_power_w(device))
        self.incidents = Incidents()
        self.updates = UpdateLog(fit_phase=fit_phase)
        # a GPU without a counter: its readings' period, phase and lag (power_readings.py)
        self.power_log = (
            PowerLog(max_w=max_power_w(device))
            if not self.counter and device.kind == "gpu"
            else None
        )
        self.pending: list[CounterBoundary] = []  # in time order, settled in that order
        self.last_boundary: CounterBoundary | None = None
        self.next_poll_t = -math.inf
        self.last_t = -math.inf
        self.last_cum_j = 0.0
        self.last_power_w = math.nan
        self.notices: deque[tuple[int, float, str, str]] = deque(maxlen=MAX_NOTICES)
        self.runs = 0  # runs attached now (sampled)
        self.holds = 0  # runs attached or ended and not finished yet (polled for them)
        self.idle_since = math.inf  # when the last hold was released

    # ----------------------------------------------------------------- readings
    def read(self, now: float) -> tuple[float, float]:
        """Read the device at ``now`` and continue the integral: (cumulative J, power W).

        A failed device holds its last cumulative energy, with NaN power.
        """
        energy_j = power_w = None
        if self.failed_at is None:
            try:
                if self.counter:
                    energy_j = float(self.device.energy_j())
                if self.power_from_reading:
                    power_w = self._read_power()
            except Exception as e:  # any sensor failure: the runs go on without this device
                self.fail(e, now)
                energy_j = power_w = None
        checked_w = math.nan if power_w is None else self.check_power(now, power_w)
        previous_t = self.last_t if self.last_t > -math.inf else now
        last_j = self.last_cum_j
        if self.counter:
            checked_j = None if energy_j is None else self.check_energy(now, energy_j)
            cum_j = last_j if checked_j is None else checked_j
            if self.coarse and checked_j is not None:
                self.updates.observe(now, checked_j)
            if not self.power_from_reading:
                if self.failed_at is not None:
                    checked_w = math.nan
                elif now > previous_t and self.last_t > -math.inf:
                    checked_w = (cum_j - last_j) / (now - previous_t)
        elif math.isnan(checked_w):
            cum_j = last_j
        else:
            if self.power_log is not None:
                self.power_log.observe(now, checked_w)
            last_w = self.last_power_w if not math.isnan(self.last_power_w) else checked_w
            cum_j = last_j + (last_w + checked_w) / 2.0 * (now - previous_t)
        if now >= self.last_t:
            self.last_t, self.last_cum_j, self.last_power_w = now, cum_j, checked_w
        return cum_j, checked_w

    def read_energy(self, t: float) -> float | None:
        """The checked, continuous counter at ``t``; None when the read failed (now or
        before) or was rejected."""
        if self.failed_at is not None:
            return None
        try:
            raw_j = float(self.device.energy_j())
        except Exception as e:  # any sensor failure: the runs go on without this device
            self.fail(e, t)
            return None
        return self.check_energy(t, raw_j)

    def check_energy(self, t: float, raw_j: float) -> float | None:
        """``raw_j`` through the device's guard."""
        energy_j, event = self.guard.energy(t, raw_j)
        if event is not None:
            self.note(event)
        resets = self.device.counter_resets
        if resets != self.resets_seen:
            self.resets_seen = resets
            self.note(
                Event(
                    t,
                    "device restart",
                    f"{self.name} reported that its energy counter restarted; the energy "
                    "between the last read and the restart is missing",
                )
            )
        return energy_j

    def check_power(self, t: float, raw_w: float) -> float:
        """``raw_w`` through the device's guard: it, or NaN if rejected."""
        power_w, event = self.guard.power(t, raw_w)
        if event is not None:
            self.note(event)
        return power_w

    def _read_power(self) -> float | None:
        """The power reading (unchecked); None when a counter device has none and derives
        its power from energy instead."""
        try:
            return float(self.device.power_w())
        except NotSupportedError:
            if not self.counter:
                raise
            self.power_from_reading = False
            return None

    # ----------------------------------------------------------------- incidents
    def note(self, event: Event) -> None:
        """Keep an incident for the results, and a warning for the runs to show."""
        self.incidents.add(event)
        self.notices.append((next(_notice_seq), event.t, event.kind, event.message))

    def fail(self, error: BaseException, t: float) -> None:
        """Drop the device from ``t`` on: its open boundaries keep their stale readings."""
        if self.failed_at is not None:
            return
        self.failed_at = t
        self.failure = f"{type(error).__name__}: {error}"
        for boundary in self.pending:
            boundary.value_j = boundary.stale_j
        self.pending.clear()
        self.notices.append(
            (next(_notice_seq), t, "failed", f"{self.name} stopped answering ({self.failure})")
        )

    # ----------------------------------------------------------------- boundaries
    def add_boundary(self, boundary: CounterBoundary) -> None:
        """Place a boundary read at ``boundary.t`` now if the log allows, else queue it."""
        self.updates.observe(boundary.t, boundary.stale_j)
        anchor = self.last_boundary
        if anchor is not None and anchor.t > boundary.t:
            anchor = None  # read earlier than the last one placed (another thread): no anchor
        if not self.pending and boundary.resolve(self.updates.updates, anchor):
            if self.last_boundary is None or boundary.t >= self.last_boundary.t:
                self.last_boundary = boundary
            return
        if self.pending and boundary.t < self.pending[-1].t:  # read first, added later
            bisect.insort(self.pending, boundary, key=lambda b: b.t)
        else:
            self.pending.append(boundary)

    def settle(self, *, relaxed_until_t: float = -math.inf) -> None:
        """Place the queued boundaries the log now allows, in time order; those that share
        the last placed boundary's update interval together (:func:`place_interval`); up to
        ``relaxed_until_t``, from updates timed imprecisely too (giving up on precise ones)."""
        log = self.updates.updates
        while self.pending:
            head, anchor = self.pending[0], self.last_boundary
            relaxed = head.t <= relaxed_until_t
            if (
                anchor is not None
                and anchor.value_j is not None
                and head.stale_j == anchor.stale_j
                and head.t - anchor.t > SAME_INSTANT_S
            ):
                group = [b for b in self.pending if b.stale_j == head.stale_j]
                period_s = self.updates.period_s
                if not place_interval(anchor, group, log, period_s, relaxed=relaxed):
                    return
                del self.pending[: len(group)]
                self.last_boundary = group[-1]
            elif head.resolve(log, anchor, relaxed=relaxed):
                self.last_boundary = self.pending.pop(0)
            else:
                return

    def settle_best_effort(self, until_t: float = math.inf) -> None:
        """Give up waiting for the queued boundaries up to ``until_t``: they keep their stale
        readings, unless updates timed imprecisely (a busy host) can place them (later
        ones, another run's, still wait for their own updates)."""
        self.settle(relaxed_until_t=until_t)
        given_up = [b for b in self.pending if b.t <= until_t]
        for boundary in given_up:
            boundary.value_j = boundary.stale_j
        if given_up:
            self.last_boundary = given_up[-1]
        del self.pending[: len(given_up)]

    @property
    def warm(self) -> bool:
        """True once the update period of the counter (or power reading) is known."""
        if self.power_log is not None:
            return self.power_log.period_s is not None
        return self.updates.period_s is not None

    @property
    def polled(self) -> bool:
        """Whether the sampler polls this device between samples (to time its updates)."""
        return (self.coarse or self.power_log is not None) and self.failed_at is None

    def poll(self, t: float, now: Callable[[], float]) -> None:
        """One poll at ``t`` (``now`` tells when the read ended): time the device's updates
        and place the boundaries they settle."""
        if self.power_log is not None:
            try:
                raw_w = float(self.device.power_w())
            except Exception as e:  # any sensor failure: the runs go on without this device
                self.fail(e, t)
                return
            mid_t = (t + now()) / 2.0
            self.power_log.observe(mid_t, self.check_power(mid_t, raw_w))
            self.next_poll_t = self.power_log.next_poll(t)
            return
        energy_j = self.read_energy(t)
        if energy_j is None:
            return
        self.updates.observe((t + now()) / 2.0, energy_j)
        self.settle()
        if self.updates.fresh:
            self.coarse = False
            self.settle_best_effort()  # their stale readings are fresh enough
        self.next_poll_t = self.updates.next_poll(t)
