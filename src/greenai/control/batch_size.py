"""Batch-size choice by measured energy and time per sample, remembered across runs.

:class:`BatchSizeController` plays the part of Zeus's batch size optimizer with
no server: it explores candidate batch sizes in the training loop, chooses one
for an :class:`~greenai.control.target.EnergyTarget`, backs off when CUDA runs
out of memory, and keeps what it learned in a local JSON file so the next run
of the same job starts from the choice. :class:`AdaptiveBatchSampler` hands the
current choice to a ``torch.utils.data.DataLoader``.

How it decides:

1. **Explore** (candidates in rising order, sizes already known from earlier
   runs skipped): at each size, ``warmup_steps`` steps, then at least
   ``measure_steps`` steps and ``measure_s`` seconds in one tracker window,
   whose energy (staleness-corrected window boundaries) and duration give
   joules per *sample* and seconds per *sample*:
   steps of different sizes are not comparable, samples are. A step whose
   sample count is not the size being measured (a prefetched batch of the old
   size, the short last batch of an epoch) restarts the measurement.
2. **Choose** (:func:`choose_batch_size`), with the governor's goals per sample:
   the fastest size within the budget; the least energy within
   ``max_slowdown`` of the fastest; or the least Zeus cost
   ``eta * E + (1 - eta) * max_power * T`` per sample. No target means Zeus's
   default, ``eta = 0.5``.
3. **Out of memory**: :meth:`BatchSizeController.report_oom` marks that size and
   every larger one infeasible (they are never tried again, in this run or a
   later one) and backs off to a smaller size.
4. **Reuse** (explore-then-exploit over recurring jobs, a simple form of Zeus's
   multi-armed bandit): per job and GPU model, the measurements, the smallest
   size that ran out of memory and the choice are saved in
   ``$GREENAI_STATE_DIR/batch_sizes`` (or ``$XDG_STATE_HOME/greenai/batch_sizes``),
   next to the power profiles. The next run explores only sizes it does not
   know and otherwise starts at once at the choice, recomputed for its own
   target. Delete the file to measure again (after a driver, model or data change).

An :class:`EnergyTarget` counts in steps; here the unit of work is a sample:
``j_per_step`` is read as joules per sample and ``total_steps`` as the number of
samples the run processes (so ``budget_j`` is spread over samples). Energy is
the metered GPUs' (every device's when no GPU is metered). Without a tracker
only time is measured, and the fastest size per sample is chosen.

The training loop drives it; the same loop works with ``run.step()`` of a
:func:`greenai.track` run or without one::

    with greenai.track("resnet") as run:
        controller = BatchSizeController(
            [32, 64, 128, 256], target=EnergyTarget(eta=0.5), job="resnet", tracker=run
        )
        loader = DataLoader(dataset, batch_sampler=AdaptiveBatchSampler(len(dataset), controller))
        for epoch in range(epochs):
            for x, y in loader:
                pending = controller.split(len(x))  # one piece, unless the size dropped
                while pending:
                    part = pending.pop(0)
                    with controller.guard_oom() as attempt, run.step(), controller.step(part):
                        optimizer.zero_grad()
                        loss_fn(model(x[part]), y[part]).backward()
                        optimizer.step()
                    if attempt.oom:  # nothing of this piece was applied: redo it smaller
                        pending[:0] = controller.split(part)

**Retry contract of** :meth:`BatchSizeController.guard_oom`: when the block
raises CUDA out-of-memory, the size is reported, the CUDA cache emptied and the
error suppressed; ``attempt.oom`` is then True and ``controller.batch_size`` is
smaller. The block must apply nothing before the error can happen (zero the
gradients first, step the optimizer last), so the loop redoes the same samples
in pieces of at most the new size (:meth:`~BatchSizeController.split`). Batches
the DataLoader prepared before the change (``num_workers > 0`` prefetches) still
have the old size: splitting every batch, as above, handles them. When even the
smallest candidate runs out of memory the error is not suppressed.

Units: J, s, W; sizes in samples.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import sys
from collections.abc import Iterable, Iterator, Sequence, Sized
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, NamedTuple

from greenai.control.limit_choice import BUDGET_MARGIN
from greenai.control.state import state_dir
from greenai.control.target import EnergyTarget
from greenai.core import clock as _clock
from greenai.core.files import write_atomic

if TYPE_CHECKING:
    import os

    from greenai.devices import Device
    from greenai.tracking.meter import Meter

logger = logging.getLogger(__name__)

_FORMAT = "greenai-batch-size/1"
_DEFAULT_TARGET = EnergyTarget(eta=0.5)


def default_store_dir() -> Path:
    """``$GREENAI_STATE_DIR/batch_sizes``, else ``$XDG_STATE_HOME/greenai/batch_sizes``.

    The same state folder as the power profiles and the limit journal.
    """
    return state_dir() / "batch_sizes"


@dataclass(frozen=True)
class SizePoint:
    """One measured batch size.

    Attributes:
        batch_size: Samples per step.
        j_per_sample: Mean energy per sample (NaN when no energy was metered). Units: J.
        s_per_sample: Mean wall time per sample, data loading between steps included.
            Units: s.
    """

    batch_size: int
    j_per_sample: float
    s_per_sample: float


class BatchChoice(NamedTuple):
    """A chosen batch size and whether it meets the goal."""

    batch_size: int
    feasible: bool
    """False when no size meets the budget (the lowest-energy one was taken)."""


def choose_batch_size(
    points: Sequence[SizePoint],
    target: EnergyTarget | None,
    *,
    j_per_sample_budget: float = math.inf,
    max_power_w: float | None = None,
) -> BatchChoice:
    """Choose among measured sizes for ``target``'s goal, per sample.

    The governor's :func:`~greenai.control.limit_choice.choose_limit` applied to
    discrete points (no interpolation: sizes between candidates were never tried,
    and may not fit in memory).

    Args:
        points: Measured, feasible sizes (at least one).
        target: The goal; None for Zeus's default cost, ``eta = 0.5``.
        j_per_sample_budget: Energy each remaining sample may spend (budget goals).
            Units: J.
        max_power_w: Zeus's ``max_power`` for the cost goal (the GPUs' highest power
            limits, summed); None for the highest mean power measured. Units: W.

    Raises:
        ValueError: ``points`` is empty.
    """
    if not points:
        raise ValueError("no measured batch size to choose from")
    target = _DEFAULT_TARGET if target is None else target
    if any(math.isnan(p.j_per_sample) for p in points):
        # Nothing metered energy: only time can be compared.
        best = min(points, key=lambda p: (p.s_per_sample, -p.batch_size))
        return BatchChoice(best.batch_size, feasible=target.mode != "budget")
    lowest = min(points, key=lambda p: (p.j_per_sample, p.s_per_sample))
    if target.mode == "budget":
        fits = [p for p in points if p.j_per_sample <= j_per_sample_budget]
        if not fits:
            return BatchChoice(lowest.batch_size, feasible=False)
        best = min(fits, key=lambda p: (p.s_per_sample, p.j_per_sample))
        return BatchChoice(best.batch_size, feasible=True)
    if target.mode == "slowdown":
        assert target.max_slowdown is not None
        fastest = min(p.s_per_sample for p in points)
        ok = [p for p in points if p.s_per_sample <= target.max_slowdown * fastest * (1 + 1e-12)]
        best = min(ok, key=lambda p: (p.j_per_sample, p.s_per_sample))
        return BatchChoice(best.batch_size, feasible=True)
    assert target.eta is not None
    eta = float(target.eta)
    power = (
        max(p.j_per_sample / p.s_per_sample for p in points if p.s_per_sample > 0)
        if max_power_w is None
        else max_power_w
    )
    best = min(
        points,
        key=lambda p: (eta * p.j_per_sample + (1 - eta) * power * p.s_per_sample, p.s_per_sample),
    )
    return BatchChoice(best.batch_size, feasible=True)


def _check_size(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def _check_count(name: str, value: object, *, least: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ValueError(f"{name} must be an integer >= {least}, got {value!r}")
    return value


def is_out_of_memory(error: BaseException) -> bool:
    """True for ``torch.cuda.OutOfMemoryError`` or a RuntimeError saying "out of memory"."""
    torch = sys.modules.get("torch")
    oom_type = getattr(getattr(torch, "cuda", None), "OutOfMemoryError", None)
    if isinstance(oom_type, type) and isinstance(error, oom_type):
        return True
    return isinstance(error, RuntimeError) and "out of memory" in str(error).lower()


def _empty_cuda_cache() -> None:
    """Give cached CUDA blocks back, where torch is already imported and CUDA is up."""
    torch = sys.modules.get("torch")
    if torch is None:
        return
    try:
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            torch.cuda.empty_cache()
    except Exception:
        logger.debug("emptying the CUDA cache failed", exc_info=True)


class OomAttempt:
    """What :meth:`BatchSizeController.guard_oom` saw; read it after the ``with`` block.

    Attributes:
        oom: True when the block ran out of memory (and nothing of it should count).
        batch_size: The size that ran out of memory, when it did.
    """

    def __init__(self, controller: BatchSizeController, batch_size: int | None) -> None:
        self._controller = controller
        self._size = batch_size
        self.oom = False
        self.batch_size: int | None = None

    def __enter__(self) -> OomAttempt:
        if self._size is None:
            self._size = self._controller.batch_size
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        if exc is None or not is_out_of_memory(exc):
            return False
        assert self._size is not None
        self.oom, self.batch_size = True, self._size
        _empty_cuda_cache()
        # The traceback's frames still hold the failed step's tensors: empty again later.
        self._controller._empty_cache_pending = True
        try:
            self._controller.report_oom(self._size)
        except RuntimeError:
            return False  # even the smallest size fails: the error is the user's to see
        return True


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
        tracker: The running :class:`~greenai.tracking.meter.Meter` whose windows measure
            energy; None measures time only.
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
    ) -> None:
        if isinstance(candidates, str | bytes):
            raise TypeError(f"candidates must be batch sizes (integers), got {candidates!r}")
        sizes = [_check_size("each candidate batch size", c) for c in candidates]
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
        self.warmup_steps = _check_count("warmup_steps", warmup_steps, least=0)
        self.measure_steps = _check_count("measure_steps", measure_steps, least=1)
        if isinstance(measure_s, bool) or not (
            isinstance(measure_s, int | float) and 0 <= measure_s < math.inf
        ):
            raise ValueError(f"measure_s must be a number of seconds >= 0, got {measure_s!r}")
        self.measure_s = float(measure_s)
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
        self._window: str | None = None
        self._window_seq = 0
        self._window_t0 = 0.0
        self._gpus: list[Device] = []
        self._metered_all = False
        self._samples = 0
        self._spent_j = 0.0
        self._budget_per_sample_j = math.inf
        self._empty_cache_pending = False

    # ------------------------------------------------------------- public API
    @property
    def batch_size(self) -> int:
        """The size to use now: the one being explored, else the choice. Samples per step."""
        self._ensure_started()
        if self._empty_cache_pending:
            self._empty_cache_pending = False
            _empty_cuda_cache()
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
        return _Step(self, self._samples_in(samples))

    def step_ended(self, n_samples: int) -> None:
        """Count a finished step of ``n_samples`` samples (the non-``with`` form of :meth:`step`).

        At phase ends it measures, and once every size is known it chooses.
        """
        n = _check_size("n_samples", n_samples)
        self._ensure_started()
        self._samples += n
        if not self._queue:
            return
        size = self._queue[0]
        if n != size:  # a stale or short batch: measure only whole steps of this size
            self._cut()
            self._phase_steps = 0
            return
        self._phase_steps += 1
        if not self._measuring:
            if self._phase_steps >= self.warmup_steps:
                self._cut()
                self._measuring, self._phase_steps = True, 0
            return
        if (
            self._phase_steps < self.measure_steps
            or _clock.active().now() - self._window_t0 < self.measure_s
        ):
            return
        energy_j, duration_s = self._cut()
        samples = self._phase_steps * size
        point = SizePoint(size, energy_j / samples, duration_s / samples)
        self.points[size] = point
        logger.debug("measured batch size %d: %s", size, point)
        self._queue.pop(0)
        self._save()
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
        size = _check_size("batch_size", batch_size)
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
            if self._window is not None:
                self._cut()
            self._next_phase()
        return self._current

    def guard_oom(self, batch_size: int | None = None) -> OomAttempt:
        """``with controller.guard_oom() as attempt:`` — survive CUDA out-of-memory in the block.

        Catches ``torch.cuda.OutOfMemoryError`` and RuntimeErrors whose message says
        "out of memory", empties the CUDA cache, calls :meth:`report_oom` and suppresses
        the error; ``attempt.oom`` then says to redo the batch smaller (the retry
        contract is in the module docstring). Other errors pass through untouched.

        Args:
            batch_size: The size the block runs; None for :attr:`batch_size` at entry.
        """
        if batch_size is not None:
            _check_size("batch_size", batch_size)
        return OomAttempt(self, batch_size)

    def split(self, samples: int | slice) -> list[slice]:
        """Cut ``samples`` (a count from 0, or a slice with a stop) into pieces of at most
        :attr:`batch_size`, in order: one piece when the batch already fits."""
        if isinstance(samples, slice):
            if samples.stop is None or (samples.step not in (None, 1)):
                raise ValueError(f"split needs a slice with a stop and step 1, got {samples!r}")
            start, stop = samples.start or 0, samples.stop
        else:
            start, stop = 0, _check_count("samples", samples, least=0)
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
        self._metered_all = self.tracker is not None and not self._gpus
        models = sorted(str(getattr(d, "model", d.name)) for d in self._gpus)
        self._key: dict[str, Any] = {"job": self.job, "gpu_models": models}
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
            mode=(self.target or _DEFAULT_TARGET).mode,
            reused=sorted(c for c in self.candidates if c in self.points),
            explored=[],
            store=str(self._path()) if self.reuse else None,
        )
        if not any(self.feasible(c) for c in self.candidates):
            raise RuntimeError(
                f"every candidate of {list(self.candidates)} ran out of memory in an earlier "
                f"run of job {self.job!r} (delete {self._path()} to try again)"
            )
        self._next_phase()

    def _next_phase(self) -> None:
        if self._queue:
            self._current = self._queue[0]
            self.report["explored"].append(self._current)
            self._phase_steps = 0
            self._measuring = self.warmup_steps == 0
            if self._window is None:
                self._begin()
            return
        known = [p for s, p in self.points.items() if s in self.candidates and self.feasible(s)]
        if not known:  # an OOM left only unmeasured sizes: take the next smaller one
            smaller = [c for c in self.candidates if self.feasible(c)]
            self._queue = [smaller[-1]]
            self._next_phase()
            return
        self._choose(known)

    def _choose(self, known: list[SizePoint]) -> None:
        if self._window is not None:
            self._cut(reopen=False)
        target = self.target
        if target is not None and target.mode == "budget" and self._chosen is None:
            if target.total_steps is not None:
                budget_j = target.total_budget_j
                assert budget_j is not None
                remaining = target.total_steps - self._samples
                self._budget_per_sample_j = (
                    (budget_j - self._spent_j) / remaining if remaining > 0 else math.inf
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
            exploration={"samples": self._samples, "energy_j": self._spent_j},
        )
        if target is not None and target.mode == "budget":
            self.report["j_per_sample_budget"] = self._budget_per_sample_j
        self._save()

    # ------------------------------------------------------------- windows
    def _begin(self) -> None:
        self._window_t0 = _clock.active().now()
        if self.tracker is None:
            self._window = "clock"
            return
        self._window_seq += 1
        self._window = f"greenai.batch_size/{id(self):x}/{self._window_seq}"
        self.tracker.begin_window(self._window)

    def _cut(self, *, reopen: bool = True) -> tuple[float, float]:
        """End the open window and (by default) open the next one.

        Returns:
            The closed window's energy (J; NaN without a tracker) and duration (s).
        """
        assert self._window is not None
        window, self._window = self._window, None
        if self.tracker is None:
            energy_j, duration_s = math.nan, _clock.active().now() - self._window_t0
        else:
            result = self.tracker.end_window(window)
            by_device = result.energy_by_device_j
            if self._metered_all:
                energy_j = float(sum(by_device.values()))
            else:
                energy_j = float(sum(by_device.get(d.name, 0.0) for d in self._gpus))
            duration_s = result.duration_s
            self._spent_j += energy_j
        if reopen:
            self._begin()
        return energy_j, duration_s

    # ------------------------------------------------------------- store
    def _path(self) -> Path:
        if self.store_path is not None:
            return self.store_path
        key = self._key
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in self.job)[:40]
        return default_store_dir() / f"{safe}-{digest}.json"

    def _load(self) -> None:
        """Read what earlier runs learned; anything unreadable or another key's is ignored."""
        if not self.reuse:
            return
        path = self._path()
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if data.get("format") != _FORMAT or data.get("key") != self._key:
                return
            points = {
                int(d["batch_size"]): SizePoint(
                    int(d["batch_size"]), float(d["j_per_sample"]), float(d["s_per_sample"])
                )
                for d in data["sizes"]
            }
            infeasible = data.get("infeasible_from")
            infeasible = None if infeasible is None else _check_size("infeasible_from", infeasible)
        except FileNotFoundError:
            return
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            logger.debug("unreadable batch-size store %s", path, exc_info=True)
            return
        self.points.update(points)
        self.infeasible_from = infeasible
        self.report["loaded"] = {"sizes": sorted(points), "infeasible_from": infeasible}

    def _save(self) -> None:
        """Write what is known, replacing the file atomically; a failure only loses it."""
        if not self.reuse or not self._started:
            return
        data = {
            "format": _FORMAT,
            "key": self._key,
            "sizes": [vars(self.points[s]) for s in sorted(self.points)],
            "infeasible_from": self.infeasible_from,
            "choice": self._chosen,
            "mode": (self.target or _DEFAULT_TARGET).mode,
        }
        path = self._path()
        try:
            write_atomic(path, json.dumps(data, indent=1).encode())
        except OSError:
            logger.debug("could not save the batch-size store %s", path, exc_info=True)

    @staticmethod
    def _samples_in(samples: int | slice) -> int:
        if isinstance(samples, slice):
            if samples.stop is None:
                raise ValueError(f"a slice of samples needs a stop, got {samples!r}")
            return _check_size("samples", samples.stop - (samples.start or 0))
        return _check_size("samples", samples)


