"""The Transformers callback on a real (tiny, CPU, no download) ``Trainer.train()``.

The model is a plain ``torch.nn.Module`` returning ``{"loss": ...}``, which the
Trainer accepts; a simulated GPU on a virtual clock stands in for the
accelerator, each step running ``sim.compute(...)`` on it.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

import greenai
from greenai.sim import SimulatedGPU, simulated_nvml

STEPS_PER_EPOCH = 5
EPOCHS = 2
BATCH = 4
WORK_S = 0.5  # s of virtual time: several counter updates per step


@pytest.fixture(autouse=True)
def _isolated_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Profiles and the power-limit journal go to a fresh folder."""
    monkeypatch.setenv("GREENAI_STATE_DIR", str(tmp_path / "state"))


def _train(callback: Any, sim: Any, tmp_path: Path, *, attach: bool) -> Any:
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("accelerate")  # the Trainer needs it with PyTorch
    torch = pytest.importorskip("torch")

    class Tiny(torch.nn.Module):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.layer = torch.nn.Linear(4, 1)

        def forward(self, x: Any, y: Any) -> dict[str, Any]:
            sim.compute(WORK_S)
            return {"loss": torch.nn.functional.mse_loss(self.layer(x), y)}

    class Data(torch.utils.data.Dataset):  # type: ignore[misc]
        def __len__(self) -> int:
            return BATCH * STEPS_PER_EPOCH

        def __getitem__(self, i: int) -> dict[str, Any]:
            return {"x": torch.randn(4), "y": torch.randn(1)}

    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / "out"),
        num_train_epochs=EPOCHS,
        per_device_train_batch_size=BATCH,
        report_to=[],
        use_cpu=True,
        save_strategy="no",
        logging_steps=3,
        disable_tqdm=True,
        dataloader_num_workers=0,
    )
    trainer = transformers.Trainer(
        model=Tiny(), args=args, train_dataset=Data(), callbacks=None if attach else [callback]
    )
    if attach:
        callback.attach(trainer)
    trainer.train()
    return trainer


@pytest.mark.parametrize("attach", [True, False], ids=["attach", "callbacks"])
def test_train_is_metered_per_epoch_and_step_and_logs_energy(tmp_path: Path, attach: bool) -> None:
    pytest.importorskip("transformers")
    from transformers import TrainerCallback

    from greenai.integrations.huggingface import GreenAICallback

    seen: list[dict[str, Any]] = []

    class Reporter(TrainerCallback):  # type: ignore[misc]
        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any) -> None:
            seen.append(dict(logs))

    target = greenai.EnergyTarget(eta=0.5, warmup_steps=0, profile_steps=2, candidates=2)
    callback = GreenAICallback(
        "tiny", target=target, cpu=False, dram=False, history=False, country="FRA"
    )
    with simulated_nvml([SimulatedGPU()], virtual_clock=True) as sim:
        trainer = _train(callback, sim, tmp_path, attach=attach)
        trainer.add_callback(Reporter())  # after training: sees nothing, checked below
        true_j = sim.true_energy_j(0)
    result = callback.result
    assert result.name == "tiny"
    epochs = [w for w in result.windows if w.name and w.name.startswith("epoch")]
    assert [w.name for w in epochs] == ["epoch 0", "epoch 1"]
    assert result.steps is not None
    assert result.steps.count == EPOCHS * STEPS_PER_EPOCH
    for epoch in epochs:
        assert epoch.steps is not None
        assert epoch.steps.count == STEPS_PER_EPOCH
    assert result.energy_j == pytest.approx(true_j, rel=1e-3)
    control = result.metadata["control"]
    assert control["profiling"]["steps"] >= 4  # two candidate limits, two steps each
    assert control["steps"] == EPOCHS * STEPS_PER_EPOCH
    logged = [entry for entry in trainer.state.log_history if "energy_j" in entry]
    assert len(logged) == len(trainer.state.log_history) >= 3
    energies = [entry["energy_j"] for entry in logged]
    assert energies == sorted(energies)
    assert 0 < energies[0] < energies[-1]
    assert energies[-1] == pytest.approx(result.energy_j, rel=1e-3)  # the last log: all steps
    # one country, one intensity: the estimate at the last epoch's intensity is the charge
    assert logged[-1]["co2_kg"] == pytest.approx(result.co2_kg, rel=1e-3)
    assert not seen


def test_reporters_ahead_see_the_energy_only_when_attached(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    from transformers import TrainerCallback

    from greenai.integrations.huggingface import GreenAICallback

    seen: list[dict[str, Any]] = []

    class Reporter(TrainerCallback):  # type: ignore[misc]
        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any) -> None:
            seen.append(dict(logs))

    callback = GreenAICallback(cpu=False, dram=False, history=False, country="FRA")
    with simulated_nvml([SimulatedGPU()], virtual_clock=True) as sim:
        transformers = pytest.importorskip("transformers")
        original = transformers.Trainer.__init__

        def with_reporter(self: Any, *args: Any, **kwargs: Any) -> None:
            original(self, *args, **kwargs)
            self.callback_handler.callbacks.insert(0, Reporter())  # a report_to integration

        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(transformers.Trainer, "__init__", with_reporter)
            _train(callback, sim, tmp_path, attach=True)
    assert callback.result.name == "Tiny"
    assert seen
    assert all("energy_j" in entry for entry in seen)


def test_close_stops_a_run_that_train_left_open(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    from greenai.integrations.huggingface import GreenAICallback

    callback = GreenAICallback("x", cpu=False, dram=False, history=False, country="FRA")
    with simulated_nvml([SimulatedGPU()], virtual_clock=True) as sim:
        callback.run.begin()
        callback.run.begin_epoch(0)
        callback.run.begin_step()
        sim.compute(WORK_S)
        result = callback.close(RuntimeError("train() raised"))
    assert result is callback.result
    assert [w.name for w in result.windows] == ["epoch 0"]
    assert not callback.run.running
    assert callback.close() is result  # closing twice is harmless


def test_missing_transformers_is_a_clear_import_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "transformers", None)
    monkeypatch.delitem(sys.modules, "greenai.integrations.huggingface", raising=False)
    with pytest.raises(ImportError, match=r"pip install transformers"):
        import greenai.integrations.huggingface  # noqa: F401
    monkeypatch.delitem(sys.modules, "greenai.integrations.huggingface", raising=False)
