"""Tracking: ``greenai.track()``, :class:`Meter`, windows, steps and the sampler.

How a window's energy is measured, per device:

* Counters read at the boundary (RAPL, the CPU estimate): the difference of the
  two readings.
* GPU energy counters (NVML) update only every ~20-100 ms, so a reading at a
  boundary is up to one update old: several percent of a one-second window.
  The sampler times the counter's updates (phase-locked polling, see
  :mod:`greenai.tracking.staleness`) and each boundary is placed between two updates,
  normally at once; only the run's first boundary waits for the next updates,
  in the background. Results are ready without waiting.
* Devices that only report power (pre-Volta GPUs, the DRAM estimate): the
  trapezoidal integral of the sampled power.

The tracker never raises into the user's code because a sensor failed: the
device is dropped from then on, results that span the failure are marked
partial, and one :class:`~greenai.core.errors.SensorWarning` is shown.
"""

from __future__ import annotations

import functools
import logging
import math
import sys
import threading
import time
import uuid
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from types import TracebackType
from typing import Any, ParamSpec, Protocol, TypeVar

from greenai.core import clock as _clock
from greenai.core.errors import GatherWarning, NotSupportedError, OutputWarning, SensorWarning, warn
from greenai.devices import Device, probe, probe_gpus
from greenai.tracking.forecast import is_epoch, predict
from greenai.tracking.job import (
    DEFAULT_GATHER_TIMEOUT_S,
    GATHER_MODES,
    Gather,
    JobContext,
    RankReport,
    identity,
    local_gpus,
)
from greenai.tracking.machine import describe
from greenai.tracking.result import Forecast, PowerTimeline, Result, Snapshot, StepStats
from greenai.tracking.staleness import POLL_S, CounterBoundary, UpdateLog

logger = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")

DEFAULT_SAMPLE_PERIOD_S = 0.1
_RESOLVE_TIMEOUT_S = 1.0  # longest wait for GPU counter updates around a boundary


class _DeviceMeter:
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
        self.reset_times: list[float] = []
        self.cum_j = array("d")  # cumulative energy at each sample (held after a failure)
        self.power_w = array("d")
        self.pending: list[CounterBoundary] = []  # in time order, settled in that order
        self.last_boundary: CounterBoundary | None = None
        self.updates = UpdateLog()
        self.next_poll_t = -math.inf


class RunObserver(Protocol):
    """Follows a run from inside the tracker: the hook the control layer steers through.

    The tracking layer never imports what observes it; :mod:`greenai.control`'s
    governor implements this. Calls come in the user's thread. An observer must
    not raise: the tracker calls it inside the user's training loop.
    """

    def run_started(self, tracker: Meter) -> None:
        """The run has started: its devices are probed and its first readings taken."""
        ...

    def step_ended(self, start_s: float, end_s: float) -> None:
        """A step ended normally; its start and end on the tracker's clock. Units: s."""
        ...

    def run_stopping(self) -> dict[str, Any]:
        """The run is about to stop: returns entries for the run result's ``metadata``."""
        ...

    def run_stopped(self, result: Result) -> None:
        """The run has stopped; ``result`` is this process's own (before a job's ranks
        are gathered), with the exact final figures."""
        ...


class _Mark:
    """A window boundary: its time and the counters read there."""

    __slots__ = ("t", "values")

    def __init__(self, t: float, values: dict[str, float | CounterBoundary]) -> None:
        self.t = t
        self.values = values


class _Span:
    __slots__ = ("children", "end", "name", "result", "start")

    def __init__(self, name: str | None, start: _Mark) -> None:
        self.name = name
        self.start = start
        self.end: _Mark | None = None
        self.children: list[_Span] = []
        self.result: Result | None = None


class Window:
    """A named phase of a run. Its :attr:`result` is ready once the window has ended."""

    def __init__(self, tracker: Meter, name: str) -> None:
        self._tracker = tracker
        self.name = name
        self._span: _Span | None = None

    def __enter__(self) -> Window:
        self._span = self._tracker._open_span(self.name, nested=True)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._span is not None
        self._tracker._close_span(self._span)

    @property
    def result(self) -> Result:
        """The window's energy (waits only if a GPU counter has not updated since the start)."""
        if self._span is None or self._span.end is None:
            raise RuntimeError(f"window {self.name!r} has not ended yet")
        return self._tracker._finalize(self._span)


