"""Energy-target control: steer GPU power limits so a run meets an energy goal.

``greenai.track(..., target=greenai.EnergyTarget(...))`` builds a
:class:`Governor`, which profiles power limits, chooses one and keeps the run on
target; every limit it changes goes through a :class:`PowerLimitGuard`, which
gives it back on every way out. See :mod:`greenai.control.governor`.

The modules, by concern:

* the goal and the power-limit plan: ``target`` (:class:`EnergyTarget`),
  ``governor`` (the run observer: profile, choose, closed loop), ``spending`` (what
  the run spent, from its ledger), ``control_report`` (the report, and the limits the
  steps ran at), ``profile`` (measured profiles and their store), ``limit_choice``
  (:func:`choose_limit`), ``ranks`` (one plan for the ranks of a ``torch.distributed``
  job, or this rank alone), ``distributed`` (the collectives);
* power limits that are always given back: ``limits`` (:class:`PowerLimitGuard`,
  :func:`recover`), ``lease`` (one process at a time changes a GPU's limit),
  ``limit_journal`` (the on-disk journal and its locking), ``recovery`` (restoring what
  killed runs left), ``limit_signals`` (restoring on the signals that end a process);
* batch size: ``batch_size`` (:class:`BatchSizeController`), ``batch_choice``,
  ``batch_windows``, ``batch_oom``, ``batch_store``, ``batch_sampler``
  (:class:`AdaptiveBatchSampler`);
* the folder where all of it outlives a run: :mod:`greenai.core.state`.
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
