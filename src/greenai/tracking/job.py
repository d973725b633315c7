"""A multi-process job as one run: rank-local GPUs, every rank's figures gathered, one job result.

Under ``torchrun``, ``srun`` or ``mpirun`` each rank runs its own tracker:

* It meters the GPU local to its rank (``LOCAL_RANK`` modulo the GPUs it sees;
  the only one when it sees one), not every GPU of the node, unless told
  ``gpus=``. CPU packages and DRAM (RAPL) are the node's, so every rank reads them.
* At the end of a run, each rank publishes its result in the process group's
  key-value store (the ``torch.distributed`` store, whatever the backend, gloo or
  NCCL); the ranks that gather (rank 0, or all) wait for the others' results, at
  most ``gather_timeout_s``, and combine them. No collective is issued, so
  greenai can never fall out of step with the user's own collectives, and a rank
  that died or hangs costs the others at most the timeout: the job result is
  then partial and names the missing ranks.
* The gathering ranks combine the reports into the job result
  (:mod:`greenai.tracking.job_result`), counting a device that several ranks of one
  node read (a shared GPU, the CPU packages) once.
"""

from __future__ import annotations

import itertools
import logging
import math
import pickle
import socket
import threading
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import timedelta
from typing import Any, Literal

from greenai.core.forks import after_fork_in_child
from greenai.tracking.job_result import TIMELINE_POINTS, RankReport, combine
from greenai.tracking.launcher import RankInfo, rank_info
from greenai.tracking.launcher_metadata import launcher_metadata
from greenai.tracking.process_group import process_group
from greenai.tracking.result import PowerTimeline, Result

logger = logging.getLogger(__name__)

Gather = Literal["rank0", "all", "none"]
GATHER_MODES: tuple[Gather, ...] = ("rank0", "all", "none")
DEFAULT_GATHER_TIMEOUT_S = 60.0

_runs_lock = threading.Lock()
_runs_by_name: dict[str, int] = defaultdict(int)


def _forget_after_fork() -> None:
    """A lock no parent's thread holds, in a forked child."""
    global _runs_lock
    _runs_lock = threading.Lock()


after_fork_in_child(_forget_after_fork)


def local_gpus(info: RankInfo | None, visible: int) -> list[int] | None:
    """The CUDA indices a rank meters by default: its local rank's GPU; None for all.

    With one visible GPU (a launcher that gives each rank its own
    ``CUDA_VISIBLE_DEVICES``), that one. Ranks beyond the GPU count share them
    round robin, as ``local_rank % device_count`` code does.
    """
    if info is None or info.world_size < 2 or visible <= 1:
        return None
    return [info.local_rank % visible]


