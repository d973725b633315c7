"""A rank's run result at its stop, in a multi-process job: its own, or the job's.

The :class:`~greenai.tracking.meter.Meter` calls :func:`gather_run` once its own result is
final; :mod:`greenai.tracking.job` moves the figures between the ranks.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace

from greenai.core.errors import GatherWarning, warn
from greenai.tracking.job import Gather, JobContext
from greenai.tracking.job_result import RankReport, identity
from greenai.tracking.result import Result
from greenai.tracking.run_samples import RunSamples

logger = logging.getLogger(__name__)


def gather_run(
    job: JobContext,
    samples: RunSamples,
    result: Result,
    *,
    mode: Gather,
    timeout_s: float,
    account: Callable[[Result], Result],
) -> tuple[Result, bool]:
    """The result this rank keeps (the job's, where this rank holds it), and whether this
    rank writes the run's reports: rank 0, or every rank when the job's results cannot be
    gathered (no process group)."""
    job.attach_store()
    if job.store is None:
        logger.debug("no torch.distributed process group: each rank keeps its own result")
        return result, True
    report = RankReport(
        rank=job.info.rank,
        node=job.node,
        local_rank=job.info.local_rank,
        result=result,
        devices={m.name: identity(m.device) for m in samples.meters},
    )
    try:
        combined = job.gather_job(report, mode=mode, timeout_s=timeout_s, account=account)
    except Exception as e:  # the store's host died: this rank keeps its own figures
        logger.debug("gathering the job failed", exc_info=True)
        reason = f"the job's results could not be gathered ({type(e).__name__}: {e})"
        result = replace(result, partial=True, partial_reasons=(*result.partial_reasons, reason))
        warn(f"greenai: {reason}; this rank's own result is kept", GatherWarning)
        return result, job.info.rank == 0
    if combined is None:
        return result, False
    missing = combined.metadata["job"]["ranks_missing"]
    if missing:
        warn(
            f"greenai: ranks {missing} of the job did not report; the job result is partial",
            GatherWarning,
        )
    return combined, job.info.rank == 0
