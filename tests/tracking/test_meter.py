"""The tracker against scripted devices on a virtual clock (exact expectations)."""

from __future__ import annotations

import math
import time

import pytest

import greenai
from greenai.core import clock
from greenai.core.errors import DeviceLostError, NotSupportedError, SensorWarning
from greenai.devices.base import NoPowerLimit
from greenai.tracking.meter import Meter


class ScriptedDevice(NoPowerLimit):
    """A device with a settable power on a virtual clock; its energy is the exact integral."""

    def __init__(
        self,
        vc: clock.VirtualClock,
        name: str,
        kind: str = "cpu",
        *,
        counter: bool = True,
        power_w: float = 50.0,
    ) -> None:
        self.vc = vc
        self.name = name
        self.kind = kind
        self.source = "estimate"
        self.has_energy_counter = counter
        self.counter_resets = 0
        self.level_w = power_w
        self._energy_j = 0.0
        self._t = vc.now()
        self.fail_with: Exception | None = None

    def set_power(self, power_w: float) -> None:
        self._advance()
        self.level_w = power_w

    def _advance(self) -> None:
        now = self.vc.now()
        self._energy_j += self.level_w * (now - self._t)
        self._t = now

    def energy_j(self) -> float:
        if self.fail_with is not None:
            raise self.fail_with
        if not self.has_energy_counter:
            raise NotSupportedError(self.name)
        self._advance()
        return self._energy_j

    def power_w(self) -> float:
        if self.fail_with is not None:
            raise self.fail_with
        return self.level_w


@pytest.fixture
def vc() -> clock.VirtualClock:
    virtual = clock.VirtualClock(start_s=100.0)
    with clock.use(virtual):
        yield virtual


def test_counter_and_power_devices_exact(vc: clock.VirtualClock) -> None:
    cpu = ScriptedDevice(vc, "cpu0", power_w=40.0)
    dram = ScriptedDevice(vc, "dram0", "dram", counter=False, power_w=5.0)
    with greenai.track("run", devices=[cpu, dram]) as run:
        vc.advance(2.0)
        cpu.set_power(80.0)
        vc.advance(3.0)
    r = run.result
    assert r.duration_s == pytest.approx(5.0)
    assert r.energy_by_device_j["cpu0"] == pytest.approx(40 * 2 + 80 * 3)
    assert r.energy_by_device_j["dram0"] == pytest.approx(25.0)
    assert r.cpu_energy_j == pytest.approx(320.0)
    assert r.dram_energy_j == pytest.approx(25.0)
    assert r.gpu_energy_j == 0.0
    assert r.energy_j == pytest.approx(345.0)
    assert r.sources == {"cpu0": "estimate", "dram0": "estimate"}
    assert not r.partial
    # the timeline holds the sampled power: 40 W then 80 W, derived from the counter
    times, power = r.timeline.times_s, r.timeline.power_w["cpu0"]
    assert len(times) == 51
    assert power[5] == pytest.approx(40.0)
    assert power[-1] == pytest.approx(80.0)


def test_power_integration_follows_changes(vc: clock.VirtualClock) -> None:
    gpu = ScriptedDevice(vc, "gpu0", "gpu", counter=False, power_w=100.0)
    with greenai.track(devices=[gpu], sample_period_s=0.05) as run:
        for level in (100.0, 300.0, 150.0):
            gpu.set_power(level)
            vc.advance(1.0)
    # trapezoids blur each step over one sample period: at most half a period of each jump
    assert run.result.energy_j == pytest.approx(550.0, abs=0.5 * 0.05 * 200 * 2)