class JobContext:
    """This process's place in a multi-process job and the store its ranks share.

    Args:
        info: Rank, world size and local rank.
        store: The process group's ``torch.distributed`` store, or None when no
            process group is initialized (the run then stays local).
    """

    def __init__(self, info: RankInfo, store: Any) -> None:
        self.info = info
        self.store = store
        self.node = socket.gethostname()
        self.launcher = launcher_metadata()

    @classmethod
    def detect(cls) -> JobContext | None:
        """The job this process is a rank of, or None for a single process.

        The rank comes from an initialized default process group when the user has
        one (greenai never imports torch), else from the launcher's variables.
        """
        try:
            info = rank_info()
        except ValueError as e:  # a stray RANK=... must not stop the user's run
            logger.debug("launcher variables unreadable, not a job by them: %s", e)
            info = None
        store = None
        group = process_group()
        if group is not None:
            rank, world_size, store = group.rank, group.world_size, group.store()
            local = info.local_rank if info is not None else rank
            local_world = info.local_world_size if info is not None else None
            node_rank = info.node_rank if info is not None else None
            launcher = info.launcher if info is not None else "torch.distributed"
            info = RankInfo(rank, world_size, local, local_world, node_rank, launcher)
        if info is None or info.world_size < 2:
            return None
        return cls(info, store)

    def attach_store(self) -> None:
        """Pick up a process group initialized after the run started."""
        if self.store is None and (group := process_group()) is not None:
            rank, world_size, store = group.rank, group.world_size, group.store()
            if (rank, world_size) == (self.info.rank, self.info.world_size):
                self.store = store

    def metadata(self) -> dict[str, Any]:
        """This rank's place in the job, for its result's metadata."""
        return {
            "distributed": {
                "rank": self.info.rank,
                "world_size": self.info.world_size,
                "local_rank": self.info.local_rank,
                "node": self.node,
            }
        }

    def gather_job(
        self,
        report: RankReport,
        *,
        mode: Gather,
        timeout_s: float,
        account: Callable[[Result], Result],
    ) -> Result | None:
        """Publish this rank's report; where this rank holds the job result (``mode``),
        collect every rank's (waiting at most ``timeout_s``) and combine them.

        Returns the job result, or None on a rank that only publishes.

        Raises:
            RuntimeError: No process group, or its store cannot be reached (the
                rank hosting it died); the caller keeps the local result.
        """
        if self.store is None:
            raise RuntimeError("no torch.distributed process group is initialized")
        hold = mode == "all" or (mode == "rank0" and self.info.rank == 0)
        prefix = _key_prefix(report.result.name, self.launcher)
        keys = [f"{prefix}/rank{r}" for r in range(self.info.world_size)]
        report = _for_sending(report)  # the job holds every rank's result in one form
        self.store.set(keys[self.info.rank], pickle.dumps(report))
        if not hold:
            return None
        reports, missing = self._collect(report, keys, timeout_s)
        self._clean_up(prefix, keys, holders=self.info.world_size if mode == "all" else 1)
        return combine(
            reports,
            world_size=self.info.world_size,
            missing=missing,
            account=account,
            launcher=self.launcher,
        )

    def _collect(
        self, own: RankReport, keys: Sequence[str], timeout_s: float
    ) -> tuple[list[RankReport], dict[int, str]]:
        """Every rank's report that arrives within ``timeout_s``, and why the others are missing."""
        try:
            # c10d reads a zero timeout as "no timeout" in some stores: never pass one
            self.store.wait(list(keys), timedelta(seconds=max(timeout_s, 1e-3)))
        except Exception as e:  # a timeout, or the store's host died: take what is there
            logger.debug("waiting for the job's ranks: %r", e)
        reports: list[RankReport] = []
        missing: dict[int, str] = {}
        for r, key in enumerate(keys):
            if r == self.info.rank:
                reports.append(own)
                continue
            try:
                if not self.store.check([key]):
                    missing[r] = f"rank {r} did not report within {timeout_s:g} s"
                    continue
                received = pickle.loads(self.store.get(key))
                if not isinstance(received, RankReport) or received.rank != r:
                    raise TypeError(f"not rank {r}'s report: {type(received).__name__}")
                reports.append(received)
            except Exception as e:  # one unreadable rank must not lose the others
                missing[r] = f"rank {r}: its report could not be read ({type(e).__name__}: {e})"
        return reports, missing

    def _clean_up(self, prefix: str, keys: Sequence[str], *, holders: int) -> None:
        """Delete the run's keys once every gathering rank has read them."""
        try:
            if int(self.store.add(f"{prefix}/readers", 1)) == holders:
                for key in [*keys, f"{prefix}/readers"]:
                    self.store.delete_key(key)
        except Exception as e:  # a store that cannot delete: the keys stay, unread
            logger.debug("could not delete the job's keys: %r", e)


def _key_prefix(name: str | None, launcher: Mapping[str, Any]) -> str:
    """Store keys of this process's next run named ``name``; every rank counts alike.

    The launcher's restart count is part of it, so an elastic restart never reads
    the results of the attempt before it from the agent's long-lived store.
    """
    restart = launcher.get("torchrun", {}).get("restart_count", 0)
    with _runs_lock:
        _runs_by_name[name or ""] += 1
        count = _runs_by_name[name or ""]
    return f"greenai/{restart}/{name or ''}/{count}"


def _for_sending(report: RankReport) -> RankReport:
    """The report without window timelines (the job rebuilds them) and with at most
    :data:`TIMELINE_POINTS` samples per device."""
    return replace(report, result=_slim(report.result, top=True))


def _slim(result: Result, *, top: bool) -> Result:
    timeline = _decimate(result.timeline) if top else PowerTimeline((), {})
    return replace(
        result, timeline=timeline, windows=tuple(_slim(w, top=False) for w in result.windows)
    )


def _decimate(timeline: PowerTimeline, points: int = TIMELINE_POINTS) -> PowerTimeline:
    """At most ``points`` samples: means over consecutive buckets (NaNs ignored)."""
    import numpy as np

    n = len(timeline.times_s)
    if n <= points:
        return timeline
    edges = np.linspace(0, n, points + 1).astype(np.int64)
    times = np.asarray(timeline.times_s, dtype=np.float64)
    new_times = [float(times[a:b].mean()) for a, b in itertools.pairwise(edges)]
    power: dict[str, list[float]] = {}
    for device, values in timeline.power_w.items():
        v = np.asarray(values, dtype=np.float64)
        power[device] = [
            float(np.nanmean(v[a:b])) if np.isfinite(v[a:b]).any() else math.nan
            for a, b in itertools.pairwise(edges)
        ]
    return PowerTimeline(new_times, power)
