"""PyTorch Lightning: meter (and steer) ``trainer.fit()`` with :class:`GreenAICallback`.

>>> from greenai.integrations.lightning import GreenAICallback
>>> energy = GreenAICallback("finetune", target=greenai.EnergyTarget(eta=0.5))  # doctest: +SKIP
>>> trainer = lightning.pytorch.Trainer(callbacks=[energy])  # doctest: +SKIP
>>> trainer.fit(model)  # doctest: +SKIP
>>> energy.result.energy_j  # doctest: +SKIP

Works with the ``lightning`` package (``lightning.pytorch``) and with the older
standalone ``pytorch_lightning``; importing this module without either raises
an ``ImportError`` that says what to install.
"""

from __future__ import annotations

from typing import Any

from greenai.control.target import EnergyTarget
from greenai.integrations import LoopRun, missing_framework
from greenai.tracking.result import Result

try:
    from lightning.pytorch import (  # type: ignore[import-not-found,unused-ignore]
        Callback,
        LightningModule,
        Trainer,
    )
except ImportError:
    try:
        from pytorch_lightning import (  # type: ignore[import-not-found,unused-ignore,assignment]
            Callback,
            LightningModule,
            Trainer,
        )
    except ImportError as e:
        raise missing_framework(
            "PyTorch Lightning", ("lightning", "pytorch_lightning"), "lightning"
        ) from e

__all__ = ["GreenAICallback"]


class GreenAICallback(Callback):  # type: ignore[misc,unused-ignore]
    """Meters a Lightning ``fit``: one run, a window per epoch, a step per training batch.

    The tracker starts at ``on_fit_start`` and stops at ``on_fit_end`` (or
    ``on_exception``, so a crash never leaves a power limit changed); each
    training epoch is a window ``"epoch N"`` and each training batch a
    ``run.step()``, which is what an :class:`~greenai.EnergyTarget` steers by.
    At each epoch's end, rank 0 logs the epoch's ``energy_j`` (and ``co2_kg``
    once accounted) through ``pl_module.log``, so they reach the trainer's logger.

    In a multi-GPU run each process meters only its own GPU (the strategy's
    root device) unless ``gpus`` is given, so energies are not counted twice.

    Args:
        name: The run's name; None for the LightningModule's class name.
        target: Steer the GPUs' power limits toward this goal; the decisions are in
            ``callback.result.metadata["control"]``.
        log: Log each epoch's energy through ``pl_module.log`` (rank 0 only).
        track_kwargs: Any other argument of :class:`greenai.Tracker` (``country``,
            ``output_dir``, ``gpus``, ...).
    """

    def __init__(
        self,
        name: str | None = None,
        *,
        target: EnergyTarget | None = None,
        log: bool = True,
        **track_kwargs: Any,
    ) -> None:
        super().__init__()
        self.log_energy = log
        self.run = LoopRun(name, target, track_kwargs)

    @property
    def result(self) -> Result:
        """The last fit's result (energy, CO2e, cost, epoch windows, steps)."""
        return self.run.result

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Start metering: the whole fit, sanity checks and validation included."""
        defaults: dict[str, Any] = {}
        device = getattr(trainer.strategy, "root_device", None)
        index = getattr(device, "index", None)
        if getattr(device, "type", None) == "cuda" and isinstance(index, int):
            defaults["gpus"] = [index]
        self.run.begin(type(pl_module).__name__, **defaults)

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Open the window ``"epoch N"`` (N is Lightning's 0-based ``current_epoch``)."""
        self.run.begin_epoch(trainer.current_epoch)

    def on_train_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int
    ) -> None:
        """Enter the batch's ``run.step()``, with its samples (for the per-sample figures)."""
        self.run.begin_step(batch)

    def on_train_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        """Exit the batch's ``run.step()``: the governor may change the limit here."""
        self.run.end_step()

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Close the epoch window and log its energy (rank 0 only)."""
        result = self.run.end_epoch()
        if result is None or not self.log_energy or not trainer.is_global_zero:
            return
        pl_module.log("energy_j", result.energy_j, on_epoch=True, rank_zero_only=True)
        if result.co2_kg is not None:
            pl_module.log("co2_kg", result.co2_kg, on_epoch=True, rank_zero_only=True)

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Stop metering; the result is :attr:`result`."""
        self.run.end()

    def on_exception(
        self, trainer: Trainer, pl_module: LightningModule, exception: BaseException
    ) -> None:
        """Stop metering when the fit fails; the governor ignores the failing batch's step."""
        self.run.end(exception)
