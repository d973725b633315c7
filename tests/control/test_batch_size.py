"""The batch-size controller on simulated GPUs with a virtual clock.

Each step of ``b`` samples loads data for ``OVERHEAD_S`` with the GPU idle, then
computes ``WORK_S * b * (1 + b / KNEE)`` seconds at full power (big batches lose
efficiency); above ``MAX_FIT`` samples it raises CUDA out-of-memory. Energy per
sample falls with the batch size while the idle overhead dominates, then rises;
time per sample has its minimum at a larger size than energy, so the goals
disagree, and brute force over the model says which size each should choose.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import greenai
from greenai.control import AdaptiveBatchSampler, BatchSizeController, EnergyTarget
from greenai.control.batch_choice import SizePoint, choose_batch_size
from greenai.control.batch_store import default_store_dir
from greenai.sim import SimulatedGPU, simulated_nvml

GPU = SimulatedGPU()
OVERHEAD_S = 0.05
WORK_S = 1e-3
KNEE = 256
MAX_FIT = 256
CANDIDATES = [8, 16, 32, 64, 128, 256, 512, 1024]


@pytest.fixture(autouse=True)
def _isolated_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The store goes to a fresh folder, never the developer's."""
    monkeypatch.setenv("GREENAI_STATE_DIR", str(tmp_path / "state"))


class OutOfMemoryError(RuntimeError):
    """Stands in for torch.cuda.OutOfMemoryError, which a CPU build cannot raise for real."""


def truth(b: int) -> tuple[float, float]:
    """``(j_per_sample, s_per_sample)`` of the model at batch size ``b``."""
    compute_s = WORK_S * b * (1 + b / KNEE)
    return (GPU.idle_w * OVERHEAD_S + GPU.max_w * compute_s) / b, (OVERHEAD_S + compute_s) / b


def brute_force(target: EnergyTarget, feasible: list[int]) -> int:
    """The goal's best size, straight from its definition over the model."""
    values = {b: truth(b) for b in feasible}
    if target.eta is not None:
        eta = target.eta
        return min(values, key=lambda b: eta * values[b][0] + (1 - eta) * GPU.max_w * values[b][1])
    if target.max_slowdown is not None:
        fastest = min(t for _, t in values.values())
        ok = [b for b in values if values[b][1] <= target.max_slowdown * fastest]
        return min(ok, key=lambda b: values[b][0])
    assert target.j_per_step is not None
    fits = [b for b in values if values[b][0] <= target.j_per_step]
    return min(fits, key=lambda b: values[b][1])


class Workload:
    """Runs steps on the simulation and remembers every size it was asked to run."""

    def __init__(self, sim: object, oom: type[BaseException] = OutOfMemoryError) -> None:
        self.sim = sim
        self.oom = oom
        self.sizes_tried: list[int] = []
        self.samples_trained: list[int] = []

    def __call__(self, indices: list[int]) -> None:
        b = len(indices)
        self.sizes_tried.append(b)
        if b > MAX_FIT:
            raise self.oom(f"CUDA out of memory. Tried to allocate {b} samples' activations")
        self.sim.advance(OVERHEAD_S)  # type: ignore[attr-defined]
        self.sim.compute(WORK_S * b * (1 + b / KNEE))  # type: ignore[attr-defined]
        self.samples_trained.extend(indices)


def train(
    controller: BatchSizeController,
    run: greenai.Tracker | None,
    work: Workload,
    batches: Iterator[list[int]],
) -> None:
    """The loop of the module docstring, with a plain iterator of index batches."""
    for batch in batches:
        pending = controller.split(len(batch))
        while pending:
            part = pending.pop(0)
            with controller.guard_oom() as attempt:
                if run is not None:
                    with run.step(), controller.step(part):
                        work(batch[part])
                else:
                    with controller.step(part):
                        work(batch[part])
            if attempt.oom:
                pending[:0] = controller.split(part)


def endless(controller: BatchSizeController, steps: int) -> Iterator[list[int]]:
    """``steps`` batches of the controller's current size, counting indices up."""
    start = 0
    for _ in range(steps):
        b = controller.batch_size
        yield list(range(start, start + b))
        start += b


