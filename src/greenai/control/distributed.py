"""One energy plan for a whole ``torch.distributed`` job: energy summed, time of the slowest rank.

Each rank of a data-parallel job runs its own :class:`~greenai.control.governor.Governor`
on the GPUs its process meters. Planned alone, each would spend the whole job's
budget on its own GPUs. A :class:`Coordinator` makes them one planner: at every
decision point (the end of each profiling phase, each re-plan) every rank
contributes its GPUs' energy and its wall time for the phase or interval, they
are combined with collectives (``all_reduce`` SUM for energy, MAX for time), so
every rank sees the same job-wide profile and budget, and rank 0's choice is
broadcast so floating-point differences can never split the ranks onto two limits.

Assumptions and limits:

* The step counts are equal across ranks (data parallel: every rank runs the same
  ``run.step()`` blocks), so decision points, which are step-count based, fall at
  the same step on every rank. Collectives are called only there, in the user's
  thread, never from the sampler thread.
* Coordination is used only when the user has imported torch and initialized the
  default process group; greenai never imports torch itself.
* A collective that fails (a rank died) or does not complete within the process
  group's timeout (``torch.distributed.init_process_group(timeout=...)``; for NCCL,
  with ``TORCH_NCCL_ASYNC_ERROR_HANDLING`` as the user configured it) raises
  :class:`CoordinationError`; the governor's planner
  (:class:`~greenai.control.ranks.JobPlan`) then warns once, has the original limits
  restored and plans locally. No rank waits longer than that timeout.
* A rank whose control stops on its own (an error of its devices) stops taking part;
  the others reach their next collective, wait out the timeout and plan alone.
* Saved profiles are neither reused nor saved in a coordinated run: the ranks could
  disagree on whether one exists, and a job profile (energy of all ranks' GPUs) is
  not a single process's.
* Tensors live on the CPU for gloo (and other CPU backends) and on the current CUDA
  device for NCCL, which cannot reduce CPU tensors.

Units: J, s, W.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from greenai.tracking.process_group import ProcessGroup, process_group


class CoordinationError(RuntimeError):
    """A collective among the job's ranks failed or timed out."""


class Coordinator:
    """Combines a governor's measurements across the ranks of the default process group.

    Args:
        group: The user's initialized default process group.
    """

    def __init__(self, group: ProcessGroup) -> None:
        self._torch = group.torch
        self._dist = group.dist
        self.rank: int = group.rank
        self.world_size: int = group.world_size
        self.backend: str = group.backend

    @classmethod
    def detect(cls) -> Coordinator | None:
        """A coordinator when the user's torch has an initialized process group, else None.

        Looks at ``sys.modules`` only: a program that never imported torch is never
        made to import it.
        """
        group = process_group()
        if group is None or group.world_size < 2:
            return None  # one rank: planning alone is the same plan
        return cls(group)

    def _device(self) -> Any:
        """Where collective tensors live: the current CUDA device for NCCL, else the CPU."""
        if "nccl" in self.backend.lower():
            return self._torch.device("cuda", self._torch.cuda.current_device())
        return self._torch.device("cpu")

    def _reduce(self, values: Sequence[float], op: Any) -> list[float]:
        tensor = self._torch.tensor(
            [float(v) for v in values], dtype=self._torch.float64, device=self._device()
        )
        self._dist.all_reduce(tensor, op=op)
        return [float(v) for v in tensor.cpu().tolist()]

    def combine(
        self, sums: Sequence[float], maxes: Sequence[float]
    ) -> tuple[list[float], list[float]]:
        """All-reduce ``sums`` by SUM and ``maxes`` by MAX over every rank.

        Every rank must call this at the same point with lists of the same lengths.

        Raises:
            CoordinationError: A rank failed or the process group's timeout passed.
        """
        try:
            summed = self._reduce(sums, self._dist.ReduceOp.SUM) if sums else []
            maxed = self._reduce(maxes, self._dist.ReduceOp.MAX) if maxes else []
        except Exception as e:
            raise CoordinationError(f"{type(e).__name__}: {e}") from e
        return summed, maxed

    def agree(self, values: Sequence[float]) -> list[float]:
        """Rank 0's ``values`` on every rank (a broadcast), so all ranks act alike.

        Raises:
            CoordinationError: A rank failed or the process group's timeout passed.
        """
        try:
            tensor = self._torch.tensor(
                [float(v) for v in values], dtype=self._torch.float64, device=self._device()
            )
            self._dist.broadcast(tensor, src=0)
            return [float(v) for v in tensor.cpu().tolist()]
        except Exception as e:
            raise CoordinationError(f"{type(e).__name__}: {e}") from e