def test_nested_and_overlapping_windows(vc: clock.VirtualClock) -> None:
    cpu = ScriptedDevice(vc, "cpu0", power_w=10.0)
    with greenai.track("run", devices=[cpu]) as run:
        with run.window("epoch") as epoch:
            with run.window("forward") as fwd:
                vc.advance(1.0)
            run.begin_window("overlap")
            with run.window("backward"):
                vc.advance(2.0)
        overlap = run.end_window("overlap")
        vc.advance(1.0)
    r = run.result
    assert [w.name for w in r.windows] == ["epoch", "overlap"]
    assert [w.name for w in r.window("epoch").windows] == ["forward", "backward"]
    assert epoch.result.energy_j == pytest.approx(30.0)
    assert fwd.result.energy_j == pytest.approx(10.0)
    assert r.window("backward").duration_s == pytest.approx(2.0)
    assert overlap.energy_j == pytest.approx(20.0)
    assert r.energy_j == pytest.approx(40.0)
    with pytest.raises(KeyError, match="nope"):
        r.window("nope")


def test_window_misuse_is_a_clear_error(vc: clock.VirtualClock) -> None:
    run = greenai.track(devices=[ScriptedDevice(vc, "cpu0")])
    with pytest.raises(RuntimeError, match="running tracker"):
        run.window("w")
    with pytest.raises(RuntimeError, match="has not stopped"):
        _ = run.result
    with run:
        run.begin_window("k")
        with pytest.raises(ValueError, match="already open"):
            run.begin_window("k")
        with pytest.raises(KeyError, match="no open window"):
            run.end_window("other")
        with pytest.raises(RuntimeError, match="already running"):
            run.start()
    assert run.stop() is run.result  # stopping again: the same result (see test_stop.py)
    # a window left open is closed when the run stops
    assert run.result.window("k").duration_s == pytest.approx(0.0)


def test_steps(vc: clock.VirtualClock) -> None:
    cpu = ScriptedDevice(vc, "cpu0", power_w=20.0)
    with greenai.track(devices=[cpu]) as run:
        with run.window("train"):
            for _ in range(50):
                with run.step():
                    vc.advance(0.04)
                vc.advance(0.01)
    steps = run.result.window("train").steps
    assert steps is not None
    assert steps.count == 50
    assert steps.time_s == pytest.approx(2.0)
    assert steps.mean_time_s == pytest.approx(0.04)
    assert steps.energy_j == pytest.approx(40.0, rel=1e-6)
    assert steps.mean_energy_j == pytest.approx(0.8, rel=1e-6)


def test_decorator_tracks_each_call(vc: clock.VirtualClock) -> None:
    cpu = ScriptedDevice(vc, "cpu0", power_w=10.0)
    tracker = greenai.track(devices=[cpu])

    @tracker
    def work(seconds: float) -> str:
        vc.advance(seconds)
        return "done"

    assert work(1.0) == "done"
    assert tracker.result.name.endswith("work")
    assert tracker.result.energy_j == pytest.approx(10.0)
    work(3.0)
    assert tracker.result.energy_j == pytest.approx(30.0)

    @tracker
    def boom() -> None:
        vc.advance(2.0)
        raise ZeroDivisionError

    with pytest.raises(ZeroDivisionError):
        boom()
    assert tracker.result.energy_j == pytest.approx(20.0)


def test_failed_sensor_never_raises_and_marks_partial(vc: clock.VirtualClock) -> None:
    gpu = ScriptedDevice(vc, "gpu0", "cpu", power_w=100.0)
    cpu = ScriptedDevice(vc, "cpu1", power_w=10.0)
    with pytest.warns(SensorWarning, match="cpu0|gpu0") as caught:
        with greenai.track(devices=[gpu, cpu]) as run:
            with run.window("before"):
                vc.advance(1.0)
            with run.window("during"):
                vc.advance(1.0)
                gpu.fail_with = DeviceLostError("gone")
                vc.advance(1.0)
            with run.window("after"):
                vc.advance(1.0)
    assert len([w for w in caught if issubclass(w.category, SensorWarning)]) == 1
    r = run.result
    assert r.partial
    assert any("gpu0" in reason and "gone" in reason for reason in r.partial_reasons)
    assert not r.window("before").partial
    assert r.window("during").partial
    # energy up to the last good sample is kept; the other device is unaffected
    assert r.window("before").energy_by_device_j["gpu0"] == pytest.approx(100.0)
    assert r.window("during").energy_by_device_j["gpu0"] == pytest.approx(100.0, abs=10.0)
    assert r.energy_by_device_j["cpu1"] == pytest.approx(40.0)
    assert math.isnan(r.timeline.power_w["gpu0"][-1])


