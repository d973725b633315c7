"""The tracking layer's meter: :class:`Meter` runs, windows, steps and snapshots.

How a window's energy is measured, per device: counters read at the boundary (RAPL, the
CPU estimate) by their difference; GPU energy counters, which update only every ~20-100
ms, by placing each boundary between two updates timed by the shared sampler
(:mod:`~greenai.tracking.staleness`); GPUs that only report power from their readings
placed on the periods they average (:mod:`~greenai.tracking.power_readings`); the DRAM
estimate by the integral of its samples. A run ends without waiting for the counters'
next updates: its result follows (:mod:`~greenai.tracking.finisher`).

The tracker never raises into the user's code because a sensor failed: the device is
dropped from then on, results that span the failure are marked partial, and one
:class:`~greenai.core.errors.SensorWarning` is shown.

The parts: :mod:`~.sampler` (every device's samples, shared by all runs), :mod:`~.readings`
(the counters read at a boundary), :mod:`~.windows` (windows, steps), :mod:`~.ledger`
(segments for controllers), :mod:`~.compute` (the results).
"""

from __future__ import annotations

import functools
import logging
import math
import os
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any, ParamSpec, TypeVar, cast

from greenai.core import clock as _clock
from greenai.core.errors import Deferred, OutputWarning, deferred_warnings, show_warnings, warn
from greenai.core.forks import renew_in_child
from greenai.devices import Device, probe, probe_gpus
from greenai.tracking import finisher
from greenai.tracking import sampler as _sampler
from greenai.tracking.compute import RunResults
from greenai.tracking.forecast import forecast_run
from greenai.tracking.gather import gather_run
from greenai.tracking.job import DEFAULT_GATHER_TIMEOUT_S, Gather, JobContext, local_gpus
from greenai.tracking.ledger import Ledger
from greenai.tracking.machine import describe
from greenai.tracking.observer import RunObserver
from greenai.tracking.readings import Mark, take_mark
from greenai.tracking.result import Forecast, Result, Snapshot
from greenai.tracking.run_config import run_config
from greenai.tracking.run_samples import RunSamples
from greenai.tracking.step_log import StepLog
from greenai.tracking.tracked import Tracked, TrackedFunction
from greenai.tracking.windows import Span, StepMark, Window, Windows, step_work

logger = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")

