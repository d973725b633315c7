"""Energy-target control: steer GPU power limits so a run meets an energy goal.

``greenai.track(..., target=greenai.EnergyTarget(...))`` builds a
:class:`Governor`, which profiles power limits, chooses one and keeps the run on
target; every limit it changes goes through a :class:`PowerLimitGuard`, which
gives it back on every way out. See :mod:`greenai.control.governor`.
"""

from __future__ import annotations

from greenai.control.batch_sampler import AdaptiveBatchSampler
from greenai.control.batch_size import BatchSizeController
from greenai.control.governor import Governor
from greenai.control.limit_choice import Choice, choose_limit
from greenai.control.limits import PowerLimitGuard, recover
from greenai.control.profile import Profile, ProfilePoint, ProfileStore
from greenai.control.target import EnergyTarget

__all__ = [
    "AdaptiveBatchSampler",
    "BatchSizeController",
    "Choice",
    "EnergyTarget",
    "Governor",
    "PowerLimitGuard",
    "Profile",
    "ProfilePoint",
    "ProfileStore",
    "choose_limit",
    "recover",
]