class _Step:
    __slots__ = ("_t0", "_tracker")

    def __init__(self, tracker: Meter) -> None:
        self._tracker = tracker
        self._t0 = 0.0

    def __enter__(self) -> _Step:
        self._t0 = self._tracker._clock.now()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        t1 = self._tracker._clock.now()
        with self._tracker._lock:
            self._tracker._step_t0.append(self._t0)
            self._tracker._step_t1.append(t1)
        if exc_type is None:
            for observer in self._tracker._config["observers"]:
                observer.step_ended(self._t0, t1)


class Meter:
    """Meters energy from :meth:`start` to :meth:`stop`; also a context manager and a decorator.

    Args:
        name: Name of the run (the decorated function's name when used as a decorator).
        gpus: CUDA device indices to meter; None meters every visible GPU, [] none.
        cpu: Meter CPU packages (RAPL, else an estimate).
        dram: Meter memory (RAPL, else an estimate).
        devices: Meter exactly these devices instead of probing (for custom sensors).
        sample_period_s: How often the sampler thread records power. Units: s.
        synchronize: At window boundaries, wait for queued CUDA work on the metered
            GPUs (only when torch is already imported and CUDA initialized), so
            the work is counted in the window that launched it.
        account: Applied to every result (run and windows) as it is made, to add what
            the layers above know (CO2, cost); returns the completed result.
        outputs: Called with the run's result when it stops (report writers). A
            failing output warns (:class:`~greenai.core.errors.OutputWarning`) and never
            loses the result.
        observers: Told when the run starts, after each step, before it stops and
            once it has stopped (see :class:`RunObserver`), in this order; what
            they return before the stop is added to the run result's ``metadata``.
            The energy-target governor and the Prometheus exporter are observers.
        gather: In a multi-process job (``torchrun``, ``srun``; see :mod:`greenai.tracking.job`),
            who holds the job's result once the run stops: ``"rank0"`` (the
            default; the other ranks keep their own result and write no reports),
            ``"all"`` (every rank), or ``"none"`` (each rank keeps and reports its
            own). The job result's ``ranks`` holds each rank's result.
        gather_timeout_s: How long a gathering rank waits for the others' results
            after its own run stopped; ranks that have not reported by then are
            listed as missing and the job result is partial. Units: s.
    """

    def __init__(
        self,
        name: str | None = None,
        *,
        gpus: Sequence[int] | None = None,
        cpu: bool = True,
        dram: bool = True,
        devices: Sequence[Device] | None = None,
        sample_period_s: float = DEFAULT_SAMPLE_PERIOD_S,
        synchronize: bool = True,
        account: Callable[[Result], Result] | None = None,
        outputs: Sequence[Callable[[Result], object]] = (),
        observers: Sequence[RunObserver] = (),
        gather: Gather = "rank0",
        gather_timeout_s: float = DEFAULT_GATHER_TIMEOUT_S,
    ) -> None:
        if name is not None and not isinstance(name, str):
            raise TypeError(
                f"name must be a string, got {name!r}; as a decorator write "
                "@greenai.track() or @greenai.track('name'), with the parentheses"
            )
        if not (isinstance(sample_period_s, (int, float)) and 0 < sample_period_s < math.inf):
            raise ValueError(
                f"sample_period_s must be a positive number of seconds, got {sample_period_s!r}"
            )
        if gather not in GATHER_MODES:
            raise ValueError(f"gather must be one of {', '.join(GATHER_MODES)}, got {gather!r}")
        if isinstance(gather_timeout_s, bool) or not (
            isinstance(gather_timeout_s, (int, float)) and 0 <= gather_timeout_s < math.inf
        ):
            raise ValueError(
                "gather_timeout_s must be a non-negative number of seconds, "
                f"got {gather_timeout_s!r}"
            )
        if gpus is not None and (isinstance(gpus, (str, bytes)) or not isinstance(gpus, Sequence)):
            raise TypeError(f"gpus must be a sequence of CUDA device indices or None, got {gpus!r}")
        self.name = name
        self._config: dict[str, Any] = {
            "gpus": gpus,
            "cpu": cpu,
            "dram": dram,
            "devices": devices,
            "sample_period_s": float(sample_period_s),
            "synchronize": synchronize,
            "account": account,
            "outputs": tuple(outputs),
            "observers": tuple(observers),
            "gather": gather,
            "gather_timeout_s": float(gather_timeout_s),
        }
        self._state = "new"
        self._result: Result | None = None
        self._lock = threading.RLock()

    # ----------------------------------------------------------------- public API
    def start(self) -> Meter:
        """Probe the devices, take the first readings and start the sampler."""
        if self._state == "running":
            raise RuntimeError(f"tracker {self.name!r} is already running")
        cfg = self._config
        self._clock = _clock.active()
        self._period_s: float = cfg["sample_period_s"]
        self._sync = bool(cfg["synchronize"])
        self._missing: list[str] = []
        self._job = JobContext.detect()
        if cfg["devices"] is not None:
            devices = list(cfg["devices"])
        else:
            gpus = cfg["gpus"]
            if gpus is None and self._job is not None:
                gpus = local_gpus(self._job.info, len(probe_gpus()))
            devices = probe(gpus, cpu=cfg["cpu"], dram=cfg["dram"])
            if cfg["gpus"] is not None:
                found = {getattr(d, "cuda_index", None) for d in probe_gpus(cfg["gpus"])}
                self._missing = [
                    f"gpu{i}: requested but not present" for i in cfg["gpus"] if i not in found
                ]
        names = [d.name for d in devices]
        if len(set(names)) != len(names):
            raise ValueError(f"devices must have unique names, got {names!r}")
        self._meters = [_DeviceMeter(d) for d in devices]
        self._cuda_indices = [
            i
            for d in devices
            if d.kind == "gpu" and isinstance(i := getattr(d, "cuda_index", None), int)
        ]
        self._unwarned: list[str] = list(self._missing)
        self._sampler_error = ""
        self._times = array("d")
        self._step_t0 = array("d")
        self._step_t1 = array("d")
        self._stack: list[_Span] = []
        self._keyed: dict[str, _Span] = {}
        self._run_id = str(uuid.uuid4())
        self._metadata = describe(devices)
        if self._job is not None:
            self._metadata.update(self._job.metadata())
        self._start_unix_s = time.time()
        self._t_origin = self._clock.now()
        self._sample(self._t_origin)
        self._sample_index = 1
        self._resolved = threading.Condition(self._lock)
        self._stopping = threading.Event()
        self._wake_event = threading.Event()
        self._thread: threading.Thread | None = None
        self._timer: _clock.Timer | None = None
        self._next_sample_t: float = self._t_origin + self._period_s
        self._root = _Span(self.name, self._mark())
        self._result = None
        self._state = "running"
        self._start_sampler()
        self._flush_warnings()
        for observer in cfg["observers"]:
            observer.run_started(self)
        return self

    def stop(self, *, write_outputs: bool = True) -> Result:
        """End the run: close open windows, settle the last readings, join the sampler.

        Args:
            write_outputs: Hand the result to the outputs (reports); False when
                there is nothing worth reporting (the command never started).
        """
        if self._state != "running":
            raise RuntimeError(f"tracker {self.name!r} is not running")
        for observer in self._config["observers"]:
            self._metadata = {**self._metadata, **observer.run_stopping()}
        for span in [*reversed(self._stack), *self._keyed.values()]:
            self._close_span(span)
        self._keyed.clear()
        self._root.end = self._mark()
        self._await_resolution()
        self._stop_sampler()
        now = self._clock.now()
        if now > self._times[-1]:
            self._sample(now)
        self._state = "stopped"
        self._result = self._finalize(self._root)
        for observer in self._config["observers"]:
            observer.run_stopped(self._result)
        if self._job is not None and self._config["gather"] != "none":
            write_outputs = self._gather() and write_outputs
        for output in self._config["outputs"] if write_outputs else ():
            try:
                output(self._result)
            except Exception as e:  # a report that cannot be written must not lose the run
                logger.debug("output %r failed", output, exc_info=True)
                warn(f"greenai: could not save the run ({e}); the result is kept", OutputWarning)
        self._flush_warnings()
        return self._result

    def _gather(self) -> bool:
        """Replace the rank's result by the job's where this rank holds it.

        Returns whether this rank writes the run's reports: rank 0, or every rank
        when the job's results cannot be gathered (no process group).
        """
        job = self._job
        assert job is not None
        assert self._result is not None
        job.attach_store()
        if job.store is None:
            logger.debug("no torch.distributed process group: each rank keeps its own result")
            return True
        report = RankReport(
            rank=job.info.rank,
            node=job.node,
            local_rank=job.info.local_rank,
            result=self._result,
            devices={m.name: identity(m.device) for m in self._meters},
        )
        try:
            combined = job.gather_job(
                report,
                mode=self._config["gather"],
                timeout_s=self._config["gather_timeout_s"],
                account=self.account,
            )
        except Exception as e:  # the store's host died: this rank keeps its own figures
            logger.debug("gathering the job failed", exc_info=True)
            reason = f"the job's results could not be gathered ({type(e).__name__}: {e})"
            self._result = replace(
                self._result,
                partial=True,
                partial_reasons=(*self._result.partial_reasons, reason),
            )
            warn(f"greenai: {reason}; this rank's own result is kept", GatherWarning)
            return job.info.rank == 0
        if combined is None:
            return False
        self._result = combined
        missing = combined.metadata["job"]["ranks_missing"]
        if missing:
            warn(
                f"greenai: ranks {missing} of the job did not report; the job result is partial",
                GatherWarning,
            )
        return job.info.rank == 0

    @property
    def result(self) -> Result:
        """The run's result, once it has stopped (the job's, where this rank holds it)."""
        if self._result is None:
            raise RuntimeError(f"tracker {self.name!r} has no result yet: it has not stopped")
        return self._result

    def account(self, result: Result) -> Result:
        """``result`` with what the layers above add (CO2, cost), as this run's results get."""
        hook = self._config["account"]
        return hook(result) if hook is not None else result

    @property
    def devices(self) -> tuple[Device, ...]:
        """The devices this run meters (read-only; the control layer steers the GPUs among them)."""
        self._require_running("devices")
        return tuple(m.device for m in self._meters)

    def window(self, name: str) -> Window:
        """A named phase, as a context manager; windows opened inside it nest under it."""
        self._require_running("window")
        return Window(self, name)

    def begin_window(self, key: str) -> None:
        """Open a window that may overlap others (Zeus style); end it with :meth:`end_window`."""
        self._require_running("begin_window")
        if key in self._keyed:
            raise ValueError(f"a window with key {key!r} is already open")
        self._keyed[key] = self._open_span(key, nested=False)

    def end_window(self, key: str) -> Result:
        """Close the window opened with ``begin_window(key)`` and return its result."""
        self._require_running("end_window")
        try:
            span = self._keyed.pop(key)
        except KeyError:
            raise KeyError(
                f"no open window with key {key!r} (open: {sorted(self._keyed)})"
            ) from None
        self._close_span(span)
        return self._finalize(span)

    def step(self) -> _Step:
        """Mark one training step (a light window: count, time and energy per step)."""
        self._require_running("step")
        return _Step(self)

    def snapshot(self) -> Snapshot:
        """Elapsed time, power and energy so far per device, steps and open windows.

        For live displays and metrics: figures come from the samples so far, without
        waiting for counter updates (the final result can differ slightly).
        """
        self._require_running("snapshot")
        with self._lock:
            now = self._clock.now()
            power_w = {m.name: m.power_w[-1] if m.power_w else math.nan for m in self._meters}
            now_j = {m.name: self._interpolate(m, now) for m in self._meters}
            energy_j = {m.name: now_j[m.name] - m.cum_j[0] for m in self._meters}
            open_windows_j = {
                span.name: sum(
                    now_j[m.name] - self._interpolate(m, span.start.t) for m in self._meters
                )
                for span in [*self._stack, *self._keyed.values()]
                if span.name is not None
            }
            partial = bool(self._missing) or any(
                m.failed_at is not None or m.reset_times for m in self._meters
            )
            steps = len(self._step_t1)
        return Snapshot(
            elapsed_s=now - self._t_origin,
            power_w=power_w,
            energy_j=sum(energy_j.values()),
            energy_by_device_j=energy_j,
            sources={m.name: m.device.source for m in self._meters},
            kinds={m.name: m.device.kind for m in self._meters},
            steps=steps,
            open_windows_j=open_windows_j,
            partial=partial,
        )

    def forecast(self, total_epochs: int, *, window: str = "epoch") -> Forecast:
        """Predict the whole run's energy, time, CO2 and cost from its finished epochs.

        Epochs are the finished windows named ``window`` or ``window`` followed by a
        number or separator (``"epoch 3"``), at any depth. See :mod:`greenai.tracking.forecast`.

        Raises:
            ValueError: ``total_epochs`` is not a positive integer, no epoch has
                finished yet, or more have finished than ``total_epochs``.
        """
        self._require_running("forecast")
        if isinstance(total_epochs, bool) or not isinstance(total_epochs, int) or total_epochs < 1:
            raise ValueError(f"total_epochs must be a positive integer, got {total_epochs!r}")
        epochs = [
            self._finalize(span)
            for span in _walk(self._root)
            if span.end is not None and is_epoch(span.name, window)
        ]
        so_far = _Span(self.name, self._root.start)
        so_far.children = list(self._root.children)
        so_far.end = self._mark()
        return predict(self._finalize(so_far), epochs, total_epochs, self._config["account"])

    def __enter__(self) -> Meter:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._state == "running":
            self.stop()

    def __call__(self, fn: Callable[P, R]) -> Callable[P, R]:
        """Use as a decorator: each call is tracked; the last call's result is ``self.result``."""

        @functools.wraps(fn)
        def tracked(*args: P.args, **kwargs: P.kwargs) -> R:
            run = Meter(self.name or fn.__qualname__, **self._config)
            try:
                with run:
                    return fn(*args, **kwargs)
            finally:
                self._result = run._result

        return tracked

    # ----------------------------------------------------------------- windows
    def _require_running(self, what: str) -> None:
        if self._state != "running":
            raise RuntimeError(f"{what}() needs a running tracker (call start() or use 'with')")

    def _open_span(self, name: str | None, *, nested: bool) -> _Span:
        span = _Span(name, self._mark())
        with self._lock:
            parent = self._stack[-1] if nested and self._stack else self._root
            parent.children.append(span)
            if nested:
                self._stack.append(span)
        return span

    def _close_span(self, span: _Span) -> None:
        if span.end is not None:
            return
        span.end = self._mark()
        with self._lock:
            if span in self._stack:
                self._stack.remove(span)

    def _mark(self) -> _Mark:
        """Synchronize, timestamp and read the counters at a window boundary."""
        if self._sync and self._cuda_indices:
            _synchronize_cuda(self._cuda_indices)
        t = self._clock.now()
        values: dict[str, float | CounterBoundary] = {}
        for m in self._meters:
            if not m.counter or m.failed_at is not None:
                continue
            energy_j = self._read_energy(m, t)
            if energy_j is None:
                continue
            if not m.coarse:
                values[m.name] = energy_j
                continue
            boundary = CounterBoundary(t, energy_j)
            with self._lock:
                m.updates.observe(t, energy_j)
                if m.pending or not boundary.resolve(m.updates.updates, m.last_boundary):
                    m.pending.append(boundary)
                else:
                    m.last_boundary = boundary
            values[m.name] = boundary
        self._flush_warnings()
        return _Mark(t, values)

    # ----------------------------------------------------------------- readings
    def _read_energy(self, m: _DeviceMeter, t: float) -> float | None:
        try:
            energy_j = m.device.energy_j()
        except Exception as e:  # any sensor failure: the run goes on without this device
            self._fail(m, e, t)
            return None
        resets = m.device.counter_resets
        if resets != m.resets_seen:
            m.resets_seen = resets
            m.reset_times.append(t)
        return energy_j

    def _fail(self, m: _DeviceMeter, error: BaseException, t: float) -> None:
        with self._lock:
            if m.failed_at is not None:
                return
            m.failed_at = t
            m.failure = f"{type(error).__name__}: {error}"
            for boundary in m.pending:
                boundary.value_j = boundary.stale_j
            m.pending.clear()
            self._unwarned.append(f"{m.name} stopped answering ({m.failure})")
        logger.debug("%s failed at t=%.3f: %s", m.name, t, m.failure)

    def _flush_warnings(self) -> None:
        """Show queued sensor warnings, in the user's thread (never from the sampler)."""
        with self._lock:
            messages, self._unwarned = self._unwarned, []
        for message in messages:
            warn(f"greenai: {message}; results are marked partial", SensorWarning)

    def _sample(self, now: float) -> None:
        """Record one power sample of every device."""
        readings: list[tuple[float, float]] = []
        for m in self._meters:
            energy_j = power_w = math.nan
            if m.failed_at is None:
                try:
                    if m.counter:
                        energy_j = m.device.energy_j()
                    if m.power_from_reading:
                        power_w = _read_power(m)
                except Exception as e:  # any sensor failure: the run goes on without this device
                    self._fail(m, e, now)
                    energy_j = power_w = math.nan
            readings.append((energy_j, power_w))
        with self._lock:
            previous_t = self._times[-1] if self._times else now
            self._times.append(now)
            for m, (energy_j, read_w) in zip(self._meters, readings, strict=True):
                power_w = read_w
                last_j = m.cum_j[-1] if m.cum_j else 0.0
                if m.counter:
                    cum_j = last_j if math.isnan(energy_j) else energy_j
                    if m.coarse and not math.isnan(energy_j):
                        m.updates.observe(now, energy_j)
                    if m.device.counter_resets != m.resets_seen:
                        m.resets_seen = m.device.counter_resets
                        m.reset_times.append(now)
                elif math.isnan(power_w):
                    cum_j = last_j
                else:
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
        for m in self._meters:
            if not m.coarse or m.failed_at is not None or now < m.next_poll_t:
                continue
            energy_j = self._read_energy(m, now)
            if energy_j is None:
                continue
            t = (now + self._clock.now()) / 2.0
            with self._lock:
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

    def _tick(self, now: float) -> float:
        """One round of the sampler; returns when the next round is due."""
        try:
            if now >= self._next_sample_t:
                self._sample(now)
                # sample on a fixed grid (no drift), skipping instants already past
                self._sample_index = max(
                    self._sample_index + 1, math.floor((now - self._t_origin) / self._period_s) + 1
                )
                self._next_sample_t = self._t_origin + self._sample_index * self._period_s
            self._poll_counters(now)
        except Exception as e:  # a bug here must not kill the sampler silently: results say so
            logger.debug("sampler error", exc_info=True)
            with self._lock:
                self._sampler_error = self._sampler_error or f"sampler error: {e!r}"
        with self._lock:
            self._resolved.notify_all()
            polls = [m.next_poll_t for m in self._meters if m.coarse and m.failed_at is None]
        return min([self._next_sample_t, *polls])

    # ----------------------------------------------------------------- sampler
    def _start_sampler(self) -> None:
        if isinstance(self._clock, _clock.VirtualClock):
            self._schedule(self._clock.now())
        else:
            self._thread = threading.Thread(
                target=self._run_thread, name="greenai-sampler", daemon=True
            )
            self._thread.start()

    def _schedule(self, when_s: float) -> None:
        assert isinstance(self._clock, _clock.VirtualClock)
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._clock.call_at(when_s, self._on_timer)

    def _on_timer(self, now: float) -> None:
        self._timer = None
        if not self._stopping.is_set():
            self._schedule(self._tick(now))

    def _run_thread(self) -> None:
        while not self._stopping.is_set():
            due = self._tick(self._clock.now())
            delay = due - self._clock.now()
            if delay > 0:
                self._wake_event.wait(delay)
                self._wake_event.clear()

    def _stop_sampler(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._wake_event.set()
            self._thread.join()
            self._thread = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _await_resolution(self) -> None:
        """Wait (bounded) until every GPU counter boundary so far is resolved."""
        deadline = self._clock.now() + _RESOLVE_TIMEOUT_S
        virtual = isinstance(self._clock, _clock.VirtualClock)
        with self._lock:
            while any(m.pending for m in self._meters):
                remaining = deadline - self._clock.now()
                if remaining <= 0:
                    logger.debug(
                        "GPU counters did not update within %.1f s; using stale readings",
                        _RESOLVE_TIMEOUT_S,
                    )
                    for m in self._meters:
                        m.pending.clear()
                    break
                if virtual:
                    self._clock.sleep(POLL_S)
                else:
                    self._resolved.wait(remaining)

    # ----------------------------------------------------------------- results
    def _finalize(self, span: _Span) -> Result:
        if span.result is not None:
            return span.result
        assert span.end is not None
        if self._state == "running":
            self._await_resolution()
        with self._lock:
            span.result = self._compute(span)
        return span.result

    def _energy_at(self, m: _DeviceMeter, mark: _Mark) -> float:
        value = mark.values.get(m.name)
        if isinstance(value, CounterBoundary):
            return value.value()
        if value is not None:
            return value
        return self._interpolate(m, mark.t)

    def _interpolate(self, m: _DeviceMeter, t: float) -> float:
        """Cumulative energy at ``t`` from the samples (linear; extrapolated at the last power)."""
        times, cum = self._times, m.cum_j
        i = bisect_right(times, t)
        if i == 0:
            return cum[0]
        if i == len(times):
            last_w = m.power_w[-1]
            extra = (
                0.0 if math.isnan(last_w) or m.failed_at is not None else last_w * (t - times[-1])
            )
            return cum[-1] + extra
        t0, t1 = times[i - 1], times[i]
        fraction = (t - t0) / (t1 - t0) if t1 > t0 else 0.0
        return float(cum[i - 1] + (cum[i] - cum[i - 1]) * fraction)

    def _compute(self, span: _Span) -> Result:
        assert span.end is not None
        t0, t1 = span.start.t, span.end.t
        energy: dict[str, float] = {}
        reasons = list(self._missing)
        for m in self._meters:
            energy[m.name] = max(0.0, self._energy_at(m, span.end) - self._energy_at(m, span.start))
            if m.failed_at is not None and m.failed_at <= t1:
                reasons.append(
                    f"{m.name} failed at {m.failed_at - self._t_origin:.3f} s "
                    f"into the run: {m.failure}"
                )
            resets = [r for r in m.reset_times if t0 < r <= t1]
            if resets:
                reasons.append(
                    f"{m.name}: energy counter restarted {len(resets)} time(s); "
                    "energy before each restart since the previous reading is missing"
                )
        if self._sampler_error:
            reasons.append(self._sampler_error)
        lo, hi = bisect_left(self._times, t0), bisect_right(self._times, t1)
        timeline = PowerTimeline(
            times_s=[t - self._t_origin for t in self._times[lo:hi]],
            power_w={m.name: list(m.power_w[lo:hi]) for m in self._meters},
        )
        result = Result(
            name=span.name,
            start_unix_s=self._start_unix_s + (t0 - self._t_origin),
            duration_s=t1 - t0,
            energy_by_device_j=energy,
            sources={m.name: m.device.source for m in self._meters},
            kinds={m.name: m.device.kind for m in self._meters},
            partial=bool(reasons),
            partial_reasons=tuple(reasons),
            windows=tuple(self._compute_child(c) for c in span.children),
            timeline=timeline,
            steps=self._step_stats(t0, t1),
            run_id=self._run_id,
            offset_s=t0 - self._t_origin,
            metadata=self._metadata if span is self._root else {},
        )
        return self.account(result)

    def _compute_child(self, span: _Span) -> Result:
        if span.result is None:
            span.result = self._compute(span)
        return span.result

    def _step_stats(self, t0: float, t1: float) -> StepStats | None:
        """Steps inside [t0, t1], their energy interpolated from the sampled cumulative energy."""
        import numpy as np

        lo, hi = bisect_left(self._step_t0, t0), bisect_right(self._step_t1, t1)
        if hi <= lo:
            return None
        starts = np.array(self._step_t0[lo:hi], dtype=np.float64)
        ends = np.array(self._step_t1[lo:hi], dtype=np.float64)
        times = np.array(self._times, dtype=np.float64)
        t_last = max(t1, times[-1])
        if t_last > times[-1]:  # a window read before the next sample: extend at the last power
            times = np.append(times, t_last)
        energies = np.zeros(hi - lo)
        for m in self._meters:
            cum = np.array(m.cum_j, dtype=np.float64)
            if len(cum) < len(times):
                cum = np.append(cum, self._interpolate(m, t_last))
            energies += np.maximum(0.0, np.interp(ends, times, cum) - np.interp(starts, times, cum))
        durations = ends - starts
        return StepStats(
            count=hi - lo,
            time_s=float(durations.sum()),
            energy_j=float(energies.sum()),
            durations_s=durations,
            energies_j=energies,
        )


def _walk(span: _Span) -> Iterator[_Span]:
    """Every window under ``span``, depth first, in start order."""
    for child in span.children:
        yield child
        yield from _walk(child)


def _read_power(m: _DeviceMeter) -> float:
    """The device's power reading; a counter device without one derives it from energy."""
    try:
        return m.device.power_w()
    except NotSupportedError:
        if not m.counter:
            raise
        m.power_from_reading = False
        return math.nan


def _synchronize_cuda(cuda_indices: Sequence[int]) -> None:
    """Wait for queued kernels, only if torch is already imported and CUDA is initialized."""
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_initialized():
        return
    for index in cuda_indices:
        if index < torch.cuda.device_count():
            torch.cuda.synchronize(index)


track = Meter
"""``greenai.track(...)`` is :class:`Meter`: meter a block (``with greenai.track() as run:``)
or a function (``@greenai.track()``); after it, ``run.result`` holds a
:class:`~greenai.tracking.result.Result`."""
