"""Surviving CUDA out-of-memory in a training loop driven by a batch-size controller.

**Retry contract of** :meth:`BatchSizeController.guard_oom
<greenai.control.batch_size.BatchSizeController.guard_oom>`: when the block
raises CUDA out-of-memory, the size is reported, the CUDA cache emptied and the
error suppressed; ``attempt.oom`` is then True and ``controller.batch_size`` is
smaller. The block must apply nothing before the error can happen (zero the
gradients first, step the optimizer last), so the loop redoes the same samples
in pieces of at most the new size (:meth:`~greenai.control.batch_size.BatchSizeController.split`).
Batches the DataLoader prepared before the change (``num_workers > 0``
prefetches) still have the old size: splitting every batch handles them. When
even the smallest candidate runs out of memory the error is not suppressed.

The loop (the same with ``run.step()`` of a :func:`greenai.track` run or without one)::

    with greenai.track("resnet") as run:
        controller = BatchSizeController(
            [32, 64, 128, 256], target=EnergyTarget(eta=0.5), job="resnet", tracker=run
        )
        loader = DataLoader(dataset, batch_sampler=AdaptiveBatchSampler(len(dataset), controller))
        for epoch in range(epochs):
            for x, y in loader:
                pending = controller.split(len(x))  # one piece, unless the size dropped
                while pending:
                    part = pending.pop(0)
                    with controller.guard_oom() as attempt, run.step(), controller.step(part):
                        optimizer.zero_grad()
                        loss_fn(model(x[part]), y[part]).backward()
                        optimizer.step()
                    if attempt.oom:  # nothing of this piece was applied: redo it smaller
                        pending[:0] = controller.split(part)

torch is never imported here: it is looked up in ``sys.modules``.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from types import TracebackType

logger = logging.getLogger(__name__)


def is_out_of_memory(error: BaseException) -> bool:
    """True for ``torch.cuda.OutOfMemoryError`` or a RuntimeError saying "out of memory"."""
    torch = sys.modules.get("torch")
    oom_type = getattr(getattr(torch, "cuda", None), "OutOfMemoryError", None)
    if isinstance(oom_type, type) and isinstance(error, oom_type):
        return True
    return isinstance(error, RuntimeError) and "out of memory" in str(error).lower()


def empty_cuda_cache() -> None:
    """Give cached CUDA blocks back, where torch is already imported and CUDA is up."""
    torch = sys.modules.get("torch")
    if torch is None:
        return
    try:
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            torch.cuda.empty_cache()
    except Exception:
        logger.debug("emptying the CUDA cache failed", exc_info=True)


class OomAttempt:
    """What :meth:`~greenai.control.batch_size.BatchSizeController.guard_oom` saw; read it
    after the ``with`` block.

    Args:
        batch_size: The size the block runs; None for ``current_size()`` at entry.
        current_size: The controller's batch size now.
        report_oom: Told the size that ran out of memory; raises RuntimeError when no
            smaller size is left.

    Attributes:
        oom: True when the block ran out of memory (and nothing of it should count).
        batch_size: The size that ran out of memory, when it did.
    """

    def __init__(
        self,
        batch_size: int | None,
        current_size: Callable[[], int],
        report_oom: Callable[[int], object],
    ) -> None:
        self._size = batch_size
        self._current_size = current_size
        self._report_oom = report_oom
        self.oom = False
        self.batch_size: int | None = None

    def __enter__(self) -> OomAttempt:
        if self._size is None:
            self._size = self._current_size()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        if exc is None or not is_out_of_memory(exc):
            return False
        assert self._size is not None
        self.oom, self.batch_size = True, self._size
        empty_cuda_cache()
        try:
            self._report_oom(self._size)
        except RuntimeError:
            return False  # even the smallest size fails: the error is the user's to see
        return True
