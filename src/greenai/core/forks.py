"""What a forked child must not inherit: locks held at the fork, and its parent's runs.

``os.fork`` (a DataLoader worker, ``multiprocessing`` with the fork start method) copies
the process but only the thread that forked: a lock another thread (a tracker's sampler)
held at that instant stays held in the child for ever, and what that thread kept (a
sampler's timeline, a cached device's counters) describes the parent. So every piece of
greenai with such state hands it to this module, and the child starts with fresh locks
and none of its parent's runs. One mechanism, ``os.register_at_fork``; nothing happens
where it is missing (Windows, which cannot fork).
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Callable
from typing import Protocol


class RenewedInChild(Protocol):
    """An object that replaces its locks and forgets its parent's state in a forked child."""

    def _after_fork_in_child(self) -> None:
        """Runs in the child, right after the fork, before any of its own code; must not block."""
        ...


def after_fork_in_child(callback: Callable[[], None]) -> None:
    """Call ``callback`` in every child forked from now on (for module-level state).

    The callback must not take any lock: it runs before the child has fresh ones.
    """
    if hasattr(os, "register_at_fork"):  # POSIX
        os.register_at_fork(after_in_child=callback)


_renewed: weakref.WeakSet[RenewedInChild] = weakref.WeakSet()


def renew_in_child(obj: RenewedInChild) -> None:
    """Call ``obj._after_fork_in_child()`` in every child forked while ``obj`` lives."""
    _renewed.add(obj)


def _renew_all() -> None:
    for obj in list(_renewed):
        obj._after_fork_in_child()


after_fork_in_child(_renew_all)
