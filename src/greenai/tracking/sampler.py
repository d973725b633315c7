"""The sampler: one per clock and process, sampling every device that a run meters.

Every tracker, window, test and thread shares it. Each device has one
:class:`~greenai.tracking.channel.DeviceChannel` here, made on first use; a run attaches
to the channels of its devices (:meth:`Sampler.attach`) and gets its own
:class:`~greenai.tracking.run_samples.RunSamples`, which receives every sample taken while
it is attached. One thread (or, on a :class:`~greenai.core.clock.VirtualClock`, the
clock's timers) samples the attached devices on a fixed grid and polls the GPU energy
counters just before each update (phase-locked polling, see
:mod:`greenai.tracking.staleness`), so a window boundary is placed between two known
updates at once, from what is already known.

A GPU channel stays polled while a run that ended is not finished (its last boundary may
need the counter's next updates), then for :data:`LINGER_S`, so the next
run (the next test, the next window of a training loop) finds its update log warm; then
the thread ends. All state here is guarded by :attr:`Sampler.lock`; device reads happen
under it, so samples and boundaries are taken in time order. A forked child starts with
no sampler (the parent's thread did not follow it).
"""

from __future__ import annotations

import logging
import math
import threading
import weakref
from collections import deque
from collections.abc import Sequence

from greenai.core import clock as _clock
from greenai.core.forks import after_fork_in_child
from greenai.devices import Device
from greenai.tracking.channel import DeviceChannel
from greenai.tracking.run_samples import RunSamples

logger = logging.getLogger(__name__)

LINGER_S = 15.0
"""How long a GPU counter stays polled after its last run, to keep its update log warm."""

_MAX_ERRORS = 16