def run_job(
    target: EnergyTarget | None,
    *,
    steps: int = 200,
    job: str = "resnet",
    candidates: list[int] = CANDIDATES,
    oom: type[BaseException] = OutOfMemoryError,
) -> tuple[BatchSizeController, Workload]:
    with simulated_nvml([GPU], virtual_clock=True) as sim:
        with greenai.track(job, cpu=False, dram=False, history=False, country="FRA") as run:
            controller = BatchSizeController(
                candidates,
                target=target,
                job=job,
                tracker=run,
                warmup_steps=1,
                measure_steps=3,
                measure_s=2.0,
            )
            work = Workload(sim, oom)
            train(controller, run, work, endless(controller, steps))
    return controller, work


TARGETS = {
    "least-energy": EnergyTarget(eta=1.0),
    "zeus-cost": EnergyTarget(eta=0.5),
    "fastest": EnergyTarget(eta=0.0),
    "slowdown": EnergyTarget(max_slowdown=1.2),
    "budget": EnergyTarget(j_per_step=0.5 * (truth(32)[0] + truth(128)[0])),
}


def test_the_model_makes_the_goals_disagree() -> None:
    feasible = [b for b in CANDIDATES if b <= MAX_FIT]
    chosen = {name: brute_force(t, feasible) for name, t in TARGETS.items()}
    assert len(set(chosen.values())) >= 3, chosen
    assert chosen["least-energy"] < chosen["fastest"]


@pytest.mark.parametrize("name", list(TARGETS))
def test_explores_backs_off_from_oom_and_chooses_the_brute_force_best(name: str) -> None:
    target = TARGETS[name]
    controller, work = run_job(target)
    feasible = [b for b in CANDIDATES if b <= MAX_FIT]
    best = brute_force(target, feasible)
    tried = sorted(set(work.sizes_tried))
    print(f"{name}: chose {controller.chosen}, brute force {best}; tried {tried}")
    assert controller.chosen == best
    assert controller.batch_size == best
    assert controller.infeasible_from == 512
    assert work.sizes_tried.count(512) == 1  # one OOM, then never again
    assert 1024 not in work.sizes_tried
    for b in feasible:  # 100 ms counters, idle/busy alternating within them: ~1 %
        j, s = truth(b)
        assert controller.points[b].j_per_sample == pytest.approx(j, rel=2e-2)
        assert controller.points[b].s_per_sample == pytest.approx(s, rel=1e-6)
    # Every sample of the failed 512-batch was trained on, in pieces of the new size.
    assert sorted(work.samples_trained) == list(range(len(work.samples_trained)))
    assert controller.report["explored"] == [8, 16, 32, 64, 128, 256, 512]
    assert controller.report["oom"][0]["batch_size"] == 512


def test_torch_out_of_memory_error_is_caught() -> None:
    controller, work = run_job(EnergyTarget(eta=1.0), oom=torch.cuda.OutOfMemoryError)
    assert controller.infeasible_from == 512
    assert work.sizes_tried.count(512) == 1


def test_budget_for_the_whole_run_is_spread_over_the_remaining_samples() -> None:
    total = 400_000
    # halfway between two sizes' energy per sample: far from both, against measurement noise
    per_sample = 0.5 * (truth(64)[0] + truth(128)[0])
    target = EnergyTarget(budget_j=per_sample * total, total_steps=total)
    controller, _ = run_job(target, steps=250)
    report = controller.report
    spent = report["exploration"]["energy_j"]
    samples = report["exploration"]["samples"]
    assert report["j_per_sample_budget"] == pytest.approx(
        (per_sample * total - spent) / (total - samples)
    )
    fits = [b for b in (8, 16, 32, 64, 128, 256) if truth(b)[0] <= report["j_per_sample_budget"]]
    assert controller.chosen == min(fits, key=lambda b: truth(b)[1])
    assert report["feasible"] is True


