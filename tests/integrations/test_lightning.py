"""The Lightning callback on a real (tiny, CPU) ``Trainer.fit``, and its import guards.

A simulated GPU on a virtual clock stands in for the accelerator: each training
step also runs ``sim.compute(...)``, so the governor sees steps that cost GPU
energy and the metered energy can be checked against the simulation's truth.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

import greenai
from greenai.sim import SimulatedGPU, simulated_nvml

# Lightning's own warnings on a CPU-only, loggerless tiny fit (not greenai's):
# too few DataLoader workers, and logging with no logger configured.
LIGHTNING_NOISE = [
    "ignore:The '.*dataloader' does not have many workers:UserWarning",
    "ignore:.*does not have many workers.*:UserWarning",
    "ignore:You called `self.log.*but have no logger configured:UserWarning",
    "ignore:.*GPU available but not used.*:UserWarning",
    "ignore:.*LeafSpec.*is deprecated:FutureWarning",
]

STEPS_PER_EPOCH = 5
EPOCHS = 2
WORK_S = 0.5  # s of virtual time: several counter updates per step


@pytest.fixture(autouse=True)
def _isolated_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Profiles and the power-limit journal go to a fresh folder."""
    monkeypatch.setenv("GREENAI_STATE_DIR", str(tmp_path / "state"))


def _fit(callback: Any, sim: Any = None, *, fail_at: int | None = None) -> Any:
    pl = pytest.importorskip("lightning.pytorch")
    torch = pytest.importorskip("torch")

    class Tiny(pl.LightningModule):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.layer = torch.nn.Linear(4, 1)
            self.calls = 0

        def training_step(self, batch: Any, batch_idx: int) -> Any:
            self.calls += 1
            if fail_at is not None and self.calls == fail_at:
                raise KeyError("boom")
            if sim is not None:
                sim.compute(WORK_S)
            x, y = batch
            return torch.nn.functional.mse_loss(self.layer(x), y)

        def configure_optimizers(self) -> Any:
            return torch.optim.SGD(self.parameters(), lr=0.01)

    data = torch.utils.data.TensorDataset(torch.randn(4 * STEPS_PER_EPOCH, 4), torch.randn(20, 1))
    loader = torch.utils.data.DataLoader(data, batch_size=4)
    trainer = pl.Trainer(
        max_epochs=EPOCHS,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        callbacks=[callback],
    )
    module = Tiny()
    trainer.fit(module, loader)
    return trainer


@pytest.mark.filterwarnings(*LIGHTNING_NOISE)
def test_fit_is_metered_per_epoch_and_step_and_target_reaches_the_governor() -> None:
    pytest.importorskip("lightning.pytorch")
    from greenai.integrations.lightning import GreenAICallback

    target = greenai.EnergyTarget(eta=0.5, warmup_steps=0, profile_steps=2, candidates=2)
    callback = GreenAICallback(
        "tiny", target=target, cpu=False, dram=False, history=False, country="FRA"
    )
    with simulated_nvml([SimulatedGPU()], virtual_clock=True) as sim:
        start_s = sim.now()
        trainer = _fit(callback, sim)
        true_j = sim.true_energy_j(0)
        elapsed_s = sim.now() - start_s
    result = callback.result
    assert result.name == "tiny"
    epochs = [w for w in result.windows if w.name and w.name.startswith("epoch")]
    assert [w.name for w in epochs] == ["epoch 0", "epoch 1"]
    assert result.steps is not None
    assert result.steps.count == EPOCHS * STEPS_PER_EPOCH
    assert result.steps.samples == EPOCHS * STEPS_PER_EPOCH * 4  # each batch's first dim
    per_sample = result.per_work("sample")
    assert per_sample is not None
    assert per_sample.energy_j == pytest.approx(result.energy_j / result.steps.samples)
    for epoch in epochs:
        assert epoch.steps is not None
        assert epoch.steps.count == STEPS_PER_EPOCH
    assert result.energy_j == pytest.approx(true_j, rel=1e-3)
    assert result.duration_s == pytest.approx(elapsed_s, rel=1e-3)
    control = result.metadata["control"]
    assert isinstance(control, dict)
    assert control["profiling"]["steps"] >= 2  # two candidate limits profiled
    assert trainer.callback_metrics["energy_j"].item() == pytest.approx(epochs[-1].energy_j)
    assert trainer.callback_metrics["co2_kg"].item() == pytest.approx(epochs[-1].co2_kg)


@pytest.mark.filterwarnings(*LIGHTNING_NOISE)
def test_fit_without_a_name_is_named_after_the_module_and_stops_on_an_exception() -> None:
    pytest.importorskip("lightning.pytorch")
    from greenai.integrations.lightning import GreenAICallback

    callback = GreenAICallback(cpu=False, dram=False, history=False, country="FRA")
    with simulated_nvml([SimulatedGPU()], virtual_clock=True) as sim:
        with pytest.raises(KeyError, match="boom"):
            _fit(callback, sim, fail_at=STEPS_PER_EPOCH + 3)
    result = callback.result  # stopped by on_exception
    assert result.name == "Tiny"
    assert result.steps is not None
    # the failing batch is closed as a failed step, as ``with run.step():`` would close it
    assert result.steps.count == STEPS_PER_EPOCH + 3
    assert result.steps.durations_s[-1] == 0.0  # it failed before any GPU work
    assert [w.name for w in result.windows] == ["epoch 0", "epoch 1"]
    assert not callback.run.running


def test_missing_lightning_is_a_clear_import_error(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("lightning", "lightning.pytorch", "pytorch_lightning"):
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.delitem(sys.modules, "greenai.integrations.lightning", raising=False)
    with pytest.raises(ImportError, match=r"pip install lightning"):
        import greenai.integrations.lightning  # noqa: F401
    monkeypatch.delitem(sys.modules, "greenai.integrations.lightning", raising=False)


def test_importing_greenai_integrations_imports_no_framework() -> None:
    code = textwrap.dedent(
        """
        import sys
        import greenai, greenai.integrations
        loaded = [m for m in ("lightning", "pytorch_lightning", "transformers") if m in sys.modules]
        assert not loaded, loaded
        """
    )
    subprocess.run([sys.executable, "-c", code], check=True)
