"""greenai.track with accounting and reports wired in, end to end on a simulated GPU."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import greenai
from greenai.core.errors import AccountingWarning
from greenai.report.csv_report import read_emissions_csv
from greenai.report.history import History, default_history_path
from greenai.sim import SimulatedGPU, simulated_nvml


def test_run_is_accounted_and_written_everywhere(tmp_path: Path) -> None:
    with simulated_nvml([SimulatedGPU(idle_w=60, max_w=400)], virtual_clock=True) as sim:
        with greenai.track(
            "fit",
            cpu=False,
            dram=False,
            country="FRA",
            pue=1.2,
            price_per_kwh=0.25,
            gpu_hour_price=3.0,
            output_dir=tmp_path,
        ) as run:
            with run.window("epoch 0"):
                sim.compute(3.0)
    r = run.result
    kwh = r.energy_kwh * 1.2
    assert r.co2_kg == pytest.approx(kwh * 56.039 / 1000, rel=1e-3)
    assert r.cost_usd == pytest.approx(kwh * 0.25 + 3.0 * r.duration_s / 3600)
    assert r.accounting["country_iso_code"] == "FRA"
    assert r.window("epoch 0").co2_kg == pytest.approx(
        r.window("epoch 0").energy_kwh * 1.2 * 56.039 / 1000, rel=1e-3
    )
    # emissions.csv row, JSON record and history agree with the result
    (row,) = read_emissions_csv(tmp_path / "emissions.csv")
    assert row["run_id"] == r.run_id
    assert float(row["emissions"]) == pytest.approx(r.co2_kg)
    assert float(row["energy_consumed"]) == pytest.approx(kwh)
    assert row["country_iso_code"] == "FRA"
    record = json.loads((tmp_path / f"{r.run_id}.json").read_text())
    assert record["co2_kg"] == pytest.approx(r.co2_kg)
    assert greenai.Result.from_dict(record).to_dict() == json.loads(json.dumps(r.to_dict()))
    assert History(default_history_path()).get(r.run_id).energy_j == pytest.approx(r.energy_j)
    # ... and the HTML report rendered from the saved record shows the same figures
    from greenai.core import units
    from greenai.report import html
    from greenai.report.records import read_record

    page = html.render_html(read_record(tmp_path / f"{r.run_id}.json"))
    for shown in (
        units.format_energy_j(r.energy_j),
        units.format_co2_g(r.co2_kg),
        units.format_usd(r.cost_usd),
        r.run_id,
    ):
        assert shown.replace("&", "&amp;") in page


def test_history_can_be_turned_off(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("GREENAI_HISTORY", "off")
    with greenai.track(gpus=[], country="USA"):
        pass
    with greenai.track(gpus=[], country="USA", history=False):
        pass
    assert not default_history_path().exists()
    with greenai.track(gpus=[], country="USA", history=tmp_path / "h.db") as run:
        pass
    assert History(tmp_path / "h.db").get("1").run_id == run.result.run_id


def test_settings_come_from_env_and_bad_ones_fail_early(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GREENAI_COUNTRY", "deu")
    with greenai.track(gpus=[]) as run:
        pass
    assert run.result.accounting["country_iso_code"] == "DEU"
    assert run.result.accounting["settings_origin"]["country"] == "env GREENAI_COUNTRY"
    with pytest.raises(ValueError, match="pue"):
        greenai.track(pue=0.5)


def test_unknown_place_warns_and_uses_the_world_average() -> None:
    with pytest.warns(AccountingWarning, match="XYZ"):
        run = greenai.track(gpus=[], country="XYZ")
    with run:
        pass
    assert run.result.accounting["location"] == "unknown"
    assert run.result.intensity_g_per_kwh == pytest.approx(475.0)


def test_decorator_and_start_stop_are_accounted_too() -> None:
    tracker = greenai.Tracker("fn", gpus=[], country="FRA")

    @tracker
    def work() -> int:
        return 7

    assert work() == 7
    assert tracker.result.co2_kg is not None
    manual = greenai.Tracker(gpus=[], country="FRA").start()
    assert manual.stop().co2_kg is not None


def test_unset_location_is_said_once_at_the_users_line() -> None:
    with pytest.warns(AccountingWarning, match="location unknown") as caught:
        greenai.track(gpus=[])
        greenai.track(gpus=[])
    assert len(caught) == 1
    assert caught[0].filename == __file__
    with pytest.warns(AccountingWarning, match="XYZ"):  # a wrong place is said every time
        greenai.track(gpus=[], country="XYZ")


def test_prometheus_port_serves_the_runs_accounted_metrics() -> None:
    from urllib.request import urlopen

    from prometheus_client.parser import text_string_to_metric_families

    exporter = greenai.PrometheusExporter(0, addr="127.0.0.1", update_interval_s=0.05)
    with simulated_nvml([SimulatedGPU()]) as sim:
        with greenai.track(
            "live",
            cpu=False,
            dram=False,
            history=False,
            intensity_g_per_kwh=400.0,
            prometheus=exporter,
        ) as run:
            sim.compute(0.3)
            for _ in range(100):  # the update thread may come late on a busy host
                with urlopen(f"http://127.0.0.1:{exporter.port}/metrics", timeout=10) as page:
                    text = page.read().decode()
                samples = {
                    s.name: s
                    for family in text_string_to_metric_families(text)
                    for s in family.samples
                }
                first = samples.get("greenai_energy_joules_total")
                if first is not None and first.value > 0:
                    break
                sim.compute(0.05)
    energy = samples["greenai_energy_joules_total"]
    assert energy.labels["run"] == "live"
    assert energy.labels["device"] == "gpu0"
    assert 0 < energy.value <= run.result.energy_j * 1.01
    co2 = samples["greenai_co2_kilograms_total"]
    assert co2.value == pytest.approx(energy.value / 3.6e6 * 0.4, rel=1e-6)


@pytest.mark.parametrize("prometheus", ["9400", 70000, True])
def test_bad_prometheus_port_fails_before_the_run(prometheus: object) -> None:
    with pytest.raises((TypeError, ValueError), match="port must be"):
        greenai.track("x", prometheus=prometheus)  # type: ignore[arg-type]


def test_bare_decorator_names_each_run_after_the_function(tmp_path: Path) -> None:
    with simulated_nvml([SimulatedGPU(idle_w=60, max_w=400)], virtual_clock=True) as sim:

        @greenai.track
        def train(seconds: float) -> str:
            sim.compute(seconds)
            return "trained"

        assert train.result is None  # before the first call
        assert train(1.0) == "trained"
        first = train.result
        assert train(2.0) == "trained"
    assert first is not None
    assert train.result is not None
    assert first.run_id != train.result.run_id  # two calls, two runs
    assert first.name == train.result.name == train.__qualname__
    assert train.result.gpu_energy_j > first.gpu_energy_j
    assert train.result.co2_kg is not None  # accounted like greenai.track(...)
    assert train.__name__ == "train"


def test_named_decorator_keeps_the_last_result_also_when_the_call_raises() -> None:
    tracker = greenai.Tracker("fit", gpus=[], country="FRA", history=False)

    @tracker
    def fit() -> None:
        raise KeyError("data")

    with pytest.raises(KeyError):
        fit()
    assert fit.result is not None
    assert fit.result.name == "fit"
    assert tracker.result is fit.result

    @greenai.track("evaluate", gpus=[], country="FRA", history=False)
    def evaluate(x: int) -> int:
        return x + 1

    assert evaluate(1) == 2
    assert evaluate.result is not None
    assert evaluate.result.name == "evaluate"


def test_track_with_arguments_is_still_a_tracker() -> None:
    run = greenai.track("x", gpus=[], country="FRA", history=False)
    assert isinstance(run, greenai.Tracker)
    with run:
        pass
    assert run.result.name == "x"
    with greenai.track(gpus=[], country="FRA", history=False) as unnamed:
        pass
    assert unnamed.result.co2_kg is not None


def test_subpackages_are_attributes_of_a_bare_import_loaded_on_first_use() -> None:
    code = """
import sys
import greenai
before = sorted(m for m in sys.modules if m.startswith("greenai"))
assert before == ["greenai"], before
assert "sim" in dir(greenai) and "control" in dir(greenai)
assert "greenai.sim" not in sys.modules
with greenai.sim.simulated_nvml([greenai.sim.SimulatedGPU()], virtual_clock=True):
    pass
assert greenai.control.BatchSizeController.__name__ == "BatchSizeController"
assert greenai.integrations.LoopRun.__name__ == "LoopRun"
assert greenai.report.__name__ == "greenai.report"  # its modules load when imported
try:
    greenai.nope
except AttributeError as e:
    assert "nope" in str(e)
else:
    raise AssertionError("greenai.nope")
"""
    done = subprocess.run(
        [sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
