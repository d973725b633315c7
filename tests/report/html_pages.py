"""Results and page parsing for the HTML report's tests (test_html*.py): a simulated training
run, a partial run, an eight-hour bucketed run and a bare result to render, and an HTML parser
that reads the page back. The rendered ``trained`` result and its ``page`` are fixtures, in
conftest.py.
"""

from __future__ import annotations

import dataclasses
from html.parser import HTMLParser
from typing import Any

import numpy as np
import pytest

import greenai
from greenai.core.errors import SensorWarning
from greenai.sim import SimulatedGPU, simulated_nvml
from greenai.tracking.result import Result
from greenai.tracking.step_stats import StepDigest
from greenai.tracking.timeline import PowerBuckets

EVIL = "<script>alert(1)</script>"

ACCOUNTING = {
    "location": "FRA",
    "intensity_source": "CodeCarbon offline data (annual mean)",
    "intensity_g_per_kwh": 56.0,
    "pue": 1.2,
    "facility_energy_kwh": 0.006,
    "price_per_kwh": 0.25,
    "gpu_hour_price": 2.5,
    "gpu_hours": 0.0108,
    "currency": "USD",
    "notes": ["list prices, not the negotiated ones"],
}


def account(result: Result) -> Result:
    """What the accounting layer would add: CO2 at 56 g/kWh with PUE 1.2, cost at list price."""
    return dataclasses.replace(
        result,
        co2_kg=result.energy_kwh * 1.2 * 56.0 / 1e3,
        cost_usd=result.energy_kwh * 1.2 * 0.25 + 0.027,
        intensity_g_per_kwh=56.0,
        accounting=ACCOUNTING,
        windows=tuple(account(w) for w in result.windows),
    )


def train(run_name: str = "finetune") -> Result:
    """Two simulated GPUs, three epochs with nested windows and steps, then an eval."""
    with simulated_nvml([SimulatedGPU(), SimulatedGPU(name="B")], virtual_clock=True) as sim:
        with greenai.track(run_name, cpu=False, dram=False) as run:
            for epoch in range(3):
                with run.window(f"epoch {epoch}"):
                    with run.window("forward"):
                        sim.compute(2.0, gpu=0)
                    with run.window(EVIL):
                        for _ in range(5):
                            with run.step():
                                sim.compute(0.5, gpu=[0, 1])
                    sim.advance(1.0)
            with run.window("eval"):
                sim.compute(3.0, gpu=1)
    return account(run.result)


def partial() -> Result:
    """gpu1 is lost half-way: the result is partial and gpu1's power samples are NaN."""
    with pytest.warns(SensorWarning, match="gpu1"):
        with simulated_nvml([SimulatedGPU(), SimulatedGPU(name="B")], virtual_clock=True) as sim:
            with greenai.track("lossy", cpu=False, dram=False) as run:
                with run.window("a"):
                    sim.compute(2.0, gpu=[0, 1])
                sim.inject(1, "lost")
                with run.window("b"):
                    sim.compute(2.0, gpu=[0, 1])
    return run.result


def long_run(name: str = "pretrain") -> Result:
    """Eight hours on two GPUs, sampled at 1 Hz and kept in 512 buckets of the real
    :class:`PowerBuckets` (so the timeline has min/max envelopes), gpu1's sensor lost for
    half an hour, and 50,000 steps of which a sample is kept. Energy is the full-rate
    samples' integral, as the meter would have it."""
    rng = np.random.default_rng(7)
    t = np.arange(0.0, 8 * 3600.0, 1.0)
    gpu0 = 300.0 + 100.0 * np.sin(t / 900.0) + rng.normal(0.0, 25.0, t.size)
    gpu1 = 200.0 + 50.0 * np.cos(t / 1300.0) + rng.normal(0.0, 15.0, t.size)
    gpu1[(t >= 3 * 3600) & (t < 3.5 * 3600)] = np.nan
    buckets = PowerBuckets(max_buckets=512)
    buckets.extend(t, {"gpu0": gpu0, "gpu1": gpu1})
    energy = {
        d: float(np.nansum((p[1:] + p[:-1]) / 2.0 * np.diff(t)))
        for d, p in (("gpu0", gpu0), ("gpu1", gpu1))
    }
    digest = StepDigest()
    digest.extend(np.full(50_000, 0.5), rng.gamma(20.0, 15.0, 50_000))
    return bare(
        name=name,
        duration_s=float(t[-1]),
        energy_by_device_j=energy,
        sources={"gpu0": "sim", "gpu1": "sim"},
        kinds={"gpu0": "gpu", "gpu1": "gpu"},
        timeline=buckets.window(0.0, float(t[-1])),
        steps=digest.stats(),
        run_id=f"{name}-0001",
    )


def bare(**changes: Any) -> Result:
    base = Result(
        name="bare",
        start_unix_s=1_700_000_000.0,
        duration_s=10.0,
        energy_by_device_j={"gpu0": 1000.0},
        sources={"gpu0": "nvml-counter"},
        kinds={"gpu0": "gpu"},
    )
    return dataclasses.replace(base, **changes)


# ------------------------------------------------------------------ parsing aids
class Collector(HTMLParser):
    """Tags, attributes, text and <style> content of a page."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.styles: list[str] = []
        self._stack: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_endtag(self, tag: str) -> None:
        if tag in self._stack:
            while self._stack.pop() != tag:
                pass

    def handle_data(self, data: str) -> None:
        if self._stack and self._stack[-1] == "style":
            self.styles.append(data)
        else:
            self.text.append(data)


def parse(html_text: str) -> Collector:
    c = Collector()
    c.feed(html_text)
    c.close()
    return c


def texts_of(page: str, element_id: str) -> str:
    """The text of the element with this id: a <section> up to its end, a <div> up to its first
    closing tag (the notice boxes hold no nested divs)."""
    at = page.index(f'id="{element_id}"')
    start = page.rindex("<", 0, at)
    closing = "</section>" if page.startswith("<section", start) else "</div>"
    return " ".join(parse(page[start : page.index(closing, at)]).text)