def test_missing_gpu_is_partial_with_warning() -> None:
    with pytest.warns(SensorWarning, match="gpu7: requested but not present"):
        with greenai.track(gpus=[7], cpu=False, dram=False) as run:
            pass
    assert run.result.partial
    assert run.result.energy_by_device_j == {}


def test_duplicate_device_names_are_rejected(vc: clock.VirtualClock) -> None:
    twins = [ScriptedDevice(vc, "cpu0"), ScriptedDevice(vc, "cpu0")]
    with pytest.raises(ValueError, match="unique names"):
        greenai.track(devices=twins).start()


@pytest.mark.parametrize("period", [0, -1, float("nan"), float("inf"), "0.1"])
def test_bad_sample_period(period: object) -> None:
    with pytest.raises(ValueError, match="sample_period_s"):
        greenai.track(sample_period_s=period)  # type: ignore[arg-type]


@pytest.mark.parametrize("gpus", ["0", 0, [0, 0], [-1], [1.5]])
def test_bad_gpus(gpus: object) -> None:
    with pytest.raises((TypeError, ValueError), match="gpus"):
        greenai.track(gpus=gpus).start()  # type: ignore[arg-type]


@pytest.mark.usefixtures("no_leaked_threads")
def test_real_clock_sampler_thread_is_joined_even_on_exception() -> None:
    with pytest.raises(KeyboardInterrupt), greenai.track(sample_period_s=0.01) as run:
        time.sleep(0.05)
        raise KeyboardInterrupt
    r = run.result
    assert r.duration_s >= 0.05
    assert len(r.timeline.times_s) >= 3
    assert set(r.sources.values()) <= {"rapl", "estimate"}


def test_result_round_trips_through_plain_data(vc: clock.VirtualClock) -> None:
    import json

    cpu = ScriptedDevice(vc, "cpu0", power_w=10.0)
    gpu = ScriptedDevice(vc, "gpu0", "gpu", counter=False, power_w=100.0)
    with greenai.track("rt", devices=[cpu, gpu]) as run:
        with run.window("w"):
            for _ in range(3):
                with run.step():
                    vc.advance(0.2)
        gpu.fail_with = DeviceLostError("gone")
        with pytest.warns(SensorWarning):
            vc.advance(0.5)
            run.begin_window("k")
    r = run.result
    data = json.loads(json.dumps(r.to_dict(), allow_nan=False))
    back = greenai.Result.from_dict(data)
    assert back.to_dict() == r.to_dict()
    assert back.run_id == r.run_id != ""
    assert back.window("w").steps is not None
    assert back.window("w").steps.count == 3
    assert r.metadata["greenai_version"] == greenai.__version__
    assert r.metadata["gpu_count"] == 1
    with pytest.raises(ValueError, match="not a greenai result record"):
        greenai.Result.from_dict({"name": "x"})


def test_account_and_output_hooks(vc: clock.VirtualClock) -> None:
    import dataclasses

    seen: list[greenai.Result] = []

    def account(result: greenai.Result) -> greenai.Result:
        return dataclasses.replace(result, co2_kg=result.energy_kwh * 0.5)

    def broken_output(result: greenai.Result) -> None:
        raise OSError("disk full")

    run = Meter(
        devices=[ScriptedDevice(vc, "cpu0", power_w=3600.0)],
        account=account,
        outputs=[seen.append, broken_output],
    )
    with pytest.warns(greenai.core.errors.OutputWarning, match="disk full"):
        with run:
            with run.window("w"):
                vc.advance(1.0)
    assert run.result.co2_kg == pytest.approx(0.0005)  # 3600 J = 0.001 kWh
    assert run.result.window("w").co2_kg == pytest.approx(0.0005)
    assert seen == [run.result]


def test_a_function_is_never_a_trackers_name() -> None:
    def work() -> None:
        pass

    with pytest.raises(TypeError, match=r"@greenai\.track, "):
        Meter(work)  # type: ignore[arg-type]
