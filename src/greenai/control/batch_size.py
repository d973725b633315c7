"""Batch-size choice by measured energy and time per sample, remembered across runs.

:class:`BatchSizeController` plays the part of Zeus's batch size optimizer with
no server: it explores candidate batch sizes in the training loop, chooses one
for an :class:`~greenai.control.target.EnergyTarget`, backs off when CUDA runs
out of memory, and keeps what it learned in a local JSON file so the next run
of the same job starts from the choice.
:class:`~greenai.control.batch_sampler.AdaptiveBatchSampler` hands the
current choice to a ``torch.utils.data.DataLoader``
(:mod:`greenai.control.batch_sampler`).

How it decides:

1. **Explore** (candidates in rising order, sizes already known from earlier
   runs skipped): at each size, ``warmup_steps`` steps, then at least
   ``measure_steps`` steps and ``measure_s`` seconds in one segment of the run's
   ledger, whose energy (known a step or a few later: nothing waits) and duration
   give joules per *sample* and seconds per *sample*:
   steps of different sizes are not comparable, samples are. A step whose
   sample count is not the size being measured (a prefetched batch of the old
   size, the short last batch of an epoch) restarts the measurement
   (:mod:`greenai.control.batch_measure`).
2. **Choose** (:func:`~greenai.control.batch_choice.choose_batch_size`), with
   the governor's goals per sample: the fastest size within the budget; the
   least energy within ``max_slowdown`` of the fastest; or the least Zeus cost
   ``eta * E + (1 - eta) * max_power * T`` per sample. No target means Zeus's
   default, ``eta = 0.5``.
3. **Out of memory**: :meth:`BatchSizeController.report_oom` marks that size and
   every larger one infeasible (they are never tried again, in this run or a
   later one) and backs off to a smaller size (:mod:`greenai.control.batch_oom`).
4. **Refresh**: every ``refresh_steps`` steps at the choice, its joules and seconds per
   sample are measured again (not while the power-limit governor profiles: the two take
   turns, :mod:`greenai.control.coordination`); a change of more than ``drift`` updates
   what is stored and the choice is made again, so a workload that grows or shrinks is
   followed.
5. **Reuse** (explore-then-exploit over recurring jobs, a simple form of Zeus's
   multi-armed bandit): per job and GPU model, the measurements, the smallest
   size that ran out of memory and the choice are saved in
   ``$GREENAI_STATE_DIR/batch_sizes`` (or ``$XDG_STATE_HOME/greenai/batch_sizes``),
   next to the power profiles (:mod:`greenai.control.batch_store`). The next run
   explores only sizes it does not know and otherwise starts at once at the
   choice, recomputed for its own target.

An :class:`EnergyTarget` counts in steps; here the unit of work is a sample:
``j_per_step`` is read as joules per sample and ``total_steps`` as the number of
samples the run processes (so ``budget_j`` is spread over samples). Energy is
the metered GPUs' (every device's when no GPU is metered). Without a tracker
only time is measured, and the fastest size per sample is chosen.

The training loop drives it, with ``run.step()`` of a :func:`greenai.track` run or
without one: the loop, with its out-of-memory retries, is in :mod:`greenai.control.batch_oom`.

Units: J, s, W; sizes in samples.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from greenai.control import coordination
from greenai.control.batch_choice import (
    DEFAULT_TARGET,
    SizePoint,
    check_count,
    check_size,
    choose_batch_size,
    drifted,
    samples_in,
)
from greenai.control.batch_measure import BatchMeasurements
from greenai.control.batch_oom import OomAttempt, empty_cuda_cache
from greenai.control.batch_store import SizeStore
from greenai.control.limit_choice import BUDGET_MARGIN
from greenai.control.target import EnergyTarget

if TYPE_CHECKING:
    import os

    from greenai.devices import Device
    from greenai.tracking.meter import Meter

logger = logging.getLogger(__name__)


class _Step:
    """``with controller.step(n):`` — counts the step when its block ends without error."""

    def __init__(self, controller: BatchSizeController, n_samples: int) -> None:
        self._controller = controller
        self._n = n_samples

    def __enter__(self) -> _Step:
        self._controller._ensure_started()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self._controller.step_ended(self._n)


class BatchSizeController:
    """Proposes a batch size from ``candidates`` for an :class:`EnergyTarget`; see the module.

    Args:
        candidates: Batch sizes to choose from (positive, distinct integers).
        target: The goal, per sample (see the module docstring); None for Zeus's
            default cost, ``eta = 0.5``.
        job: Name under which what was learned is saved and looked up.
        store_path: The JSON file for this job; None for one named after the job
            and GPU model in :func:`default_store_dir`.
        reuse: Load and save that file; False explores from scratch and saves nothing.
        warmup_steps: Steps at each explored size before measuring it (allocator and
            caches settle, kernels are selected).
        measure_steps: Steps measured at each explored size, at least.
        measure_s: Time measured at each explored size, at least: GPU energy counters
            update about every 100 ms, so a window much shorter than a second can
            misplace a power change within it. Units: s.
        tracker: The running :class:`~greenai.tracking.meter.Meter` that measures energy;
            None measures time only.
        refresh_steps: Steps at the choice between two checks of it (0: never).
        drift: Relative change of the choice's energy or time per sample that makes it
            stored anew and the choice made again.
        max_power_w: Zeus's ``max_power`` for the cost goal; None for the sum of the
            metered GPUs' highest power limits (the highest mean power measured when
            there are none). Units: W.

    Raises:
        ValueError: Empty, non-positive or duplicate candidates, or bad counts.
        TypeError: ``target`` is not an EnergyTarget, or ``job`` not a string.

    What it did is in :attr:`report`.
    """

    def __init__(
        self,
        candidates: Iterable[int],
        *,
        target: EnergyTarget | None = None,
        job: str,
        store_path: str | os.PathLike[str] | None = None,
        reuse: bool = True,
        warmup_steps: int = 2,
        measure_steps: int = 5,
        measure_s: float = 2.0,
        tracker: Meter | None = None,
        max_power_w: float | None = None,
        refresh_steps: int = 500,
        drift: float = 0.05,
    ) -> None:
        if isinstance(candidates, str | bytes):
            raise TypeError(f"candidates must be batch sizes (integers), got {candidates!r}")
        sizes = [check_size("each candidate batch size", c) for c in candidates]
        if not sizes:
            raise ValueError("candidates must hold at least one batch size")
        duplicates = sorted({s for s in sizes if sizes.count(s) > 1})
        if duplicates:
            raise ValueError(f"candidates must be distinct; repeated: {duplicates}")
        if target is not None and not isinstance(target, EnergyTarget):
            raise TypeError(f"target must be a greenai.EnergyTarget or None, got {target!r}")
        if not isinstance(job, str) or not job:
            raise TypeError(f"job must be a non-empty string, got {job!r}")
        if max_power_w is not None and not (
            isinstance(max_power_w, int | float) and 0 < max_power_w < math.inf
        ):
            raise ValueError(f"max_power_w must be a positive number of watts, got {max_power_w!r}")
        self.candidates: tuple[int, ...] = tuple(sorted(sizes))
        self.target = target
        self.job = job
        self.store_path = Path(store_path) if store_path is not None else None
        self.reuse = reuse
        self.warmup_steps = check_count("warmup_steps", warmup_steps, least=0)
        self.measure_steps = check_count("measure_steps", measure_steps, least=1)
        if isinstance(measure_s, bool) or not (
            isinstance(measure_s, int | float) and 0 <= measure_s < math.inf
        ):
            raise ValueError(f"measure_s must be a number of seconds >= 0, got {measure_s!r}")
        self.measure_s = float(measure_s)
        self.refresh_steps = check_count("refresh_steps", refresh_steps, least=0)
        if isinstance(drift, bool) or not (isinstance(drift, int | float) and 0 < drift < math.inf):
            raise ValueError(f"drift must be a positive fraction, got {drift!r}")
        self.drift = float(drift)
        self.tracker = tracker
        self.max_power_w = max_power_w
        self.points: dict[int, SizePoint] = {}
        """What is known, per size (loaded and measured), including sizes not in candidates."""
        self.infeasible_from: int | None = None
        """The smallest size that ran out of memory: it and every larger one are never used."""
        self.report: dict[str, Any] = {"job": job, "candidates": list(self.candidates)}
        self._started = False
        self._queue: list[int] = []
        self._current = self.candidates[0]
        self._chosen: int | None = None
        self._phase_steps = 0
        self._measuring = False
        self._measures = BatchMeasurements()
        self._since_check = 0  # steps at the choice since it was last checked
        self._gpus: list[Device] = []
        self._samples = 0
        self._budget_per_sample_j = math.inf
        self._empty_cache_pending = False

    # ------------------------------------------------------------- public API
    @property
    def batch_size(self) -> int:
        """The size to use now: the one being explored, else the choice. Samples per step."""
        self._ensure_started()
        if self._empty_cache_pending:
            self._empty_cache_pending = False
            empty_cuda_cache()
        return self._current

    @property
    def exploring(self) -> bool:
        """True while sizes are still being measured."""
        self._ensure_started()
        return bool(self._queue)

    @property
    def chosen(self) -> int | None:
        """The chosen size once exploration is over (None before)."""
        return self._chosen

    def feasible(self, batch_size: int) -> bool:
        """False when ``batch_size`` (or a smaller size) ran out of memory."""
        return self.infeasible_from is None or batch_size < self.infeasible_from

    def step(self, samples: int | slice) -> _Step:
        """``with controller.step(n):`` around one training step of ``n`` samples.

        The step counts only when its block ends without an exception. A slice is
        taken as ``stop - start`` samples (the pieces of :meth:`split`).
        """
        return _Step(self, samples_in(samples))

    def step_ended(self, n_samples: int) -> None:
        """Count a finished step of ``n_samples`` samples (the non-``with`` form of :meth:`step`).

        At phase ends it cuts a measurement; once every size is known it chooses; at the
        choice it checks the choice every ``refresh_steps`` steps.
        """
        n = check_size("n_samples", n_samples)
        self._ensure_started()
        self._samples += n
        self._measures.step()
        if self._queue:
            self._explore_step(n)
        elif self._chosen is not None:
            self._refresh_step(n)
        self._take_measured()

    def _explore_step(self, n: int) -> None:
        size = self._queue[0]
        if n != size:  # a stale or short batch: measure only whole steps of this size
            self._measures.cut()
            self._phase_steps = 0
            return
        self._phase_steps += 1
        if not self._measuring:
            if self._phase_steps >= self.warmup_steps:
                self._measures.cut()
                self._measuring, self._phase_steps = True, 0
            return
        if self._phase_steps < self.measure_steps or self._measures.elapsed_s() < self.measure_s:
            return
        self._measures.measure(size, self._phase_steps)
        self._queue.pop(0)
        self._next_phase()

    def _refresh_step(self, n: int) -> None:
        """At the choice: measure it again every ``refresh_steps`` whole steps, while no
        other controller measures."""
        if not self.refresh_steps or self._measures.waiting():
            return
        others = self.tracker is not None and coordination.others(self.tracker, "batch_size")
        if n != self._current or others:
            self._measures.cut()  # not a step of the choice, or the limits change: restart
            self._since_check = 0
            return
        self._since_check += 1
        if self._since_check >= self.refresh_steps:
            self._measures.measure(self._current, self._since_check)
            self._since_check = 0

    def _take_measured(self) -> None:
        """Record the measurements now known; choose (again) when they say to."""
        for size, steps, energy_j, duration_s in self._measures.measured():
            samples = steps * size
            point = SizePoint(size, energy_j / samples, duration_s / samples)
            old = self.points.get(size)
            self.points[size] = point
            logger.debug("measured batch size %d: %s", size, point)
            self._save()
            if size == self._chosen and old is not None and drifted(old, point, self.drift):
                self.report.setdefault("refreshed", []).append(
                    {"samples": self._samples, "batch_size": size, "point": vars(point)}
                )
                self._next_phase(again=True)
        if not self._queue and self._chosen is None and not self._measures.waiting():
            self._next_phase()

    def report_oom(self, batch_size: int) -> int:
        """CUDA ran out of memory at ``batch_size``: never use it or any larger size again.

        Safe to call from an ``except torch.cuda.OutOfMemoryError`` handler (or use
        :meth:`guard_oom`). Exploration goes on with the smaller unexplored sizes; a
        choice is made again among the measured feasible ones, or, with none measured,
        the next smaller candidate is explored.

        Returns:
            The batch size to use now.

        Raises:
            RuntimeError: No smaller candidate is left (even the smallest ran out of memory).
        """
        size = check_size("batch_size", batch_size)
        self._ensure_started()
        self.infeasible_from = (
            size if self.infeasible_from is None else min(size, self.infeasible_from)
        )
        self.report["infeasible_from"] = self.infeasible_from
        self.report.setdefault("oom", []).append({"batch_size": size, "samples": self._samples})
        feasible = [c for c in self.candidates if self.feasible(c)]
        self._save()
        if not feasible:
            raise RuntimeError(
                f"CUDA ran out of memory at batch size {size}, and no smaller candidate is "
                f"left in {list(self.candidates)}"
            )
        exploring_it = bool(self._queue) and not self.feasible(self._queue[0])
        self._queue = [c for c in self._queue if self.feasible(c)]
        if exploring_it or not self._queue:
            self._measures.cut()
            self._next_phase(again=self._chosen is not None)
        return self._current

    def guard_oom(self, batch_size: int | None = None) -> OomAttempt:
        """``with controller.guard_oom() as attempt:`` — survive CUDA out-of-memory in the block.

        Catches ``torch.cuda.OutOfMemoryError`` and RuntimeErrors whose message says
        "out of memory", empties the CUDA cache, calls :meth:`report_oom` and suppresses
        the error; ``attempt.oom`` then says to redo the batch smaller (the retry
        contract is in :mod:`greenai.control.batch_oom`). Other errors pass through
        untouched.

        Args:
            batch_size: The size the block runs; None for :attr:`batch_size` at entry.
        """
        if batch_size is not None:
            check_size("batch_size", batch_size)
        return OomAttempt(batch_size, lambda: self.batch_size, self._report_oom_in_block)

    def _report_oom_in_block(self, batch_size: int) -> int:
        """:meth:`report_oom` for :meth:`guard_oom`'s block, which ran out of memory."""
        # The traceback's frames still hold the failed step's tensors: empty again later.
        self._empty_cache_pending = True
        return self.report_oom(batch_size)

    def split(self, samples: int | slice) -> list[slice]:
        """Cut ``samples`` (a count from 0, or a slice with a stop) into pieces of at most
        :attr:`batch_size`, in order: one piece when the batch already fits."""
        if isinstance(samples, slice):
            if samples.stop is None or (samples.step not in (None, 1)):
                raise ValueError(f"split needs a slice with a stop and step 1, got {samples!r}")
            start, stop = samples.start or 0, samples.stop
        else:
            start, stop = 0, check_count("samples", samples, least=0)
        size = self.batch_size
        return [slice(i, min(i + size, stop)) for i in range(start, stop, size)]

    # ------------------------------------------------------------- start and phases
    def _ensure_started(self) -> None:
        if self._started:
            return
        devices: Sequence[Device] = ()
        if self.tracker is not None:
            try:
                devices = self.tracker.devices
            except RuntimeError as e:
                raise RuntimeError(
                    "BatchSizeController: start its tracker before the first batch "
                    f"(build the controller inside `with greenai.track(...)`): {e}"
                ) from e
        self._gpus = [d for d in devices if d.kind == "gpu"]
        self._measures.attach(self.tracker, self._gpus)
        self._measures.cut()  # what ran before the controller started is not measured
        models = sorted(str(getattr(d, "model", d.name)) for d in self._gpus)
        key: dict[str, Any] = {"job": self.job, "gpu_models": models}
        self._store = SizeStore(self.job, key, self.store_path, reuse=self.reuse)
        if self.max_power_w is None and self._gpus:
            try:
                self.max_power_w = float(sum(d.power_limit_range_w()[1] for d in self._gpus))
            except Exception:
                logger.debug("reading the GPUs' power limit range failed", exc_info=True)
        self._started = True
        self._load()
        self._queue = [c for c in self.candidates if c not in self.points and self.feasible(c)]
        self.report.update(
            gpu_models=models,
            mode=(self.target or DEFAULT_TARGET).mode,
            reused=sorted(c for c in self.candidates if c in self.points),
            explored=[],
            store=str(self._store.path) if self.reuse else None,
        )
        if not any(self.feasible(c) for c in self.candidates):
            raise RuntimeError(
                f"every candidate of {list(self.candidates)} ran out of memory in an earlier "
                f"run of job {self.job!r} (delete {self._store.path} to try again)"
            )
        self._next_phase()

    def _next_phase(self, *, again: bool = False) -> None:
        """Explore the next size, or choose once all are measured (``again``: choose anew)."""
        if self._queue:
            self._current = self._queue[0]
            self.report["explored"].append(self._current)
            self._phase_steps = 0
            self._measuring = self.warmup_steps == 0
            if self.tracker is not None:
                coordination.begin(self.tracker, "batch_size")
            return
        if self._measures.waiting() and not again:
            return  # the last sizes' energy is known a step or a few later
        if self.tracker is not None:
            coordination.end(self.tracker, "batch_size")
        known = [p for s, p in self.points.items() if s in self.candidates and self.feasible(s)]
        if not known:  # an OOM left only unmeasured sizes: take the next smaller one
            smaller = [c for c in self.candidates if self.feasible(c)]
            self._queue = [smaller[-1]]
            self._next_phase()
            return
        self._choose(known)

    def _choose(self, known: list[SizePoint]) -> None:
        target = self.target
        if target is not None and target.mode == "budget" and self._chosen is None:
            if target.total_steps is not None:
                budget_j = target.total_budget_j
                assert budget_j is not None
                remaining = target.total_steps - self._samples
                self._budget_per_sample_j = (
                    (budget_j - self._spent_j()) / remaining if remaining > 0 else math.inf
                )
            else:
                assert target.j_per_step is not None
                self._budget_per_sample_j = float(target.j_per_step)
        choice = choose_batch_size(
            known,
            target,
            j_per_sample_budget=self._budget_per_sample_j * (1 - BUDGET_MARGIN),
            max_power_w=self.max_power_w,
        )
        self._chosen = self._current = choice.batch_size
        self.report.update(
            chosen=choice.batch_size,
            feasible=choice.feasible,
            points=[vars(self.points[s]) for s in sorted(self.points)],
            exploration={"samples": self._samples, "energy_j": self._spent_j()},
        )
        if target is not None and target.mode == "budget":
            self.report["j_per_sample_budget"] = self._budget_per_sample_j
        self._save()

    def _spent_j(self) -> float:
        """Energy spent so far: the placed segments, and the steps since at the current
        size's measured energy; 0 without a tracker (time only is measured). Units: J."""
        if self.tracker is None:
            return 0.0
        point = self.points.get(self._current)
        per_step_j = point.j_per_sample * self._current if point is not None else 0.0
        return self._measures.spent_j + self._measures.unplaced_j(per_step_j)

    # ------------------------------------------------------------- store
    def _load(self) -> None:
        """Read what earlier runs learned; anything unreadable or another key's is ignored."""
        learned = self._store.load()
        if learned is None:
            return
        self.points.update(learned.points)
        self.infeasible_from = learned.infeasible_from
        self.report["loaded"] = {
            "sizes": sorted(learned.points),
            "infeasible_from": learned.infeasible_from,
        }

    def _save(self) -> None:
        """Write what is known, replacing the file atomically; a failure only loses it."""
        if self._started:
            mode = (self.target or DEFAULT_TARGET).mode
            self._store.save(self.points, self.infeasible_from, self._chosen, mode)