def test_a_second_run_reuses_the_store() -> None:
    first, _ = run_job(EnergyTarget(eta=0.5))
    path = Path(first.report["store"])
    assert path.parent == default_store_dir()
    saved = json.loads(path.read_text())
    assert saved["infeasible_from"] == 512
    assert saved["choice"] == first.chosen
    assert saved["key"] == {"job": "resnet", "gpu_models": [GPU.name]}

    second, work = run_job(EnergyTarget(eta=0.5), steps=10)
    assert second.report["explored"] == []
    assert second.chosen == first.chosen
    assert set(work.sizes_tried) == {first.chosen}  # no exploration, no OOM retried
    assert second.report.get("oom") is None

    # A new target reuses the measurements and chooses again; a new size is explored alone.
    third, work = run_job(EnergyTarget(eta=1.0), candidates=[*CANDIDATES, 48], steps=30)
    assert third.report["explored"] == [48]
    assert 512 not in work.sizes_tried
    feasible = [b for b in [*CANDIDATES, 48] if b <= MAX_FIT]
    best = brute_force(EnergyTarget(eta=1.0), feasible)
    # 32 and 48 differ by 0.8 % in energy per sample: within what a 100 ms counter measures
    # of 0.1 s steps that alternate idle and busy (about 1 %), so either is a right choice
    assert third.chosen is not None
    assert truth(third.chosen)[0] <= 1.02 * truth(best)[0]

    other, work = run_job(EnergyTarget(eta=0.5), job="other", steps=30)
    assert other.report["explored"][0] == 8  # another job learns for itself


def test_an_unreadable_store_is_explored_again() -> None:
    first, _ = run_job(EnergyTarget(eta=0.5))
    Path(first.report["store"]).write_text("{not json")
    second, _ = run_job(EnergyTarget(eta=0.5))
    assert second.report["explored"][0] == 8
    assert second.chosen == first.chosen


def test_sampler_yields_each_index_once_through_a_dataloader_across_size_changes() -> None:
    n = 1000
    dataset = TensorDataset(torch.arange(n))
    controller = BatchSizeController(
        [8, 16, 32, 64, 512],
        job="sampler",
        warmup_steps=0,
        measure_steps=2,
        measure_s=0,
        reuse=False,
    )
    generator = torch.Generator().manual_seed(0)
    sampler = AdaptiveBatchSampler(n, controller, shuffle=True, generator=generator)
    loader = DataLoader(dataset, batch_sampler=sampler)
    with simulated_nvml([GPU], virtual_clock=True) as sim:
        assert len(sampler) == math.ceil(n / 8)  # an estimate at the current size
        work = Workload(sim)
        for epoch in range(2):
            seen: list[int] = []
            sizes: list[int] = []
            for (x,) in loader:
                sizes.append(len(x))
                pending = controller.split(len(x))
                while pending:
                    part = pending.pop(0)
                    with controller.guard_oom() as attempt, controller.step(part):
                        work(x[part].tolist())
                    if attempt.oom:
                        pending[:0] = controller.split(part)
                seen.extend(x.tolist())
            assert sorted(seen) == list(range(n)), f"epoch {epoch}"
            if epoch == 0:
                assert {8, 16, 32, 64, 512} <= set(sizes)  # changed mid-epoch, OOM included
                assert seen != list(range(n))  # shuffled
    assert sorted(work.samples_trained) == sorted(list(range(n)) * 2)
    assert controller.infeasible_from == 512
    assert controller.chosen in (8, 16, 32, 64)
    assert len(sampler) == math.ceil(n / controller.batch_size)


def test_sampler_over_a_sampler_keeps_its_order_and_drop_last() -> None:
    controller = BatchSizeController(
        [3, 4], job="s", reuse=False, warmup_steps=0, measure_steps=1, measure_s=0
    )
    order = [9, 8, 7, 6, 5, 4, 3, 2, 1, 0]
    batches = []
    for batch in AdaptiveBatchSampler(order, controller, drop_last=True):
        batches.append(batch)
        controller.step_ended(len(batch))
    assert batches[:2] == [[9, 8, 7], [6, 5, 4, 3]]  # explored 3, then 4
    assert [i for b in batches for i in b] == order[: sum(map(len, batches))]
    assert all(len(b) == controller.chosen for b in batches[2:])  # a short last one dropped
    assert len(AdaptiveBatchSampler(order, controller, drop_last=True)) == len(order) // (
        controller.batch_size
    )
    with pytest.raises(TypeError, match="without a length"):
        len(AdaptiveBatchSampler(iter(order), controller))
    with pytest.raises(ValueError, match="shuffle"):
        AdaptiveBatchSampler(order, controller, shuffle=True)


