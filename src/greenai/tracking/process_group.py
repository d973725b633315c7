"""The user's ``torch.distributed`` default process group, when there is one.

The one place greenai asks whether a process is a rank of an initialized process
group: the job gather (:mod:`greenai.tracking.job`) uses its store, the governor's
coordinator (:mod:`greenai.control.distributed`) its collectives. Only
``sys.modules`` is looked at: a program that never imported torch is never made to.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProcessGroup:
    """The default process group as this rank sees it.

    Attributes:
        torch: The user's already imported ``torch`` module.
        rank: This process's global rank.
        world_size: Ranks in the group.
        backend: ``"nccl"``, ``"gloo"``, ...
    """

    torch: Any
    rank: int
    world_size: int
    backend: str

    @property
    def dist(self) -> Any:
        """``torch.distributed``."""
        return self.torch.distributed

    def store(self) -> Any | None:
        """The group's c10d store, or None where this torch build does not expose it."""
        try:
            return self.dist.distributed_c10d._get_default_store()
        except Exception as e:  # a private API: an unusual torch build has none
            logger.debug("no usable torch.distributed store: %r", e)
            return None


def process_group() -> ProcessGroup | None:
    """The initialized default process group, or None (no torch, no group, odd build)."""
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    try:
        dist = torch.distributed
        if not (dist.is_available() and dist.is_initialized()):
            return None
        return ProcessGroup(
            torch, int(dist.get_rank()), int(dist.get_world_size()), str(dist.get_backend())
        )
    except Exception as e:  # an unusual torch build: the run stays local
        logger.debug("no usable torch.distributed process group: %r", e)
        return None
