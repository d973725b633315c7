"""Energy, CO2e and cost per sample and per token, from what each step says it processed."""

from __future__ import annotations

import json

import numpy as np
import pytest

import greenai
from greenai.report.markdown import render_markdown
from greenai.sim import SimulatedGPU, simulated_nvml
from greenai.tracking.result import Result
from greenai.tracking.step_log import FOLD_AT


def generate(steps: int, tokens_each: int, *, requests: int = 0) -> Result:
    """A decoding loop on the simulated GPU: each step makes ``tokens_each`` tokens."""
    with simulated_nvml([SimulatedGPU()], virtual_clock=True) as sim:
        with greenai.track(
            "generate", cpu=False, dram=False, history=False, country="FRA", price_per_kwh=0.2
        ) as run:
            for i in range(steps):
                with run.step(tokens=tokens_each, samples=1 if i < requests else None):
                    sim.compute(0.01)
    return run.result


def test_per_token_is_the_windows_whole_cost_over_its_tokens() -> None:
    result = generate(50, 32, requests=5)
    assert result.steps is not None
    assert result.steps.tokens == 50 * 32
    assert result.steps.samples == 5
    per_token = result.per_work("token")
    assert per_token is not None
    assert per_token.count == 1600
    assert per_token.energy_j == pytest.approx(result.energy_j / 1600)
    assert result.co2_kg is not None
    assert per_token.co2_g == pytest.approx(result.co2_kg * 1e3 / 1600)
    assert result.cost_usd is not None
    assert per_token.cost_usd == pytest.approx(result.cost_usd / 1600)
    per_request = result.per_work("sample")
    assert per_request is not None
    assert per_request.energy_j == pytest.approx(result.energy_j / 5)


def test_every_output_says_it() -> None:
    result = generate(20, 16)
    assert result.per_work("sample") is None  # not said: no figure, never a division by 0
    line = str(result.per_work("token"))
    assert line.endswith("per token (320 tokens)")
    assert "CO2e" in line
    assert "$" in line
    assert line in result.summary()
    assert f"Per token: {line}." in render_markdown(result)
    record = json.loads(json.dumps(result.to_dict()))
    assert record["per_token"]["count"] == 320
    assert record["per_sample"] is None
    assert Result.from_dict(record).steps.tokens == 320  # type: ignore[union-attr]


def test_counts_survive_folding_and_reach_each_window() -> None:
    """More steps than are kept raw: the counts are folded into the windows' digests."""
    steps = FOLD_AT + 300
    with simulated_nvml([SimulatedGPU()], virtual_clock=True) as sim:
        with greenai.track("long", cpu=False, dram=False, history=False, country="FRA") as run:
            with run.window("first"):
                for _ in range(steps):
                    with run.step(samples=np.int64(8)):  # numpy counts are whole numbers too
                        sim.compute(0.001)
            with run.window("second"):
                for _ in range(10):
                    with run.step(samples=4):
                        sim.compute(0.001)
    result = run.result
    assert result.steps is not None
    assert result.steps.samples == steps * 8 + 40
    assert result.window("first").steps.samples == steps * 8  # type: ignore[union-attr]
    assert result.window("second").steps.samples == 40  # type: ignore[union-attr]


@pytest.mark.parametrize("bad", [-1, 2.5, True, "8"])
def test_a_count_that_is_not_a_whole_number_is_refused(bad: object) -> None:
    with greenai.track("x", gpus=[], history=False, country="FRA") as run:
        with pytest.raises(ValueError, match=r"samples must be a whole number >= 0, got"):
            run.step(samples=bad)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match=r"tokens must be a whole number >= 0, got"):
            run.step(tokens=bad)  # type: ignore[arg-type]


def test_a_step_counts_the_tokens_it_made_once_it_knows_them() -> None:
    """Decoding: the tokens a request produced are known only after it ran."""
    with simulated_nvml([SimulatedGPU()], virtual_clock=True) as sim:
        with greenai.track("serve", cpu=False, dram=False, history=False, country="FRA") as run:
            for made in (17, 5, 42):
                with run.step(samples=1) as step:
                    sim.compute(0.002 * made)
                    step.count(tokens=made)
            with pytest.raises(ValueError, match="tokens must be a whole number >= 0, got -3"):
                with run.step() as step:
                    step.count(tokens=-3)
    assert run.result.steps is not None
    assert run.result.steps.tokens == 64
    assert run.result.steps.samples == 3


def test_the_hugging_face_callback_counts_the_tokens_the_trainer_saw() -> None:
    pytest.importorskip("transformers")
    from types import SimpleNamespace

    from greenai.integrations.huggingface import GreenAICallback

    callback = GreenAICallback("hf", cpu=False, dram=False, history=False, country="FRA")
    state = SimpleNamespace(num_input_tokens_seen=100, epoch=0.0)
    args = SimpleNamespace(device=None)
    with simulated_nvml([SimulatedGPU()], virtual_clock=True) as sim:
        callback.on_train_begin(args, state, None)
        callback.on_epoch_begin(args, state, None)
        for tokens in (512, 256, 0):
            callback.on_step_begin(args, state, None)
            sim.compute(0.01)
            state.num_input_tokens_seen += tokens
            callback.on_step_end(args, state, None)
        callback.on_epoch_end(args, state, None)
        callback.on_train_end(args, state, None)
    result = callback.result
    assert result.steps is not None
    assert result.steps.tokens == 768  # what was seen before training is not this run's