def test_oom_at_the_smallest_size_is_not_suppressed() -> None:
    controller = BatchSizeController([4, 8], job="tiny", reuse=False)
    assert controller.report_oom(8) == 4
    with pytest.raises(OutOfMemoryError), controller.guard_oom():
        raise OutOfMemoryError("CUDA out of memory")
    with pytest.raises(RuntimeError, match="no smaller candidate"):
        controller.report_oom(4)


def test_other_errors_pass_through_guard_oom() -> None:
    controller = BatchSizeController([4, 8], job="tiny", reuse=False)
    with pytest.raises(ValueError, match="bad"), controller.guard_oom():
        raise ValueError("bad")
    with pytest.raises(RuntimeError, match="shape"), controller.guard_oom():
        raise RuntimeError("shape mismatch")
    assert controller.infeasible_from is None


def test_oom_after_the_choice_chooses_again_below() -> None:
    controller, _ = run_job(EnergyTarget(eta=0.0))
    chosen = controller.chosen
    assert chosen is not None
    assert controller.report_oom(chosen) < chosen
    assert controller.chosen == brute_force(
        EnergyTarget(eta=0.0), [8, 16, 32, 64, 128, 256][: [8, 16, 32, 64, 128, 256].index(chosen)]
    )


@pytest.mark.parametrize(
    ("candidates", "error", "match"),
    [
        ([], ValueError, "at least one"),
        ([8, 0], ValueError, "positive integer"),
        ([8, -16], ValueError, "positive integer"),
        ([8, 16.0], ValueError, "positive integer"),
        ([8, True], ValueError, "positive integer"),
        ([8, 16, 8], ValueError, r"distinct; repeated: \[8\]"),
        ("816", TypeError, "integers"),
    ],
)
def test_bad_candidates_are_clear_errors(
    candidates: list[int], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        BatchSizeController(candidates, job="x")


def test_bad_arguments_are_clear_errors() -> None:
    with pytest.raises(TypeError, match="job"):
        BatchSizeController([8], job="")
    with pytest.raises(TypeError, match="EnergyTarget"):
        BatchSizeController([8], job="x", target=0.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="measure_steps"):
        BatchSizeController([8], job="x", measure_steps=0)
    with pytest.raises(ValueError, match="warmup_steps"):
        BatchSizeController([8], job="x", warmup_steps=-1)
    controller = BatchSizeController([8], job="x", reuse=False)
    with pytest.raises(ValueError, match="n_samples"):
        controller.step_ended(0)
    with pytest.raises(ValueError, match="batch_size"):
        controller.report_oom(-1)
    with pytest.raises(ValueError, match="dataset length"):
        AdaptiveBatchSampler(-1, controller)
    with pytest.raises(ValueError, match="no measured"):
        choose_batch_size([], None)


def test_a_tracker_not_started_is_a_clear_error() -> None:
    tracker = greenai.Tracker("late", cpu=False, dram=False, gpus=[])
    controller = BatchSizeController([8], job="late", tracker=tracker)
    with pytest.raises(RuntimeError, match="start its tracker"):
        controller.batch_size  # noqa: B018


def test_choice_without_energy_is_the_fastest() -> None:
    points = [SizePoint(8, math.nan, 2.0), SizePoint(16, math.nan, 1.0)]
    assert choose_batch_size(points, EnergyTarget(eta=1.0)).batch_size == 16


def test_module_imports_without_torch() -> None:
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "from greenai.control import AdaptiveBatchSampler, BatchSizeController\n"
        "c = BatchSizeController([2, 3], job='j', reuse=False)\n"
        "assert list(AdaptiveBatchSampler(5, c)) == [[0, 1], [2, 3], [4]]\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
