"""The ``project`` fixture of the plugin's end-to-end tests (see plugin_sessions.py)."""

from __future__ import annotations

import pytest
from plugin_sessions import INI, SIM_CONFTEST


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """An inner project on one simulated GPU, with CO2e charged at France's intensity."""
    monkeypatch.setenv("GREENAI_COUNTRY", "FRA")
    pytester.makeini(INI)
    pytester.makeconftest(SIM_CONFTEST)
    return pytester
