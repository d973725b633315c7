"""The reading guard: counter restarts, noise and impossible values told apart."""

from __future__ import annotations

import math

import pytest

from greenai.devices.base import NoPowerLimit
from greenai.devices.plausible import MARGIN, UNKNOWN_MAX_W, ReadingGuard, max_power_w


def _guard(start_j: float = 5_000_000.0) -> ReadingGuard:
    """An H100-like GPU (700 W maximum limit) whose counter reads ``start_j`` at t=0."""
    guard = ReadingGuard("gpu0", 700.0)
    assert guard.energy(0.0, start_j) == (0.0, None)
    return guard


def test_ordinary_readings_accumulate() -> None:
    guard = _guard()
    assert guard.energy(0.1, 5_000_070.0) == (70.0, None)
    assert guard.energy(0.2, 5_000_140.0) == (140.0, None)


def test_a_one_millijoule_dip_is_noise() -> None:
    guard = _guard()
    guard.energy(0.1, 5_000_070.0)
    assert guard.energy(0.2, 5_000_069.999) == (70.0, None)
    # the higher reading stays the base: nothing is counted twice
    assert guard.energy(0.3, 5_000_140.0) == (140.0, None)


def test_a_read_older_than_the_last_may_be_lower_by_what_the_device_spent_between() -> None:
    """Two threads read the counter; the earlier read reached the guard 19 ms later."""
    guard = _guard()
    guard.energy(0.100, 5_000_070.0)
    guard.energy(0.200, 5_000_140.0)
    lower_j = 0.019 * guard.max_w  # what the device spent in those 19 ms at full power
    assert guard.energy(0.181, 5_000_140.0 - lower_j) == (140.0, None)
    # more than the device can spend in 19 ms is still rejected
    total, event = guard.energy(0.181, 5_000_140.0 - 10 * lower_j * MARGIN)
    assert total is None
    assert event is not None
    assert event.kind == "rejected"


def test_a_driver_reload_is_a_restart_and_counting_goes_on() -> None:
    guard = _guard()
    guard.energy(0.1, 5_000_070.0)
    total, event = guard.energy(3.0, 12.5)  # the driver reloaded: the counter starts again
    assert total == pytest.approx(82.5)
    assert event is not None
    assert event.kind == "restart"
    assert "gpu0" in event.message
    assert "5000070.000 J" in event.message
    assert guard.energy(3.1, 82.5) == (pytest.approx(152.5), None)


def test_a_large_decrease_far_from_zero_is_rejected() -> None:
    guard = _guard()
    total, event = guard.energy(0.1, 4_000_000.0)
    assert total is None
    assert event is not None
    assert event.kind == "rejected"


def test_a_transient_jump_is_rejected_and_loses_nothing() -> None:
    guard = _guard()
    total, event = guard.energy(0.1, 5_000_070.0 + 1e9)
    assert total is None
    assert event is not None
    assert event.kind == "rejected"
    assert "1005000070.000 J" in event.message
    assert "700 W" in event.message
    assert guard.energy(0.2, 5_000_140.0) == (140.0, None)


def test_a_jump_that_stays_is_followed_from_the_next_reading() -> None:
    guard = _guard()
    guard.energy(0.1, 5_000_070.0)
    assert guard.energy(0.2, 1e9)[0] is None
    total, event = guard.energy(0.3, 1e9 + 70.0)
    assert total == 140.0  # the jump itself is not counted; what followed it is
    assert event is not None
    assert event.kind == "moved"


def test_the_allowance_grows_with_the_time_between_reads() -> None:
    guard = _guard()
    # 10 s at the maximum power is plausible; ten times that is not
    assert guard.energy(10.0, 5_000_000.0 + 7_000.0) == (7_000.0, None)
    assert guard.energy(20.0, 5_007_000.0 + 70_000.0)[0] is None


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, -1.0])
def test_bad_energy_values_are_rejected(value: float) -> None:
    guard = _guard()
    total, event = guard.energy(0.1, value)
    assert total is None
    assert event is not None
    assert event.kind == "bad value"
    assert "gpu0" in event.message
    assert guard.energy(0.2, 5_000_140.0) == (140.0, None)  # the next good reading counts


@pytest.mark.parametrize("value", [math.nan, math.inf, -5.0, 1e9, 700.0 * MARGIN + 1])
def test_impossible_power_is_rejected(value: float) -> None:
    power_w, event = _guard().power(1.0, value)
    assert math.isnan(power_w)
    assert event is not None
    assert "gpu0" in event.message


def test_possible_power_is_kept() -> None:
    assert _guard().power(1.0, 700.0 * MARGIN) == (700.0 * MARGIN, None)


class _Limited(NoPowerLimit):
    name = "x"

    def __init__(self, hi_w: float) -> None:
        self.hi_w = hi_w

    def power_limit_range_w(self) -> tuple[float, float]:
        return (1.0, self.hi_w)


def test_max_power_comes_from_the_power_limit_range() -> None:
    assert max_power_w(_Limited(450.0)) == 450.0
    assert max_power_w(_Limited(math.nan)) is None
    assert max_power_w(NoPowerLimit()) is None
    assert ReadingGuard("cpu0", None).max_w == UNKNOWN_MAX_W


def test_a_counter_that_moves_and_comes_back_is_not_a_restart() -> None:
    guard = ReadingGuard("custom0", None)  # a small counter: a return looks like a restart
    guard.energy(0.0, 0.0)
    guard.energy(1.0, 50.0)
    assert guard.energy(1.1, 1e9)[0] is None
    assert guard.energy(1.2, 1e9)[1].kind == "moved"  # type: ignore[union-attr]
    total, event = guard.energy(1.3, 65.0)
    assert total == 65.0  # counted from before it moved, not 50 + 65 as a restart would
    assert event is not None
    assert event.kind == "moved"
    assert "came back" in event.message
