"""The examples in ``examples/`` run as their docstrings say (small sizes)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_energy_per_token_example(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("torch")
    monkeypatch.setenv("GREENAI_HISTORY", "off")
    spec = importlib.util.spec_from_file_location(
        "energy_per_token", EXAMPLES / "energy_per_token.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "energy_per_token", module)
    spec.loader.exec_module(module)
    result = module.main(["--requests", "3", "--max-new-tokens", "5"])
    out = capsys.readouterr().out
    assert result.steps.samples == 3
    assert 3 <= result.steps.tokens <= 15
    per_token = result.per_work("token")
    assert per_token is not None
    assert per_token.energy_j == pytest.approx(result.energy_j / result.steps.tokens)
    assert f"per token: {per_token}" in out
    assert "per request: " in out
