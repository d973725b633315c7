"""The sampler: every metered device's power and cumulative energy over a run.

A :class:`Sampler` holds one :class:`DeviceMeter` per device and the times of its
samples. From :meth:`Sampler.start` to :meth:`Sampler.stop` a thread (or, on a
:class:`~greenai.core.clock.VirtualClock`, the clock's timers) samples every device on a
fixed grid and polls the GPU energy counters that are due, to time their updates
(phase-locked polling, see :mod:`greenai.tracking.staleness`) and so settle the window
boundaries read between two updates. Boundaries themselves are read in the user's thread
(:mod:`greenai.tracking.readings`), under the sampler's lock.

Every reading passes a :class:`~greenai.devices.plausible.ReadingGuard`, which tells a
counter restart from noise and rejects values the device cannot produce; what it saw is
kept per device (:class:`Incidents`) for the results' partial reasons. A device whose
sensor fails is dropped from then on. A failure, and a device's first incident, are queued
and shown by :meth:`Sampler.flush_warnings`, in the user's thread, never from the sampler's.
"""

from __future__ import annotations

import logging
import math
import threading
from array import array
from collections.abc import Sequence

from greenai.core import clock as _clock
from greenai.core.errors import NotSupportedError, SensorWarning, warn
from greenai.devices import Device
from greenai.devices.plausible import Event, ReadingGuard, max_power_w
from greenai.tracking.power_readings import PowerLog
from greenai.tracking.staleness import POLL_S, CounterBoundary, UpdateLog

logger = logging.getLogger(__name__)

RESOLVE_TIMEOUT_S = 1.0  # longest wait for GPU counter updates around a boundary
_MAX_SPANS = 256  # per device and kind of incident; later ones extend the last span


class Incidents:
    """What a device's guard saw, by kind: spans of time with at least one incident.

    Bounded for runs of any length: past :data:`_MAX_SPANS` spans of one kind, a new
    incident extends the last span (so more windows, never fewer, are marked partial).
    """

    def __init__(self) -> None:
        self.first: dict[str, Event] = {}
        self.spans: dict[str, list[list[float]]] = {}

    def __bool__(self) -> bool:
        return bool(self.first)

    def add(self, event: Event) -> bool:
        """Record ``event``; True when it is the device's first incident."""
        first = not self.first
        spans = self.spans.setdefault(event.kind, [])
        if len(spans) < _MAX_SPANS:
            spans.append([event.t, event.t])
        else:
            spans[-1][1] = max(spans[-1][1], event.t)
        self.first.setdefault(event.kind, event)
        return first

    def reasons(self, t0: float, t1: float, t_origin: float) -> list[str]:
        """One partial reason per kind of incident within ``[t0, t1]``."""
        reasons = []
        for kind, spans in self.spans.items():
            inside = [s for s in spans if s[0] <= t1 and s[1] >= t0]
            if inside:
                first = self.first[kind]
                times = "once" if len(inside) == 1 else f"{len(inside)} times"
                reasons.append(
                    f"{first.message} ({first.t - t_origin:.3f} s into the run; "
                    f"{kind} {times} in this window)"
                )
        return reasons


class DeviceMeter:
    """One device's readings within one tracker."""

    def __init__(self, device: Device) -> None:
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
        self.cum_j = array("d")  # cumulative energy at each sample (held after a failure)
        self.power_w = array("d")
        self.pending: list[CounterBoundary] = []  # in time order, settled in that order
        self.last_boundary: CounterBoundary | None = None
        self.updates = UpdateLog()
        self.next_poll_t = -math.inf
        # power-only GPU: its readings' lag, period and phase (power_readings.py)
        self.power_log = (
            PowerLog(max_w=max_power_w(device))
            if not self.counter and device.kind == "gpu"
            else None
        )


