"""greenai: what ML training and inference cost in joules, CO2e and money, and how to lower it.

``import greenai`` stays light: torch, CodeCarbon and the NVML bindings load only
when they are used.
"""

from __future__ import annotations

__version__ = "0.1.0"

from greenai.api import Tracker, track
from greenai.result import Forecast, Result
from greenai.track import Window

__all__ = ["Forecast", "Result", "Tracker", "Window", "__version__", "track"]