class AdaptiveBatchSampler:
    """Batches of indices whose length follows ``controller.batch_size`` as it changes.

    Pass it as a DataLoader's ``batch_sampler``: the size is read as each batch is
    made, so with ``num_workers=0`` a change applies to the very next batch (with
    workers, after the batches already prefetched). Every index of an epoch is
    yielded exactly once, whatever the changes; with ``drop_last`` the short last
    batch is left out.

    It implements torch's ``Sampler[list[int]]`` protocol (``__iter__``, ``__len__``)
    without subclassing it, so this module imports without torch; DataLoader takes
    any such iterable.

    Args:
        source: The dataset's length (indices ``0 .. n-1``) or a sampler of indices
            (any iterable of ints, e.g. ``DistributedSampler``), whose order is kept.
        controller: Gives the batch size.
        drop_last: Leave out the last batch when it is short.
        shuffle: Shuffle the indices each epoch (only with a length; needs torch).
        generator: ``torch.Generator`` for the shuffle; None seeds one at random
            per epoch, like ``RandomSampler``.
    """

    def __init__(
        self,
        source: int | Iterable[int],
        controller: BatchSizeController,
        *,
        drop_last: bool = False,
        shuffle: bool = False,
        generator: Any = None,
    ) -> None:
        if isinstance(source, bool) or (isinstance(source, int) and source < 0):
            raise ValueError(f"source must be a dataset length >= 0 or a sampler, got {source!r}")
        if not isinstance(source, int) and shuffle:
            raise ValueError("shuffle=True needs a dataset length; a sampler sets its own order")
        if not isinstance(controller, BatchSizeController):
            raise TypeError(f"controller must be a BatchSizeController, got {controller!r}")
        self.source = source
        self.controller = controller
        self.drop_last = bool(drop_last)
        self.shuffle = bool(shuffle)
        self.generator = generator

    def _indices(self) -> Iterator[int]:
        if not isinstance(self.source, int):
            return iter(self.source)
        if not self.shuffle:
            return iter(range(self.source))
        import torch

        generator = self.generator
        if generator is None:
            generator = torch.Generator()
            generator.manual_seed(int(torch.empty((), dtype=torch.int64).random_().item()))
        return iter(torch.randperm(self.source, generator=generator).tolist())

    def __iter__(self) -> Iterator[list[int]]:
        """Yield the epoch's indices in batches of the controller's current size."""
        batch: list[int] = []
        size = 0
        for index in self._indices():
            if not batch:
                size = self.controller.batch_size
            batch.append(int(index))
            if len(batch) >= size:
                yield batch
                batch = []
        if batch and not self.drop_last:
            yield batch

    def __len__(self) -> int:
        """An estimate: the batches of an epoch at the current size.

        Sizes chosen later change the true count, so progress bars and schedulers
        reading it see the count at the time of the call.

        Raises:
            TypeError: The sampler given as ``source`` has no length.
        """
        if isinstance(self.source, int):
            n = self.source
        elif isinstance(self.source, Sized):
            n = len(self.source)
        else:
            raise TypeError("AdaptiveBatchSampler over a sampler without a length has no len()")
        size = self.controller.batch_size
        return n // size if self.drop_last else -(-n // size)