class Sampler:
    """Samples a run's devices every ``period_s``: :meth:`first_sample`, then :meth:`start`.

    Args:
        devices: The devices to sample (unique names).
        clock: The run's clock; a virtual one is driven by its timers, not a thread.
        period_s: Spacing of the sampling grid. Units: s.
        lock: Guards every series here; the tracker's windows share it.
        warnings: Messages to show before any sensor failure (devices asked for and missing).
    """

    def __init__(
        self,
        devices: Sequence[Device],
        *,
        clock: _clock.Clock,
        period_s: float,
        lock: threading.RLock,
        warnings: Sequence[str] = (),
    ) -> None:
        self.meters = [DeviceMeter(d) for d in devices]
        self.clock = clock
        self.lock = lock
        self.times = array("d")  # when each sample was taken, on ``clock``
        self.error = ""  # a failure of the sampler itself, for the results' partial reasons
        self._period_s = period_s
        self._unwarned = list(warnings)
        self._t_origin = math.nan
        self._sample_index = 0
        self._next_sample_t = math.inf
        self._resolved = threading.Condition(lock)
        self._stopping = threading.Event()
        self._wake_event = threading.Event()
        self._thread: threading.Thread | None = None
        self._timer: _clock.Timer | None = None

    # ----------------------------------------------------------------- the thread
    def first_sample(self, t_origin: float) -> None:
        """Take the run's first sample, at ``t_origin``: the sampling grid starts there."""
        self._t_origin = t_origin
        self.sample(t_origin)
        self._sample_index = 1
        self._next_sample_t = t_origin + self._period_s

    def start(self) -> None:
        """Sample in the background: a thread, or the virtual clock's timers."""
        if isinstance(self.clock, _clock.VirtualClock):
            self._schedule(self.clock.now())
        else:
            self._thread = threading.Thread(
                target=self._run_thread, name="greenai-sampler", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        """Stop sampling and join the thread (cancel the timer)."""
        self._stopping.set()
        if self._thread is not None:
            self._wake_event.set()
            self._thread.join()
            self._thread = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def await_resolution(self) -> None:
        """Wait (bounded) until every GPU counter boundary so far is resolved."""
        deadline = self.clock.now() + RESOLVE_TIMEOUT_S
        virtual = isinstance(self.clock, _clock.VirtualClock)
        with self.lock:
            while any(m.pending for m in self.meters):
                remaining = deadline - self.clock.now()
                if remaining <= 0:
                    logger.debug(
                        "GPU counters did not update within %.1f s; using stale readings",
                        RESOLVE_TIMEOUT_S,
                    )
                    for m in self.meters:
                        m.pending.clear()
                    break
                if virtual:
                    self.clock.sleep(POLL_S)
                else:
                    self._resolved.wait(remaining)

    def await_power(self, t: float) -> None:
        """Wait (bounded) until every power-only GPU's readings settle its energy up to ``t``."""
        deadline = self.clock.now() + RESOLVE_TIMEOUT_S
        logs = [m.power_log for m in self.meters if m.power_log is not None and m.failed_at is None]
        with self.lock:
            while any(not log.final(t) for log in logs) and self.clock.now() < deadline:
                if isinstance(self.clock, _clock.VirtualClock):
                    self.clock.sleep(POLL_S)
                else:
                    self._resolved.wait(deadline - self.clock.now())

    def _schedule(self, when_s: float) -> None:
        assert isinstance(self.clock, _clock.VirtualClock)
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self.clock.call_at(when_s, self._on_timer)

    def _on_timer(self, now: float) -> None:
        self._timer = None
        if not self._stopping.is_set():
            self._schedule(self._tick(now))

    def _run_thread(self) -> None:
        while not self._stopping.is_set():
            due = self._tick(self.clock.now())
            delay = due - self.clock.now()
            if delay > 0:
                self._wake_event.wait(delay)
                self._wake_event.clear()

    def _tick(self, now: float) -> float:
        """One round of the sampler; returns when the next round is due."""
        try:
            if now >= self._next_sample_t:
                self.sample(now)
                # sample on a fixed grid (no drift), skipping instants already past
                self._sample_index = max(
                    self._sample_index + 1,
                    math.floor((now - self._t_origin) / self._period_s) + 1,
                )
                self._next_sample_t = self._t_origin + self._sample_index * self._period_s
            self._poll_counters(now)
        except Exception as e:  # a bug here must not kill the sampler silently: results say so
            logger.debug("sampler error", exc_info=True)
            with self.lock:
                self.error = self.error or f"sampler error: {e!r}"
        with self.lock:
            self._resolved.notify_all()
            polls = [
                m.next_poll_t
                for m in self.meters
                if (m.coarse or m.power_log is not None) and m.failed_at is None
            ]
        return min([self._next_sample_t, *polls])

    # ----------------------------------------------------------------- readings
    def sample(self, now: float) -> None:
        """Record one power sample of every device."""
        readings: list[tuple[float | None, float | None]] = []
        for m in self.meters:
            energy_j = power_w = None
            if m.failed_at is None:
                try:
                    if m.counter:
                        energy_j = float(m.device.energy_j())
                    if m.power_from_reading:
                        power_w = _read_power(m)
                except Exception as e:  # any sensor failure: the run goes on without this device
                    self._fail(m, e, now)
                    energy_j = power_w = None
            readings.append((energy_j, power_w))
        with self.lock:
            previous_t = self.times[-1] if self.times else now
            self.times.append(now)
            for m, (raw_j, raw_w) in zip(self.meters, readings, strict=True):
                power_w = math.nan if raw_w is None else self._check_power(m, now, raw_w)
                last_j = m.cum_j[-1] if m.cum_j else 0.0
                if m.counter:
                    energy_j = None if raw_j is None else self._check_energy(m, now, raw_j)
                    cum_j = last_j if energy_j is None else energy_j
                    if m.coarse and energy_j is not None:
                        m.updates.observe(now, energy_j)
                elif math.isnan(power_w):
                    cum_j = last_j
                else:
                    if m.power_log is not None:
                        m.power_log.observe(now, power_w)
                    last_w = (
                        m.power_w[-1] if m.power_w and not math.isnan(m.power_w[-1]) else power_w
                    )
                    cum_j = last_j + (last_w + power_w) / 2.0 * (now - previous_t)
                if m.counter and not m.power_from_reading and len(m.cum_j) and now > previous_t:
                    power_w = (
                        (cum_j - last_j) / (now - previous_t) if m.failed_at is None else math.nan
                    )
                    if len(m.power_w) == 1:
                        m.power_w[0] = (
                            power_w  # the first sample has no delta: use the first interval's
                        )
                m.cum_j.append(cum_j)
                m.power_w.append(power_w)

    def _poll_counters(self, now: float) -> None:
        """Poll the GPU counters that are due, to time their updates and settle boundaries."""
        for m in self.meters:
            if m.power_log is not None and m.failed_at is None and now >= m.next_poll_t:
                self._poll_power(m, m.power_log, now)
            if not m.coarse or m.failed_at is not None or now < m.next_poll_t:
                continue
            energy_j = self.read_energy(m, now)
            if energy_j is None:
                continue
            t = (now + self.clock.now()) / 2.0
            with self.lock:
                m.updates.observe(t, energy_j)
                while m.pending and m.pending[0].resolve(m.updates.updates, m.last_boundary):
                    m.last_boundary = m.pending.pop(0)
                if m.updates.fresh:
                    logger.debug(
                        "%s: counter updates every %.4f s; no correction needed",
                        m.name,
                        m.updates.period_s,
                    )
                    m.coarse = False
                    m.pending.clear()  # their stale readings are fresh enough
                m.next_poll_t = m.updates.next_poll(now)

    def _poll_power(self, m: DeviceMeter, log: PowerLog, now: float) -> None:
        """Poll a power-only GPU, to time its readings' publications (power_readings.py)."""
        try:
            raw_w = float(m.device.power_w())
        except Exception as e:  # any sensor failure: the run goes on without this device
            self._fail(m, e, now)
            return
        t = (now + self.clock.now()) / 2.0
        with self.lock:
            log.observe(t, self._check_power(m, t, raw_w))
            m.next_poll_t = log.next_poll(now)

    def read_energy(self, m: DeviceMeter, t: float) -> float | None:
        """The device's checked, continuous counter at ``t``; None when the read failed (now
        or before) or was rejected."""
        try:
            raw_j = float(m.device.energy_j())
        except Exception as e:  # any sensor failure: the run goes on without this device
            self._fail(m, e, t)
            return None
        with self.lock:
            return self._check_energy(m, t, raw_j)

    def _check_energy(self, m: DeviceMeter, t: float, raw_j: float) -> float | None:
        """``raw_j`` through the device's guard (under the lock)."""
        energy_j, event = m.guard.energy(t, raw_j)
        if event is not None:
            self._note(m, event)
        resets = m.device.counter_resets
        if resets != m.resets_seen:
            m.resets_seen = resets
            self._note(
                m,
                Event(
                    t,
                    "device restart",
                    f"{m.name} reported that its energy counter restarted; the energy "
                    "between the last read and the restart is missing",
                ),
            )
        return energy_j

    def _check_power(self, m: DeviceMeter, t: float, raw_w: float) -> float:
        """``raw_w`` through the device's guard (under the lock): it, or NaN if rejected."""
        power_w, event = m.guard.power(t, raw_w)
        if event is not None:
            self._note(m, event)
        return power_w

    def _note(self, m: DeviceMeter, event: Event) -> None:
        """Keep an incident for the results; queue a warning for the device's first one
        (the results' reasons list them all)."""
        logger.debug("%s at t=%.3f: %s", event.kind, event.t, event.message)
        if m.incidents.add(event):
            self._unwarned.append(event.message)

    def _fail(self, m: DeviceMeter, error: BaseException, t: float) -> None:
        """Drop the device from ``t`` on: its open boundaries keep their stale readings."""
        with self.lock:
            if m.failed_at is not None:
                return
            m.failed_at = t
            m.failure = f"{type(error).__name__}: {error}"
            for boundary in m.pending:
                boundary.value_j = boundary.stale_j
            m.pending.clear()
            self._unwarned.append(f"{m.name} stopped answering ({m.failure})")
        logger.debug("%s failed at t=%.3f: %s", m.name, t, m.failure)

    def flush_warnings(self) -> None:
        """Show queued sensor warnings, in the user's thread (never from the sampler)."""
        with self.lock:
            messages, self._unwarned = self._unwarned, []
        for message in messages:
            warn(f"greenai: {message}; results are marked partial", SensorWarning)


def _read_power(m: DeviceMeter) -> float | None:
    """The device's power reading (unchecked); None when a counter device has none and
    derives its power from energy instead."""
    try:
        return float(m.device.power_w())
    except NotSupportedError:
        if not m.counter:
            raise
        m.power_from_reading = False
        return None
