"""A DataLoader ``batch_sampler`` whose batches follow a controller's batch size.

:class:`AdaptiveBatchSampler` hands the current choice of a
:class:`~greenai.control.batch_size.BatchSizeController` to a
``torch.utils.data.DataLoader``; it imports without torch.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sized
from typing import Any

from greenai.control.batch_size import BatchSizeController


class AdaptiveBatchSampler:
    """Batches of indices whose length follows ``controller.batch_size`` as it changes.

    Pass it as a DataLoader's ``batch_sampler``: the size is read as each batch is
    made, so with ``num_workers=0`` a change applies to the very next batch (with
    workers, after the batches already prefetched). Every index of an epoch is
    yielded exactly once, whatever the changes; with ``drop_last`` the short last
    batch is left out.

    It implements torch's ``Sampler[list[int]]`` protocol (``__iter__``, ``__len__``)
    without subclassing it, so this module imports without torch; DataLoader takes
    any such iterable.

    Args:
        source: The dataset's length (indices ``0 .. n-1``) or a sampler of indices
            (any iterable of ints, e.g. ``DistributedSampler``), whose order is kept.
        controller: Gives the batch size.
        drop_last: Leave out the last batch when it is short.
        shuffle: Shuffle the indices each epoch (only with a length; needs torch).
        generator: ``torch.Generator`` for the shuffle; None seeds one at random
            per epoch, like ``RandomSampler``.
    """

    def __init__(
        self,
        source: int | Iterable[int],
        controller: BatchSizeController,
        *,
        drop_last: bool = False,
        shuffle: bool = False,
        generator: Any = None,
    ) -> None:
        if isinstance(source, bool) or (isinstance(source, int) and source < 0):
            raise ValueError(f"source must be a dataset length >= 0 or a sampler, got {source!r}")
        if not isinstance(source, int) and shuffle:
            raise ValueError("shuffle=True needs a dataset length; a sampler sets its own order")
        if not isinstance(controller, BatchSizeController):
            raise TypeError(f"controller must be a BatchSizeController, got {controller!r}")
        self.source = source
        self.controller = controller
        self.drop_last = bool(drop_last)
        self.shuffle = bool(shuffle)
        self.generator = generator

    def _indices(self) -> Iterator[int]:
        if not isinstance(self.source, int):
            return iter(self.source)
        if not self.shuffle:
            return iter(range(self.source))
        import torch

        generator = self.generator
        if generator is None:
            generator = torch.Generator()
            generator.manual_seed(int(torch.empty((), dtype=torch.int64).random_().item()))
        return iter(torch.randperm(self.source, generator=generator).tolist())

    def __iter__(self) -> Iterator[list[int]]:
        """Yield the epoch's indices in batches of the controller's current size."""
        batch: list[int] = []
        size = 0
        for index in self._indices():
            if not batch:
                size = self.controller.batch_size
            batch.append(int(index))
            if len(batch) >= size:
                yield batch
                batch = []
        if batch and not self.drop_last:
            yield batch

    def __len__(self) -> int:
        """An estimate: the batches of an epoch at the current size.

        Sizes chosen later change the true count, so progress bars and schedulers
        reading it see the count at the time of the call.

        Raises:
            TypeError: The sampler given as ``source`` has no length.
        """
        if isinstance(self.source, int):
            n = self.source
        elif isinstance(self.source, Sized):
            n = len(self.source)
        else:
            raise TypeError("AdaptiveBatchSampler over a sampler without a length has no len()")
        size = self.controller.batch_size
        return n // size if self.drop_last else -(-n // size)
