"""Combining ranks into a job result, rank-local GPUs and device identities (one process).

The real multi-process jobs are in test_job_processes.py.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from greenai.sim import SimulatedGPU, simulated_nvml
from greenai.tracking.job import _decimate, local_gpus
from greenai.tracking.job_result import (
    DeviceIdentity,
    RankReport,
    combine,
    identity,
    union_energy_j,
)
from greenai.tracking.launcher import RankInfo
from greenai.tracking.meter import Meter
from greenai.tracking.result import PowerTimeline, Result, StepStats


@pytest.mark.parametrize(
    ("spans", "expected_j"),
    [
        ([], 0.0),
        ([(0.0, 10.0, 100.0)], 100.0),
        ([(0.0, 10.0, 100.0), (0.0, 10.0, 100.0)], 100.0),  # the same window twice
        ([(2.0, 8.0, 60.0), (0.0, 10.0, 100.0)], 100.0),  # nested: the outer one
        ([(0.0, 6.0, 60.0), (4.0, 10.0, 90.0)], 60.0 + 90.0 * 4.0 / 6.0),  # overlap
        ([(0.0, 1.0, 10.0), (2.0, 3.0, 20.0)], 30.0),  # disjoint: both
        ([(0.0, 4.0, 40.0), (3.0, 5.0, 20.0), (4.5, 9.0, 45.0)], 40.0 + 45.0 + 20.0 * 0.5 / 2.0),
    ],
)
def test_union_energy_charges_the_union_of_windows_once(
    spans: list[tuple[float, float, float]], expected_j: float
) -> None:
    assert union_energy_j(spans) == pytest.approx(expected_j)


def _result(
    energy: dict[str, float],
    *,
    start: float = 1000.0,
    duration: float = 10.0,
    kinds: dict[str, str] | None = None,
    windows: tuple[Result, ...] = (),
    steps: StepStats | None = None,
    reasons: tuple[str, ...] = (),
    run_id: str = "r",
) -> Result:
    kinds = kinds or {d: "gpu" for d in energy}
    return Result(
        name="train",
        start_unix_s=start,
        duration_s=duration,
        energy_by_device_j=energy,
        sources=dict.fromkeys(energy, "sim"),
        kinds=kinds,  # type: ignore[arg-type]
        partial=bool(reasons),
        partial_reasons=reasons,
        windows=windows,
        steps=steps,
        run_id=run_id,
        timeline=PowerTimeline(
            [0.0, duration / 2, duration], {d: [e / duration] * 3 for d, e in energy.items()}
        ),
        metadata={"hostname": "x", "devices": {d: f"Dev({d})" for d in energy}},
    )


def _steps(durations: list[float], energies: list[float]) -> StepStats:
    return StepStats(
        count=len(durations),
        time_s=sum(durations),
        energy_j=sum(energies),
        durations_s=np.array(durations),
        energies_j=np.array(energies),
    )


def _with_co2(result: Result) -> Result:
    return replace(result, co2_kg=result.energy_j * 1e-6)


GPU_A0 = DeviceIdentity("gpu0", "GPU-a0", "H100")
GPU_B3 = DeviceIdentity("gpu3", "GPU-b3", "H200")
CPU_A = DeviceIdentity("cpu0", "rapl:cpu0")
OWN = DeviceIdentity("cpu0", None)


def _job() -> Result:
    # ranks 0 and 1 on node-a share GPU a0 and the RAPL package; rank 2 is on node-b
    epoch = (_result({"gpu0": 50.0}, start=1001.0, duration=4.0),)
    r0 = _result(
        {"gpu0": 100.0, "cpu0": 30.0},
        kinds={"gpu0": "gpu", "cpu0": "cpu"},
        windows=epoch,
        steps=_steps([1.0, 2.0], [40.0, 60.0]),
        run_id="rank0-run",
    )
    r1 = _result(
        {"gpu0": 100.0, "cpu0": 30.0},
        kinds={"gpu0": "gpu", "cpu0": "cpu"},
        windows=epoch,
        steps=_steps([1.5, 1.0], [40.0, 60.0]),
    )
    r2 = _result(
        {"gpu0": 200.0, "cpu0": 5.0},
        start=1002.0,
        kinds={"gpu0": "gpu", "cpu0": "cpu"},
        steps=_steps([1.0, 1.0], [80.0, 120.0]),
        reasons=("gpu0 failed at 3.000 s into the run: lost",),
    )
    reports = [
        RankReport(2, "node-b", 0, r2, {"gpu0": GPU_B3, "cpu0": OWN}),
        RankReport(0, "node-a", 0, r0, {"gpu0": GPU_A0, "cpu0": CPU_A}),
        RankReport(1, "node-a", 1, r1, {"gpu0": GPU_A0, "cpu0": CPU_A}),
    ]
    return combine(
        reports,
        world_size=4,
        missing={3: "rank 3 did not report within 5 s"},
        account=_with_co2,
        launcher={"launcher": "torchrun"},
    )


def test_combine_counts_shared_hardware_once_and_names_devices_by_node() -> None:
    job = _job()
    assert dict(job.energy_by_device_j) == {
        "node-a/gpu0": 100.0,
        "node-a/cpu0": 30.0,
        "node-b/gpu3": 200.0,
        "node-b/rank2/cpu0": 5.0,
    }
    assert job.energy_by_node_j == {"node-a": 130.0, "node-b": 205.0}
    assert job.device_nodes["node-b/rank2/cpu0"] == "node-b"
    assert job.kinds["node-b/rank2/cpu0"] == "cpu"
    assert job.co2_kg == pytest.approx(335.0e-6)
    assert job.start_unix_s == 1000.0
    assert job.duration_s == 12.0  # rank 2 ran 1002..1012
    assert [r.metadata for r in job.ranks] == [r.metadata for r in job.ranks]
    assert [r.energy_j for r in job.ranks] == [130.0, 130.0, 205.0]
    meta = job.metadata["job"]
    assert meta["world_size"] == 4
    assert meta["ranks_reported"] == [0, 1, 2]
    assert meta["ranks_missing"] == [3]
    assert meta["nodes"] == {"node-a": [0, 1], "node-b": [2]}
    assert meta["shared_devices"] == {"node-a/gpu0": [0, 1], "node-a/cpu0": [0, 1]}
    assert job.metadata["gpu_count"] == 2
    assert job.metadata["gpu_models"] == ["H100", "H200"]
    assert job.metadata["launcher"] == {"launcher": "torchrun"}
    assert job.metadata["devices"]["node-b/gpu3"] == "Dev(gpu0)"


def test_combine_is_partial_with_every_rank_reason_and_the_missing_ranks() -> None:
    job = _job()
    assert job.partial
    assert job.partial_reasons == (
        "rank 3 did not report within 5 s",
        "rank 2: gpu0 failed at 3.000 s into the run: lost",
    )


def test_combine_merges_windows_by_name_and_steps_step_by_step() -> None:
    job = _job()
    (epoch,) = job.windows
    assert epoch.energy_by_device_j == {"node-a/gpu0": 50.0}
    assert epoch.offset_s == 1.0
    assert epoch.co2_kg == pytest.approx(50e-6)
    assert job.steps is not None
    assert job.steps.count == 2
    np.testing.assert_allclose(job.steps.durations_s, [1.5, 2.0])  # the slowest rank
    # summed over ranks, scaled so the shared GPU and package count once: 335 of 465 J
    np.testing.assert_allclose(job.steps.energies_j, np.array([160.0, 240.0]) * 335.0 / 465.0)
    assert job.run_id not in {"r", "rank0-run"}
    assert job.run_id == _job().run_id, "every gathering rank names the job alike"


def test_combine_leaves_steps_out_when_ranks_counted_differently() -> None:
    a = RankReport(0, "n", 0, _result({"gpu0": 1.0}, steps=_steps([1.0], [1.0])), {})
    b = RankReport(1, "n", 1, _result({"gpu0": 1.0}, steps=_steps([1.0, 1.0], [1.0, 1.0])), {})
    job = combine([a, b], world_size=2, missing={}, account=lambda r: r, launcher={})
    assert job.steps is None
    assert not job.partial
    # without identities each rank's device is its own
    assert job.energy_by_device_j == {"n/rank0/gpu0": 1.0, "n/rank1/gpu0": 1.0}


def test_combined_timeline_covers_the_job_with_each_device_once() -> None:
    job = _job()
    times = job.timeline.times_s
    assert times[0] == 0.0
    assert times[-1] == pytest.approx(12.0, abs=5.1)
    shared = np.array(job.timeline.power_w["node-a/gpu0"])
    assert np.nanmax(shared) == pytest.approx(10.0)  # 100 J over 10 s, not twice that
    late = np.array(job.timeline.power_w["node-b/gpu3"])
    assert math.isnan(late[0]), "rank 2 started 2 s after the job"


def test_decimate_keeps_the_mean_power() -> None:
    n = 10_001
    t = PowerTimeline(list(np.arange(n) * 0.1), {"gpu0": list(np.linspace(100, 300, n))})
    small = _decimate(t, points=2000)
    assert len(small.times_s) == 2000
    assert np.mean(small.power_w["gpu0"]) == pytest.approx(200.0, rel=1e-3)
    assert _decimate(small, points=2000) is small


@pytest.mark.parametrize(
    ("info", "visible", "expected"),
    [
        (None, 8, None),
        (RankInfo(0, 1, 0, 1, 0, "torchrun"), 8, None),
        (RankInfo(5, 16, 5, 8, 0, "torchrun"), 8, [5]),
        (RankInfo(6, 8, 6, 8, 0, "torchrun"), 4, [2]),  # 8 ranks on 4 GPUs share them
        (RankInfo(3, 4, 3, 4, 0, "slurm"), 1, None),  # the one GPU the launcher left visible
        (RankInfo(3, 4, 3, 4, 0, "slurm"), 0, None),
    ],
)
def test_local_gpus(info: RankInfo | None, visible: int, expected: list[int] | None) -> None:
    assert local_gpus(info, visible) == expected


def test_identity_names_gpus_by_their_place_on_the_node(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2")
    with simulated_nvml([SimulatedGPU() for _ in range(3)], virtual_clock=True) as sim:
        from greenai.devices import probe_gpus

        (gpu,) = probe_gpus()
        ident = identity(gpu)
    assert gpu.name == "gpu0"
    assert ident == DeviceIdentity("gpu2", sim.uuids[2], gpu.model)


def test_a_torchrun_rank_without_a_process_group_meters_its_own_gpu(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in {
        "RANK": "3",
        "WORLD_SIZE": "4",
        "LOCAL_RANK": "1",
        "LOCAL_WORLD_SIZE": "2",
        "GROUP_RANK": "1",
        "TORCHELASTIC_RUN_ID": "abc",
    }.items():
        monkeypatch.setenv(name, value)
    with simulated_nvml([SimulatedGPU(), SimulatedGPU()], virtual_clock=True) as sim:
        with Meter("t", cpu=False, dram=False) as run:
            sim.compute(1.0, gpu=[0, 1])
    assert list(run.result.energy_by_device_j) == ["gpu1"]
    assert run.result.energy_j == pytest.approx(700.0, rel=0.01)
    assert run.result.metadata["distributed"]["rank"] == 3
    assert run.result.metadata["distributed"]["local_rank"] == 1
    assert run.result.metadata["launcher"]["torchrun"]["run_id"] == "abc"
    assert run.result.ranks == ()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"gather": "rank1"}, "gather must be one of rank0, all, none, got 'rank1'"),
        ({"gather_timeout_s": -1.0}, "gather_timeout_s must be a non-negative"),
        ({"gather_timeout_s": math.nan}, "gather_timeout_s must be a non-negative"),
        ({"gather_timeout_s": True}, "gather_timeout_s must be a non-negative"),
    ],
)
def test_bad_gather_arguments(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Meter("t", **kwargs)  # type: ignore[arg-type]


def test_a_stray_rank_variable_does_not_stop_the_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RANK", "senior")
    monkeypatch.setenv("WORLD_SIZE", "many")
    with simulated_nvml([SimulatedGPU(), SimulatedGPU()], virtual_clock=True) as sim:
        with Meter("t", cpu=False, dram=False) as run:
            sim.compute(1.0, gpu=[0, 1])
    assert sorted(run.result.energy_by_device_j) == ["gpu0", "gpu1"]
    assert "distributed" not in run.result.metadata
    assert run.result.metadata["launcher"]["warnings"]


def test_combine_adds_the_ranks_bounds_and_drops_a_device_one_rank_states_none() -> None:
    """Two ranks on one GPU: the job's figure weighs each rank's by at most 1, so their
    bounds add; a rank that states no bound leaves the device without one."""

    def job(bounds: list[dict[str, float]]) -> Result:
        reports = [
            RankReport(
                r,
                "n",
                r,
                replace(_result({"gpu0": 10.0}), uncertainty_by_device_j=bound),
                {"gpu0": GPU_A0},
            )
            for r, bound in enumerate(bounds)
        ]
        return combine(reports, world_size=2, missing={}, account=lambda r: r, launcher={})

    assert job([{"gpu0": 1.5}, {"gpu0": 2.0}]).uncertainty_by_device_j == {"n/gpu0": 3.5}
    assert job([{"gpu0": 1.5}, {}]).uncertainty_by_device_j == {}
