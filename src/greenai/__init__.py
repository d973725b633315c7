"""greenai: what ML training and inference cost in joules, CO2e and money, and how to lower it.

``import greenai`` costs almost nothing: the public names (:func:`track`,
:class:`Tracker`, :class:`Result`, ...) load on first use, and torch, CodeCarbon
and the NVML bindings only when they are used. This matters because greenai's
pytest plugin (:mod:`greenai.pytest_energy.plugin`) is imported by every pytest session
on a machine where greenai is installed, metering or not.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from greenai.control import EnergyTarget
    from greenai.report.prometheus import PrometheusExporter
    from greenai.tracker import Tracker, track
    from greenai.tracking.result import Forecast, Result
    from greenai.tracking.windows import Window

__all__ = [
    "EnergyTarget",
    "Forecast",
    "PrometheusExporter",
    "Result",
    "Tracker",
    "Window",
    "__version__",
    "track",
]

# Public name -> the module that defines it (imported on first access).
_LAZY = {
    "EnergyTarget": "greenai.control",
    "Tracker": "greenai.tracker",
    "track": "greenai.tracker",
    "Forecast": "greenai.tracking.result",
    "PrometheusExporter": "greenai.report.prometheus",
    "Result": "greenai.tracking.result",
    "Window": "greenai.tracking.windows",
}
_LAZY_SUBMODULES = (
    "accounting",
    "compress",
    "control",
    "core",
    "devices",
    "integrations",
    "ops",
    "report",
    "sim",
    "tracking",
)
"""Subpackages reachable as attributes after a bare ``import greenai`` (``greenai.sim``,
``greenai.control.BatchSizeController``), each imported on first access: some import
torch or the NVML bindings, and ``import greenai`` must load none of them."""

if not TYPE_CHECKING:

    def __getattr__(name: str) -> Any:
        """Load a public name on first access (PEP 562)."""
        if name in _LAZY_SUBMODULES:
            return importlib.import_module(f"greenai.{name}")
        module_name = _LAZY.get(name)
        if module_name is None:
            raise AttributeError(f"module 'greenai' has no attribute {name!r}")
        value = getattr(importlib.import_module(module_name), name)
        globals()[name] = value
        return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY, *_LAZY_SUBMODULES})