DEFAULT_SAMPLE_PERIOD_S = 0.1


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
        observers: Told when the run starts, after each step, before and once it has stopped
            (:class:`RunObserver`); what they return before the stop goes into the run
            result's ``metadata`` (the energy-target governor, the Prometheus exporter).
        gather: In a multi-process job (``torchrun``, ``srun``; :mod:`greenai.tracking.job`),
            who holds the job's result: ``"rank0"`` (default; the others keep their own and
            write no reports), ``"all"``, or ``"none"`` (each rank reports its own).
        gather_timeout_s: How long a gathering rank waits for the others' results; ranks
            that have not reported by then are missing and the job result partial. Units: s.
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
        self.name = name
        self._config = run_config(
            name,
            gpus=gpus,
            cpu=cpu,
            dram=dram,
            devices=devices,
            sample_period_s=sample_period_s,
            synchronize=synchronize,
            account=account,
            outputs=outputs,
            observers=observers,
            gather=gather,
            gather_timeout_s=gather_timeout_s,
        )
        self._state = "new"  # running, stopped; forked: a parent's run, in a child
        self._result: Result | None = None
        self._lock = threading.RLock()
        self._stop_lock = threading.Lock()  # who stops; never held while the run is stopping
        self._stopped: threading.Event | None = None  # made by the ending call, set once done
        # Finishing a stopped run (its result, observers, outputs): once, under _finish_lock.
        self._finish_lock = threading.RLock()
        self._finished, self._finishing = True, False  # finishing: by the lock holder
        self._finish_error: BaseException | None = None
        self._write_outputs, self._late_warnings = True, cast("Deferred", [])
        self._last_call: Meter | None = None  # as a decorator: the last call's run
        self._pid = os.getpid()  # the process that started the run
        # The run in progress (or the last one, once stopped); start() makes them.
        self._job: JobContext | None = None
        self._cuda_indices: list[int] = []  # the metered GPUs, synchronized at boundaries
        self._metadata: dict[str, Any] = {}
        self._samples: RunSamples | None = None
        self._results: RunResults | None = None
        self._steps = StepLog()
        self._windows: Windows | None = None

    # ----------------------------------------------------------------- public API
    def start(self) -> Meter:
        """Probe the devices, attach to the shared sampler and take the first readings."""
        if self._state == "running":
            raise RuntimeError(f"tracker {self.name!r} is already running")
        self._finish()  # the previous run of this tracker, if it is still being finished
        cfg = self._config
        clock = _clock.active()
        missing: list[str] = []
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
                missing = [
                    f"gpu{i}: requested but not present" for i in cfg["gpus"] if i not in found
                ]
        if len({d.name for d in devices}) != len(devices):
            raise ValueError(f"devices must have unique names, got {[d.name for d in devices]!r}")
        self._cuda_indices = [
            i
            for d in devices
            if d.kind == "gpu" and isinstance(i := getattr(d, "cuda_index", None), int)
        ]
        self._steps = StepLog()
        run_id = str(uuid.uuid4())
        self._metadata = describe(devices)
        if self._job is not None:
            self._metadata.update(self._job.metadata())
        start_unix_s = time.time()
        samples = _sampler.shared(clock).attach(
            devices, period_s=cfg["sample_period_s"], warnings=missing
        )
        try:
            self._samples = samples
            self._results = RunResults(
                samples,
                self._steps,
                run_id=run_id,
                start_unix_s=start_unix_s,
                t_origin=samples.t_origin,
                missing=missing,
                account=self.account,
            )
            self._windows = Windows(
                Span(self.name, self._mark()),
                mark=self._mark,
                finalize=self._finalize,
                lock=self._lock,
                steps=self._steps,
            )
            self._results.run_span = self._windows.root
        except BaseException:
            samples.detach()
            samples.release()
            raise
        self._result, self._finish_error, self._late_warnings, self._finished = (
            None,
            None,
            [],
            False,
        )
        with self._stop_lock:
            self._state, self._stopped, self._pid = "running", None, os.getpid()
        renew_in_child(self)
        samples.flush_warnings()
        if cfg["observers"]:
            finisher.drain()  # an observer hears of an earlier run's end before this start
        for observer in cfg["observers"]:
            observer.run_started(self)
        return self

    def stop(self, *, write_outputs: bool = True) -> Result:
        """:meth:`end`, then the result (waits if the counters' next updates are needed)."""
        self.end(write_outputs=write_outputs)
        return self.result

    def end(self, *, write_outputs: bool = True) -> None:
        """End the run now, without waiting for hardware: close open windows, take the last
        readings, leave the sampler. Idempotent and thread-safe (later calls wait for the first).

        The result, the observers' ``run_stopped`` and the outputs follow in this thread when
        the boundaries are placed already (always on a virtual clock, and in a gathering job);
        else in the background (:mod:`~greenai.tracking.finisher`: warnings wait for
        :attr:`result`, or exit), or in the thread that reads :attr:`result` first.

        Args:
            write_outputs: Hand the result to the outputs; False: nothing worth reporting.
        """
        with self._stop_lock:
            stopped = self._stopped
            first = self._state == "running" and stopped is None
            if first:
                stopped = self._stopped = threading.Event()  # running until the run has ended
            elif stopped is None:
                raise RuntimeError(f"tracker {self.name!r} is not running{self._forked()}")
        assert stopped is not None
        if not first:
            stopped.wait()
            if self._state != "stopped":
                raise RuntimeError(f"tracker {self.name!r} failed to stop (in another call)")
            return
        try:
            now = self._end_run(write_outputs)
        finally:
            if self._state != "stopped":  # failed before it ended: a later call may try again
                self._state, self._stopped = "running", None
            stopped.set()
        if now:
            self._finish()
        else:
            finisher.submit(functools.partial(self._finish, background=True))
            assert self._samples is not None
            self._samples.flush_warnings()  # what the sensors said up to the end

    def _end_run(self, write_outputs: bool) -> bool:
        """Ends the run; True when it is to be finished now, in this thread."""
        samples, windows = self._samples, self._windows
        assert samples is not None
        assert windows is not None
        for observer in self._config["observers"]:
            self._metadata = {**self._metadata, **observer.run_stopping()}
        try:
            windows.close_all()
        finally:
            samples.detach()
        self._write_outputs = write_outputs
        self._state = "stopped"
        assert windows.root.end is not None
        return (
            isinstance(samples.clock, _clock.VirtualClock)
            or (self._job is not None and self._config["gather"] != "none")
            or samples.settled(windows.root.end.t)
        )

    def _finish(self, *, background: bool = False) -> None:
        """Make the stopped run's result, tell the observers, write the outputs (once). In the
        background, warnings and a failure are kept for :attr:`result` to show and raise."""
        with self._finish_lock:
            if self._finished or self._finishing or self._state != "stopped":
                return
            self._finishing = True
            try:
                if not background:
                    self._complete()
                    return
                with deferred_warnings() as self._late_warnings:
                    try:
                        self._complete()
                    except Exception as e:  # kept for whoever reads the result
                        logger.debug("finishing run %r failed", self.name, exc_info=True)
                        self._finish_error = e
                        warn(f"greenai: run {self.name!r} has no result ({e!r})", OutputWarning)
                if self._late_warnings:
                    finisher.show_at_exit(self._show_late_warnings)
            finally:
                self._finished, self._finishing = True, False
                assert self._samples is not None
                self._samples.release()

    def _show_late_warnings(self) -> None:
        """Show, once, the warnings kept while the run was finished in the background."""
        late, self._late_warnings = self._late_warnings, []
        show_warnings(late)

    def _complete(self) -> None:
        samples, windows = self._samples, self._windows
        assert samples is not None
        assert windows is not None
        assert windows.root.end is not None
        samples.settle(windows.root.end.t)
        self._result = self._finalize(windows.root)
        samples.release()  # slow outputs do not keep the devices polled
        for observer in self._config["observers"]:
            observer.run_stopped(self._result)
        write_outputs = self._write_outputs
        if self._job is not None and self._config["gather"] != "none":
            self._result, writes = gather_run(
                self._job,
                samples,
                self._result,
                mode=self._config["gather"],
                timeout_s=self._config["gather_timeout_s"],
                account=self.account,
            )
            write_outputs = writes and write_outputs
        for output in self._config["outputs"] if write_outputs else ():
            try:
                output(self._result)
            except Exception as e:  # a report that cannot be written must not lose the run
                logger.debug("output %r failed", output, exc_info=True)
                warn(f"greenai: could not save the run ({e}); the result is kept", OutputWarning)
        samples.flush_warnings()

    @property
    def result(self) -> Result:
        """The run's result (the job's, where this rank holds it), once it has stopped; waits
        (about a second at most) if its last boundaries still need the counters' updates."""
        if self._state == "new" and self._last_call is not None:
            return self._last_call.result
        if self._state != "stopped":
            raise RuntimeError(
                f"tracker {self.name!r} has no result yet: it has not stopped{self._forked()}"
            )
        self._finish()
        self._show_late_warnings()
        if self._result is None:
            error = self._finish_error
            raise RuntimeError(
                f"tracker {self.name!r} has no result: making it failed ({error!r})"
            ) from error
        return self._result

    def account(self, result: Result) -> Result:
        """``result`` with what the layers above add (CO2, cost), as this run's results get."""
        hook = self._config["account"]
        return hook(result) if hook is not None else result

    @property
    def devices(self) -> tuple[Device, ...]:
        """The devices this run meters (the control layer steers the GPUs among them)."""
        self._require_running("devices")
        assert self._samples is not None
        return tuple(m.device for m in self._samples.meters)

    def window(self, name: str) -> Window:
        """A named phase, as a context manager; windows opened inside it nest under it."""
        self._require_running("window")
        assert self._windows is not None
        return Window(self._windows, name)

    def begin_window(self, key: str) -> None:
        """Open a window that may overlap others (Zeus style); end it with :meth:`end_window`."""
        self._require_running("begin_window")
        assert self._windows is not None
        self._windows.begin(key)

    def end_window(self, key: str) -> Result:
        """Close the window opened with ``begin_window(key)`` and return its result."""
        self._require_running("end_window")
        assert self._windows is not None
        return self._windows.end(key)

    def ledger(self) -> Ledger:
        """Segments of the run from its start, cut where a controller decides (:mod:`~.ledger`)."""
        self._require_running("ledger")
        assert self._samples is not None
        assert self._windows is not None
        start = self._windows.root.start
        return Ledger(self._mark, self._samples, start, lambda: self._state == "running")

    def step(self, *, samples: int | None = None, tokens: int | None = None) -> StepMark:
        """Mark one step (count, time, energy); ``samples``/``tokens``: the work it does, for
        the energy, CO2e and cost per sample and per token."""
        self._require_running("step")
        assert self._samples is not None
        inert, work = lambda: self._state == "forked", step_work(samples, tokens)
        return StepMark(
            self._steps, self._samples, self._config["observers"], inert=inert, work=work
        )

    def snapshot(self) -> Snapshot:
        """Elapsed time, power and energy so far per device, steps and open windows: from the
        samples so far, without waiting (the final result can differ slightly)."""
        self._require_running("snapshot")
        assert self._results is not None
        assert self._windows is not None
        with self._lock:
            return self._results.snapshot(self._windows.open_spans())

    def forecast(self, total_epochs: int, *, window: str = "epoch") -> Forecast:
        """Predict the whole run's energy, time, CO2 and cost from its finished epochs: the
        windows named ``window`` (or ``"epoch 3"``...), at any depth. ValueError when
        ``total_epochs`` is not a positive integer, none or more have finished (see
        :func:`~greenai.tracking.forecast.forecast_run`)."""
        self._require_running("forecast")
        assert self._windows is not None
        return forecast_run(
            self.name,
            self._windows.root,
            total_epochs,
            window=window,
            finalize=self._finalize,
            mark=self._mark,
            account=self._config["account"],
        )

    def __enter__(self) -> Meter:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self._state == "running":
            self.end()

    def __call__(self, fn: Callable[P, R]) -> Tracked[P, R]:
        """Use as a decorator: each call is its own run, named after ``fn`` unless the tracker
        has a name; the last run's result is ``wrapper.result`` (None before), ``self.result``."""

        def new_run() -> Meter:
            self._last_call = Meter(self.name or fn.__qualname__, **self._config)
            return self._last_call

        return cast("Tracked[P, R]", TrackedFunction(fn, new_run))

    # ----------------------------------------------------------------- internals
    def _require_running(self, what: str) -> None:
        if self._state != "running":
            raise RuntimeError(
                f"{what}() needs a running tracker (call start() or use 'with'){self._forked()}"
            )

    def _forked(self) -> str:
        """Why a run is not running here, when it is the parent's run in a forked child."""
        if self._state != "forked":
            return ""
        return f": its run belongs to process {self._pid}, which this process was forked from"

    def _after_fork_in_child(self) -> None:
        """The parent's run is inert in a forked child: its sampler thread stayed in the
        parent, and its locks may have been held at the fork. Windows and steps open at the
        fork end without a reading; the child's own trackers meter normally."""
        self._lock = threading.RLock()
        self._stop_lock = threading.Lock()
        self._finish_lock = threading.RLock()
        if self._state == "stopped" and not self._finished:
            self._state, self._stopped = "forked", None  # the parent finishes it
            return
        if self._state != "running" or self._windows is None:
            return
        self._state, self._stopped = "forked", None
        inert = Mark(math.nan, {})
        for span in (*self._windows.open_spans(), self._windows.root):
            if span.end is None:
                span.end = inert

    def _mark(self) -> Mark:
        """Synchronize, timestamp and read the counters at a window boundary."""
        assert self._samples is not None
        mark = take_mark(self._samples, self._cuda_indices if self._config["synchronize"] else ())
        self._samples.flush_warnings()
        return mark

    def _finalize(self, span: Span) -> Result:
        """The ended ``span``'s result (with the run's metadata for the run's own)."""
        self._finish()
        assert self._results is not None
        if self._state == "forked":
            raise RuntimeError(f"window {span.name!r} has no figures here{self._forked()}")
        is_run = self._windows is not None and span is self._windows.root
        metadata = self._metadata if is_run else {}
        return self._results.finalize(span, metadata, running=self._state == "running")
