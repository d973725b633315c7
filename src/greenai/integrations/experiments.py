"""A run's energy, power, CO2e and cost in the experiment tracker its team already reads.

``greenai.track(..., log_to=[...])`` takes one or more of:

* :class:`TensorBoardLogger`: scalars in TensorBoard event files (``torch.utils.tensorboard``);
* :class:`MLflowLogger`: metrics of an MLflow run (the active one, or one it starts);
* :class:`WandbLogger`: metrics and summary of a Weights & Biases run (the active one, or
  one it starts; ``WANDB_MODE=offline`` works without a network).

Each is a run observer (:class:`~greenai.tracking.observer.RunObserver`). Every
``every_steps`` steps (``run.step()``) it logs the figures so far, at greenai's step count:
``greenai/energy_j``, ``greenai/co2_kg`` and ``greenai/cost_usd`` (where the run is
accounted), ``greenai/steps``, and per device ``greenai/<device>/energy_j`` and
``greenai/<device>/power_w``. When the run's result is made it logs the exact totals
(``greenai/total_energy_j``, ``total_co2_kg``, ``total_cost_usd``, ``duration_s``,
``mean_power_w``, ``energy_per_step_j``, ``partial``; ``greenai/<device>/total_energy_j``).
No name is a folder of another (MLflow's file store keeps each metric in a file of that
path). Each library is imported only when its logger is built, with an error naming
the package to install; a failure to log is one warning, never an exception in the loop.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from greenai.core.errors import OutputWarning, warn
from greenai.integrations import missing_framework

if TYPE_CHECKING:
    import os

    from greenai.tracking.meter import Meter
    from greenai.tracking.result import Result

logger = logging.getLogger(__name__)

PREFIX = "greenai/"


class ExperimentLogger:
    """Logs a run's figures every ``every_steps`` steps and its totals at the end; the
    subclasses say where (:meth:`_open`, :meth:`_log`, :meth:`_summary`, :meth:`_close`).

    Args:
        every_steps: Steps between two logs of the figures so far (>= 1).
    """

    library = ""  # the experiment tracker, for messages

    def __init__(self, *, every_steps: int = 100) -> None:
        if isinstance(every_steps, bool) or not isinstance(every_steps, int) or every_steps < 1:
            raise ValueError(f"every_steps must be a positive integer, got {every_steps!r}")
        self.every_steps = every_steps
        self._tracker: Meter | None = None
        self._steps = 0
        self._start_unix_s = 0.0
        self._warned = False

    # ------------------------------------------------------------- RunObserver
    def run_started(self, tracker: Meter) -> None:
        self._tracker, self._steps, self._start_unix_s = tracker, 0, time.time()
        self._safely(lambda: self._open(tracker.name))

    def step_ended(self, start_s: float, end_s: float) -> None:
        self._steps += 1
        if self._steps % self.every_steps == 0:
            self._safely(self._log_so_far)

    def run_stopping(self) -> dict[str, Any]:
        return {}

    def run_stopped(self, result: Result) -> None:
        self._safely(lambda: self._log_totals(result))
        self._safely(self._close)

    # ------------------------------------------------------------- figures
    def _log_so_far(self) -> None:
        tracker = self._tracker
        assert tracker is not None
        snapshot = tracker.snapshot()
        so_far = tracker.account(snapshot.as_result(tracker.name, self._start_unix_s))
        metrics = {f"{PREFIX}energy_j": snapshot.energy_j, f"{PREFIX}steps": snapshot.steps}
        for device, energy_j in snapshot.energy_by_device_j.items():
            metrics[f"{PREFIX}{device}/energy_j"] = energy_j
            metrics[f"{PREFIX}{device}/power_w"] = snapshot.power_w.get(device, math.nan)
        if so_far.co2_kg is not None:
            metrics[f"{PREFIX}co2_kg"] = so_far.co2_kg
        if so_far.cost_usd is not None:
            metrics[f"{PREFIX}cost_usd"] = so_far.cost_usd
        self._log(_finite(metrics), self._steps)

    def _log_totals(self, result: Result) -> None:
        totals: dict[str, float] = {
            f"{PREFIX}total_energy_j": result.energy_j,
            f"{PREFIX}duration_s": result.duration_s,
            f"{PREFIX}mean_power_w": result.mean_power_w,
            f"{PREFIX}partial": float(result.partial),
        }
        for device, energy_j in result.energy_by_device_j.items():
            totals[f"{PREFIX}{device}/total_energy_j"] = energy_j
        if result.co2_kg is not None:
            totals[f"{PREFIX}total_co2_kg"] = result.co2_kg
        if result.cost_usd is not None:
            totals[f"{PREFIX}total_cost_usd"] = result.cost_usd
        if result.steps is not None and result.steps.count:
            totals[f"{PREFIX}energy_per_step_j"] = result.steps.energy_j / result.steps.count
        self._summary(_finite(totals), self._steps)

    def _safely(self, action: Any) -> None:
        """Run ``action``; a failure is one warning (metering never breaks the loop)."""
        try:
            action()
        except Exception as e:
            logger.debug("logging to %s failed", self.library, exc_info=True)
            if not self._warned:
                self._warned = True
                warn(f"greenai could not log to {self.library} ({e!r})", OutputWarning)

    # ------------------------------------------------------------- where to
    def _open(self, name: str | None) -> None:
        """Find or start the experiment run (in the user's thread, as the run starts)."""

    def _log(self, metrics: Mapping[str, float], step: int) -> None:
        raise NotImplementedError

    def _summary(self, totals: Mapping[str, float], step: int) -> None:
        self._log(totals, step)

    def _close(self) -> None:
        """Let go of what :meth:`_open` started."""


def _finite(values: Mapping[str, float]) -> dict[str, float]:
    """Only the finite figures (a tracker cannot chart NaN or infinity)."""
    return {k: float(v) for k, v in values.items() if math.isfinite(float(v))}


class TensorBoardLogger(ExperimentLogger):
    """Scalars in TensorBoard event files under ``log_dir`` (or through ``writer``, a
    ``torch.utils.tensorboard.SummaryWriter`` of the user's, left open)."""

    library = "TensorBoard"

    def __init__(
        self,
        log_dir: str | os.PathLike[str] | None = None,
        *,
        writer: Any = None,
        every_steps: int = 100,
    ) -> None:
        super().__init__(every_steps=every_steps)
        if (log_dir is None) == (writer is None):
            raise ValueError("give exactly one of log_dir or writer")
        if writer is None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as e:
                raise missing_framework(
                    "TensorBoard", ("torch.utils.tensorboard",), "tensorboard"
                ) from e
            writer, self._owned = SummaryWriter(log_dir=str(log_dir)), True
        else:
            self._owned = False
        self.writer = writer

    def _log(self, metrics: Mapping[str, float], step: int) -> None:
        for tag, value in metrics.items():
            self.writer.add_scalar(tag, value, step)

    def _close(self) -> None:
        self.writer.flush()
        if self._owned:
            self.writer.close()


class MLflowLogger(ExperimentLogger):
    """Metrics of an MLflow run: ``run_id``'s, else the active run's, else a run it starts
    (named after the tracker) and ends. Logs through ``MlflowClient`` with the run's id,
    so the figures arrive whichever thread makes the result."""

    library = "MLflow"

    def __init__(self, run_id: str | None = None, *, every_steps: int = 100) -> None:
        super().__init__(every_steps=every_steps)
        try:
            import mlflow
        except ImportError as e:
            raise missing_framework("MLflow", ("mlflow",), "mlflow") from e
        self._mlflow = mlflow
        self.run_id = run_id
        self._started = False

    def _open(self, name: str | None) -> None:
        if self.run_id is not None:
            return
        active = self._mlflow.active_run()
        if active is None:
            active = self._mlflow.start_run(run_name=name)
            self._started = True
        self.run_id = active.info.run_id

    def _log(self, metrics: Mapping[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now_ms = int(time.time() * 1000)
        batch = [Metric(k, v, now_ms, step) for k, v in metrics.items()]
        self._mlflow.tracking.MlflowClient().log_batch(str(self.run_id), metrics=batch)

    def _close(self) -> None:
        if self._started:
            self._mlflow.tracking.MlflowClient().set_terminated(str(self.run_id))
            if (active := self._mlflow.active_run()) is not None and (
                active.info.run_id == self.run_id
            ):
                self._mlflow.end_run()
            self._started = False


class WandbLogger(ExperimentLogger):
    """Metrics and summary of a W&B run: ``run``, else the active one (``wandb.run``), else
    one it starts (``project``, named after the tracker) and finishes. greenai's figures
    have their own step axis (``greenai/step``), so they never disturb the user's steps."""

    library = "Weights & Biases"

    def __init__(
        self, run: Any = None, *, project: str | None = None, every_steps: int = 100
    ) -> None:
        super().__init__(every_steps=every_steps)
        try:
            import wandb
        except ImportError as e:
            raise missing_framework("Weights & Biases", ("wandb",), "wandb") from e
        self._wandb = wandb
        self.run = run
        self.project = project
        self._started = False

    def _open(self, name: str | None) -> None:
        if self.run is None:
            self.run = self._wandb.run
        if self.run is None:
            self.run = self._wandb.init(project=self.project, name=name)
            self._started = True
        self.run.define_metric(f"{PREFIX}step")
        self.run.define_metric(f"{PREFIX}*", step_metric=f"{PREFIX}step")

    def _log(self, metrics: Mapping[str, float], step: int) -> None:
        self.run.log({**metrics, f"{PREFIX}step": step})

    def _summary(self, totals: Mapping[str, float], step: int) -> None:
        self.run.summary.update(dict(totals))

    def _close(self) -> None:
        if self._started:
            self.run.finish()
            self._started = False
