"""Result's uncertainty bounds: kept through JSON, shown in the summary."""

from __future__ import annotations

import json
import math

from greenai.tracking.result import Result


def _result(**kwargs: object) -> Result:
    return Result(
        name="run",
        start_unix_s=1000.0,
        duration_s=2.0,
        energy_by_device_j={"gpu0": 1234.0, "cpu0": 50.0},
        sources={"gpu0": "nvml-power", "cpu0": "estimate"},
        kinds={"gpu0": "gpu", "cpu0": "cpu"},
        **kwargs,  # type: ignore[arg-type]
    )


def test_uncertainty_goes_through_json_with_an_infinite_bound_as_null() -> None:
    result = _result(uncertainty_by_device_j={"gpu0": 56.0, "cpu0": math.inf})
    data = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert data["uncertainty_by_device_j"] == {"gpu0": 56.0, "cpu0": None}
    assert Result.from_dict(data).uncertainty_by_device_j == {"gpu0": 56.0, "cpu0": math.inf}


def test_a_record_written_before_bounds_existed_still_loads() -> None:
    data = _result().to_dict()
    del data["uncertainty_by_device_j"]
    assert Result.from_dict(data).uncertainty_by_device_j == {}


def test_summary_shows_each_stated_bound() -> None:
    lines = _result(uncertainty_by_device_j={"gpu0": 56.0}).summary().splitlines()
    assert "1,234.0 J ± 56.0 J" in next(line for line in lines if "gpu0" in line)
    assert "±" not in next(line for line in lines if "cpu0" in line)