class Sampler:
    """Samples the devices of every run attached to it, on ``clock``.

    Use :func:`shared` to get the sampler of a clock; runs :meth:`attach` and
    :meth:`detach`.
    """

    def __init__(self, clock: _clock.Clock) -> None:
        self.clock = clock
        self.lock = threading.RLock()
        self.resolved = threading.Condition(self.lock)  # notified after every round
        self.errors: deque[tuple[float, str]] = deque(maxlen=_MAX_ERRORS)
        self._channels: dict[int, DeviceChannel] = {}
        self._runs: list[RunSamples] = []
        self._period_s = math.inf
        self._grid_origin = math.nan  # samples fall at origin + k * period (no drift)
        self._grid_index = 0
        self._next_sample_t = math.inf
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._timer: _clock.Timer | None = None

    # ----------------------------------------------------------------- runs
    def attach(
        self, devices: Sequence[Device], *, period_s: float, warnings: Sequence[str] = ()
    ) -> RunSamples:
        """Start metering ``devices`` for one run: its first sample is taken now."""
        with self.lock:
            channels = [self._channel(d) for d in devices]
            run = RunSamples(self, channels, period_s=period_s, warnings=warnings)
            now = self.clock.now()
            run.t_origin = now
            self._sample([run], channels, now)
            for c in channels:
                c.runs += 1
                c.holds += 1
            self._runs.append(run)
            if period_s < self._period_s or not math.isfinite(self._next_sample_t):
                self._period_s = min(self._period_s, period_s)
                self._grid_origin, self._grid_index = now, 1
                self._next_sample_t = now + self._period_s
            self._ensure_running(now)
        self._wake.set()
        return run

    def detach(self, run: RunSamples) -> None:
        """Stop sampling for ``run`` (its samples so far are kept); its devices stay polled
        until :meth:`release`, for the counter updates that place its last boundaries."""
        with self.lock:
            if run not in self._runs:
                return
            self._runs.remove(run)
            for c in run.channels:
                c.runs -= 1
            self._period_s = min((r.period_s for r in self._runs), default=math.inf)
            if not self._runs:
                self._next_sample_t = math.inf
        self._wake.set()  # the thread re-plans: it may have nothing left to do

    def release(self, run: RunSamples) -> None:
        """``run`` is finished: its devices need no more polling for it (once)."""
        with self.lock:
            if run.released:
                return
            run.released = True
            now = self.clock.now()
            for c in run.channels:
                c.holds -= 1
                if c.holds == 0:
                    c.idle_since = now
        self._wake.set()

    def sample_run(self, run: RunSamples) -> None:
        """Take one sample of ``run``'s devices now, for it alone (at its end)."""
        with self.lock:
            now = self.clock.now()
            if now > run.times[-1]:
                self._sample([run], run.channels, now)

    def _channel(self, device: Device) -> DeviceChannel:
        """The device's channel, made on first use (again after a failure)."""
        channel = self._channels.get(id(device))
        if channel is None or channel.device is not device or channel.failed_at is not None:
            # a virtual clock's polls land when planned: nothing to fit (see UpdateLog)
            fit = not isinstance(self.clock, _clock.VirtualClock)
            channel = self._channels[id(device)] = DeviceChannel(device, fit_phase=fit)
        return channel

    # ----------------------------------------------------------------- the thread
    def _ensure_running(self, now: float) -> None:
        if isinstance(self.clock, _clock.VirtualClock):
            if self._timer is None:
                self._timer = self.clock.call_at(now, self._on_timer)
        elif self._thread is None:
            self._thread = threading.Thread(
                target=self._run_thread, name="greenai-sampler", daemon=True
            )
            self._thread.start()

    def _on_timer(self, now: float) -> None:
        assert isinstance(self.clock, _clock.VirtualClock)
        with self.lock:  # held across the round: an attach meanwhile sees the timer's fate
            due = self._tick(now)
            self._timer = None if due is None else self.clock.call_at(due, self._on_timer)

    def _run_thread(self) -> None:
        while True:
            due = self._tick(self.clock.now())
            if due is None:
                return
            delay = due - self.clock.now()
            if delay > 0:
                self._wake.wait(delay)
                self._wake.clear()

    def _tick(self, now: float) -> float | None:
        """One round: sample if due, poll the counters that are due. Returns when the next
        round is due, or None when nothing is left to do (the thread or timer ends)."""
        with self.lock:
            try:
                if self._runs and now >= self._next_sample_t:
                    self._sample(self._runs, [c for c in self._channels.values() if c.runs], now)
                    self._grid_index = max(
                        self._grid_index + 1,
                        math.floor((now - self._grid_origin) / self._period_s) + 1,
                    )
                    self._next_sample_t = self._grid_origin + self._grid_index * self._period_s
                self._poll_counters(now)
            except Exception as e:  # a bug here must not kill the sampler silently: results say so
                logger.debug("sampler error", exc_info=True)
                self.errors.append((now, f"sampler error: {e!r}"))
            self.resolved.notify_all()
            self._drop_idle(now)
            channels = self._channels.values()
            polls = [c.next_poll_t for c in channels if c.polled]
            due = min([self._next_sample_t, *polls])
            if not math.isfinite(due):
                self._thread = None  # under the lock: a later attach starts a new one
                return None
            return due

    def _drop_idle(self, now: float) -> None:
        """Forget channels no run uses, once they are not worth keeping warm."""
        for key, c in list(self._channels.items()):
            if c.holds:
                continue
            keep = c.polled and c.warm and now - c.idle_since < LINGER_S
            if not keep:
                del self._channels[key]

    # ----------------------------------------------------------------- readings
    def _sample(
        self, runs: Sequence[RunSamples], channels: Sequence[DeviceChannel], now: float
    ) -> None:
        """Read ``channels`` at ``now`` and give the sample to every run in ``runs`` whose
        devices are all among them."""
        values = {id(c): c.read(now) for c in channels}
        for run in runs:
            if all(id(c) in values for c in run.channels):
                run.record(now, [values[id(c)] for c in run.channels])

    def _poll_counters(self, now: float) -> None:
        """Poll the GPUs that are due, to time their updates and settle boundaries."""
        for c in list(self._channels.values()):
            if c.polled and now >= c.next_poll_t:
                c.poll(now, self.clock.now)


_samplers: weakref.WeakKeyDictionary[_clock.Clock, Sampler] = weakref.WeakKeyDictionary()
_samplers_lock = threading.Lock()


def shared(clock: _clock.Clock) -> Sampler:
    """The sampler of ``clock`` in this process, made on first use."""
    with _samplers_lock:
        sampler = _samplers.get(clock)
        if sampler is None:
            sampler = _samplers[clock] = Sampler(clock)
        return sampler


def _forget_after_fork() -> None:
    """A forked child has no sampler thread: it starts its own samplers from scratch."""
    global _samplers, _samplers_lock
    _samplers = weakref.WeakKeyDictionary()
    _samplers_lock = threading.Lock()


after_fork_in_child(_forget_after_fork)
