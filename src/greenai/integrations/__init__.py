"""Callbacks that meter (and steer) training loops the user does not own.

* :mod:`greenai.integrations.lightning`: ``GreenAICallback`` for PyTorch Lightning.
* :mod:`greenai.integrations.huggingface`: ``GreenAICallback`` for the Transformers ``Trainer``.

Each submodule imports its framework when it is imported, and raises an
``ImportError`` that names the package to install when the framework is absent.
This package itself imports no framework, so ``import greenai.integrations``
stays cheap and works everywhere.

Both callbacks drive the same :class:`LoopRun`: one tracker from the start of
training to its end, one window per epoch (``"epoch N"``) and one ``run.step()``
per training batch, so an :class:`~greenai.EnergyTarget` works as in a loop
written by hand.
"""

from __future__ import annotations

import logging
from typing import Any

from greenai.control.target import EnergyTarget
from greenai.tracker import Tracker
from greenai.tracking.result import Result

logger = logging.getLogger(__name__)

__all__ = ["LoopRun", "batch_samples", "missing_framework"]


def missing_framework(framework: str, modules: tuple[str, ...], package: str) -> ImportError:
    """The error a framework integration raises when none of ``modules`` can be imported.

    Args:
        framework: The framework's name, for the message.
        modules: The import names tried.
        package: What to ``pip install``.
    """
    tried = " or ".join(f"'{m}'" for m in modules)
    return ImportError(
        f"greenai's {framework} integration needs {framework}, but {tried} could not be "
        f"imported; install it with: pip install {package}"
    )


def batch_samples(batch: Any) -> int | None:
    """The samples in a batch: the first dimension of its first tensor (the batch itself,
    or the first in a tuple, list or dict); None when there is none to count."""
    if isinstance(batch, dict):
        batch = next(iter(batch.values()), None)
    elif isinstance(batch, tuple | list):
        batch = batch[0] if batch else None
    shape = getattr(batch, "shape", None)
    if not shape or not isinstance(shape[0], int):
        return None
    return int(shape[0])


class LoopRun:
    """One tracked training run driven by a framework's hooks, in the order they come.

    The hooks of a loop the user does not own arrive one by one (start, epoch
    begins, step begins, ...), not as ``with`` blocks, so this holds the open
    window and step between calls. Hooks that come when no run is open (a
    ``validate()`` without ``fit()``, a second ``on_train_end``) are ignored:
    metering must never break the training loop.

    Args:
        name: The run's name.
        target: Energy goal steered through the run's steps (see :mod:`greenai.control`).
        track_kwargs: Any other argument of :class:`greenai.Tracker`.
    """

    def __init__(
        self, name: str | None, target: EnergyTarget | None, track_kwargs: dict[str, Any]
    ) -> None:
        self.name = name
        self.target = target
        self.track_kwargs = dict(track_kwargs)
        self.tracker: Tracker | None = None
        self._epoch_key: str | None = None
        self._step: Any = None  # the open ``run.step()`` context
        self._result: Result | None = None
        self.epoch_results: list[Result] = []

    @property
    def running(self) -> bool:
        """True between :meth:`begin` and :meth:`end`."""
        return self.tracker is not None

    @property
    def result(self) -> Result:
        """The run's result, once it has ended."""
        if self._result is None:
            raise RuntimeError("the run has no result yet: training has not ended")
        return self._result

    def begin(self, name: str | None = None, **defaults: Any) -> None:
        """Start the tracker (ending a run still open from an interrupted training first).

        Args:
            name: Name to use when none was given at construction.
            defaults: Tracker arguments to use when the user gave none (a rank's GPU).
        """
        if self.tracker is not None:
            self.end()
        kwargs = {**defaults, **self.track_kwargs}
        self.tracker = Tracker(self.name or name, target=self.target, **kwargs)
        self.tracker.start()
        self._result = None
        self.epoch_results = []

    def begin_epoch(self, epoch: int) -> None:
        """Open the window ``"epoch <epoch>"``, closing one left open."""
        if self.tracker is None:
            return
        if self._epoch_key is not None:
            self.end_epoch()
        self._epoch_key = f"epoch {epoch}"
        self.tracker.begin_window(self._epoch_key)

    def end_epoch(self) -> Result | None:
        """Close the epoch window; returns its result, or None when none was open."""
        if self.tracker is None or self._epoch_key is None:
            return None
        self.end_step()
        key, self._epoch_key = self._epoch_key, None
        result = self.tracker.end_window(key)
        self.epoch_results.append(result)
        return result

    def begin_step(self, batch: Any = None) -> None:
        """Enter a ``run.step()`` (a step left open is ended first, as failed), counting the
        samples of ``batch`` when it holds a tensor (its first dimension)."""
        if self.tracker is None:
            return
        if self._step is not None:
            self.end_step(failed=True)
        self._step = self.tracker.step(samples=batch_samples(batch))
        self._step.__enter__()

    def end_step(self, *, failed: bool = False, tokens: int | None = None) -> None:
        """Exit the open ``run.step()`` (with the ``tokens`` it processed, when known); a
        failed step is not counted by the governor."""
        step, self._step = self._step, None
        if step is None:
            return
        if tokens:
            step.count(tokens=tokens)
        if failed:
            error = RuntimeError("training step failed")
            step.__exit__(RuntimeError, error, None)
        else:
            step.__exit__(None, None, None)

    def end(self, exc: BaseException | None = None) -> Result | None:
        """Stop the tracker (closing the open step and epoch) and keep its result.

        Args:
            exc: The exception that ended training, if any: the open step is then
                not counted as a finished step.
        """
        if self.tracker is None:
            return self._result
        self.end_step(failed=exc is not None)
        if self._epoch_key is not None:
            self.end_epoch()
        tracker, self.tracker = self.tracker, None
        self._result = tracker.stop()
        return self._result

    def energy_so_far_j(self) -> float | None:
        """Energy of every metered device since the start, while running. Units: J."""
        if self.tracker is None:
            return None if self._result is None else self._result.energy_j
        return self.tracker.snapshot().energy_j

    def co2_so_far_kg(self, energy_j: float) -> float | None:
        """Emissions for ``energy_j``: exact once the run has ended, else estimated.

        While the run goes, the carbon intensity is not charged until a window
        closes, so the estimate uses the kg per joule of the last finished epoch
        (None before the first one ends). Units: kg CO2e.
        """
        if self.tracker is None and self._result is not None:
            return self._result.co2_kg
        for epoch in reversed(self.epoch_results):
            if epoch.co2_kg is not None and epoch.energy_j > 0:
                return energy_j * epoch.co2_kg / epoch.energy_j
        return None
