"""Hugging Face Transformers: meter (and steer) ``Trainer.train()`` with :class:`GreenAICallback`.

>>> from greenai.integrations.huggingface import GreenAICallback
>>> energy = GreenAICallback("finetune", country="FRA")  # doctest: +SKIP
>>> # attach(): first in line, so the reporters see energy_j and co2_kg
>>> trainer = transformers.Trainer(model, args, train_dataset=data)  # doctest: +SKIP
>>> energy.attach(trainer)  # doctest: +SKIP
>>> trainer.train()  # doctest: +SKIP
>>> energy.result.energy_j  # doctest: +SKIP

Importing this module without ``transformers`` raises an ``ImportError`` that
says what to install.
"""

from __future__ import annotations

from typing import Any

from greenai.control.target import EnergyTarget
from greenai.integrations import LoopRun, missing_framework
from greenai.tracking.result import Result

try:
    from transformers import (  # type: ignore[import-not-found,unused-ignore]
        TrainerCallback,
        TrainerControl,
        TrainerState,
        TrainingArguments,
    )
except ImportError as e:
    raise missing_framework("Hugging Face Transformers", ("transformers",), "transformers") from e

__all__ = ["GreenAICallback"]


class GreenAICallback(TrainerCallback):  # type: ignore[misc,unused-ignore]
    """Meters a ``Trainer.train()``: one run, a window per epoch, a step per optimizer step.

    The tracker starts at ``on_train_begin`` and stops at ``on_train_end``; each
    epoch is a window ``"epoch N"`` (0-based) and each step (``on_step_begin`` to
    ``on_step_end``: one optimizer step, all its gradient-accumulation batches)
    a ``run.step()``, which is what an :class:`~greenai.EnergyTarget` steers by.

    Every log the Trainer makes gets ``energy_j`` (all metered devices since the
    start of training) and ``co2_kg`` (estimated at the last finished epoch's
    intensity while training runs, exact in the final log) on the main process.
    The Trainer runs its reporters (``report_to``) before the callbacks given
    to it, so pass this callback through :meth:`attach` for them to see the keys;
    either way they are in ``trainer.state.log_history``.

    The Trainer has no hook for a failed step: if ``train()`` raises, call
    :meth:`close` (or the run stops at the next ``on_train_begin``); changed
    power limits are given back at exit in any case.

    Args:
        name: The run's name; None for the model's class name.
        target: Steer the GPUs' power limits toward this goal; the decisions are in
            ``callback.result.metadata["control"]``.
        track_kwargs: Any other argument of :class:`greenai.Tracker`.
    """

    def __init__(
        self, name: str | None = None, *, target: EnergyTarget | None = None, **track_kwargs: Any
    ) -> None:
        super().__init__()
        self.run = LoopRun(name, target, track_kwargs)
        self._tokens_seen = 0  # the Trainer's num_input_tokens_seen at the last step's end

    @property
    def result(self) -> Result:
        """The last training's result (energy, CO2e, cost, epoch windows, steps)."""
        return self.run.result

    def attach(self, trainer: Any) -> GreenAICallback:
        """Add this callback to ``trainer`` ahead of its reporters, so they log energy too."""
        trainer.callback_handler.callbacks.insert(0, self)
        return self

    def close(self, exc: BaseException | None = None) -> Result | None:
        """Stop metering now (after ``train()`` raised); returns the result, if any."""
        return self.run.end(exc)

    def on_train_begin(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        **kwargs: Any,
    ) -> None:
        """Start metering; a GPU-only run meters this process's device."""
        self._tokens_seen = int(getattr(state, "num_input_tokens_seen", 0) or 0)
        model = kwargs.get("model")
        defaults: dict[str, Any] = {}
        device = getattr(args, "device", None)
        index = getattr(device, "index", None)
        if getattr(device, "type", None) == "cuda" and isinstance(index, int):
            defaults["gpus"] = [index]
        self.run.begin(None if model is None else type(model).__name__, **defaults)

    def on_epoch_begin(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        **kwargs: Any,
    ) -> None:
        """Open the window ``"epoch N"``, counting from 0 (as ``int(state.epoch)``)."""
        self.run.begin_epoch(len(self.run.epoch_results))

    def on_step_begin(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        **kwargs: Any,
    ) -> None:
        """Enter the step's ``run.step()``."""
        self.run.begin_step()

    def on_step_end(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        **kwargs: Any,
    ) -> None:
        """Exit the step's ``run.step()`` with its tokens (the growth of the Trainer's
        ``num_input_tokens_seen``, counted when ``include_num_input_tokens_seen`` is on): the
        governor may change the limit here."""
        seen = int(getattr(state, "num_input_tokens_seen", 0) or 0)
        tokens, self._tokens_seen = max(0, seen - self._tokens_seen), seen
        self.run.end_step(tokens=tokens)

    def on_epoch_end(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        **kwargs: Any,
    ) -> None:
        """Close the epoch window."""
        self.run.end_epoch()

    def on_train_end(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        **kwargs: Any,
    ) -> None:
        """Stop metering; the result is :attr:`result`."""
        self.run.end()

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """Add ``energy_j`` and ``co2_kg`` to the log (main process only)."""
        if logs is None or not state.is_world_process_zero:
            return
        energy_j = self.run.energy_so_far_j()
        if energy_j is None:
            return
        added: dict[str, float] = {"energy_j": energy_j}
        co2_kg = self.run.co2_so_far_kg(energy_j)
        if co2_kg is not None:
            added["co2_kg"] = co2_kg
        logs.update(added)
        if state.log_history and state.log_history[-1] is not logs:
            state.log_history[-1].update(added)  # the Trainer copied the log before the callbacks
