"""A metered test's data: what TestMeter hands the session (and an xdist worker sends)."""

from __future__ import annotations

from pathlib import Path

from greenai.pytest_energy.metering import TestMeter
from greenai.pytest_energy.options import parse_options


def test_a_tests_whole_result_is_built_only_when_it_is_saved(tmp_path: Path) -> None:
    for save, kept in ((None, False), (str(tmp_path / "energy.json"), True)):
        options = parse_options(all_tests=True, devices="cpu", save=save)
        meter = TestMeter("test_x.py::test_x", options, {})
        meter.start()
        meter.stop()
        meter.resolve()
        data = meter.to_dict(outcome="passed", worker=None)
        assert meter.error == ""
        assert data["figures"] is not None
        assert data["figures"]["energy_j"] >= 0
        assert (data["result"] is not None) == kept, save
        if kept:
            assert data["result"]["name"] == "test_x.py::test_x"
