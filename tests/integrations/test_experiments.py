"""A run's figures in TensorBoard, MLflow and W&B, written by the real libraries offline and
read back (simulated GPU, virtual clock)."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

import pytest

import greenai
from greenai.integrations.experiments import MLflowLogger, TensorBoardLogger, WandbLogger
from greenai.sim import SimulatedGPU, simulated_nvml
from greenai.tracking.result import Result

STEPS, EVERY = 40, 10


def run_with(logger: Any, name: str = "train") -> Result:
    with simulated_nvml([SimulatedGPU()], virtual_clock=True) as sim:
        with greenai.track(
            name, cpu=False, dram=False, history=False, country="FRA", log_to=[logger]
        ) as run:
            for _ in range(STEPS):
                with run.step():
                    sim.compute(0.05)
        return run.result


@pytest.mark.skipif(importlib.util.find_spec("tensorboard") is None, reason="tensorboard absent")
def test_tensorboard_event_files_hold_the_figures_and_totals(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    result = run_with(TensorBoardLogger(tmp_path / "tb", every_steps=EVERY))
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    energy = events.Scalars("greenai/energy_j")
    assert [e.step for e in energy] == [10, 20, 30, 40]
    assert [e.value for e in energy] == sorted(e.value for e in energy)  # energy only grows
    assert all(e.value > 0 for e in events.Scalars("greenai/gpu0/power_w"))
    assert all(e.value > 0 for e in events.Scalars("greenai/co2_kg"))
    (total,) = events.Scalars("greenai/total_energy_j")
    assert total.value == pytest.approx(result.energy_j, rel=1e-6)
    assert total.step == STEPS


@pytest.mark.skipif(importlib.util.find_spec("mlflow") is None, reason="mlflow absent")
def test_mlflow_file_store_holds_the_figures_and_totals(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    mlflow.set_tracking_uri(f"file:{tmp_path / 'mlruns'}")
    mlflow.set_experiment("greenai-test")
    result = run_with(MLflowLogger(every_steps=EVERY), name="mlflow-run")
    assert mlflow.active_run() is None  # the run it started is ended
    client = mlflow.tracking.MlflowClient()
    (run,) = client.search_runs([client.get_experiment_by_name("greenai-test").experiment_id])
    assert run.info.run_name == "mlflow-run"
    assert run.info.status == "FINISHED"
    history = client.get_metric_history(run.info.run_id, "greenai/energy_j")
    assert [m.step for m in history] == [10, 20, 30, 40]
    assert run.data.metrics["greenai/total_energy_j"] == pytest.approx(result.energy_j, rel=1e-6)
    assert run.data.metrics["greenai/total_co2_kg"] == pytest.approx(result.co2_kg, rel=1e-6)


@pytest.mark.skipif(importlib.util.find_spec("mlflow") is None, reason="mlflow absent")
def test_mlflow_logs_into_the_users_active_run_and_leaves_it_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    mlflow.set_tracking_uri(f"file:{tmp_path / 'mlruns'}")
    mlflow.set_experiment("greenai-test")
    with mlflow.start_run(run_name="theirs") as theirs:
        run_with(MLflowLogger(every_steps=EVERY))
        assert mlflow.active_run() is not None  # still theirs to end
    metrics = mlflow.tracking.MlflowClient().get_run(theirs.info.run_id).data.metrics
    assert metrics["greenai/total_energy_j"] > 0


@pytest.mark.skipif(importlib.util.find_spec("wandb") is None, reason="wandb absent")
def test_wandb_offline_run_holds_the_figures_and_totals(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import wandb

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    run = wandb.init(project="greenai-test", name="theirs")
    try:
        result = run_with(WandbLogger(every_steps=EVERY))
        summary = dict(run.summary)
        assert summary["greenai/total_energy_j"] == pytest.approx(result.energy_j, rel=1e-6)
        assert summary["greenai/step"] == STEPS  # greenai's own step axis
        assert summary["greenai/energy_j"] > 0  # the last figures logged while running
        assert wandb.run is run  # the user's run is left to the user
    finally:
        run.finish()
    (offline,) = [d for d in os.listdir(tmp_path / "wandb") if d.startswith("offline-run-")]
    assert list((tmp_path / "wandb" / offline).glob("*.wandb"))  # the records are on disk


def test_a_logger_is_what_log_to_takes() -> None:
    with pytest.raises(TypeError, match="log_to must be a list of experiment loggers"):
        greenai.Tracker("x", log_to="mlflow")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="every_steps must be a positive integer, got 0"):
        TensorBoardLogger(writer=object(), every_steps=0)
    with pytest.raises(ValueError, match="exactly one of log_dir or writer"):
        TensorBoardLogger()


def test_a_failing_tracker_is_one_warning_never_an_exception() -> None:
    class Broken:
        def add_scalar(self, *args: object) -> None:
            raise OSError("disk full")

        def flush(self) -> None:
            raise OSError("disk full")

    with pytest.warns(greenai.core.errors.OutputWarning, match="could not log to TensorBoard"):
        result = run_with(TensorBoardLogger(writer=Broken(), every_steps=EVERY))
    assert result.energy_j > 0
