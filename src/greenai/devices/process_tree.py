"""The processes a run is charged for: this one and its live descendants.

Both estimates (:mod:`greenai.devices.cpu_estimate`) charge the whole tree, so
a run's DataLoader workers, or the command ``greenai run`` meters, count while
they run, not only once they exit and are waited for.
"""

from __future__ import annotations

import math
import os
import threading
import time

import psutil

from greenai.core.forks import renew_in_child

DESCENDANTS_REFRESH_S = 1.0
"""How often the list of this process's descendants is rescanned (a scan walks /proc)."""


class ProcessTree:
    """This process and its live descendants (DataLoader workers, a metered command).

    The estimates charge the whole tree: a run's worker processes are part of its
    cost. Scanning for descendants walks every process on the machine, so the
    list is refreshed at most every :data:`DESCENDANTS_REFRESH_S`; reading the
    listed processes' times and memory is cheap.
    """

    def __init__(self) -> None:
        self._children: list[psutil.Process] = []
        self._scanned_at = -math.inf
        self._lock = threading.Lock()
        renew_in_child(self)

    def _after_fork_in_child(self) -> None:
        """A forked child is a new tree: its parent's sampler may have held the lock, and
        the descendants listed are the parent's (the child itself and its siblings)."""
        self._lock = threading.Lock()
        self._children = []
        self._scanned_at = -math.inf

    def _descendants(self) -> list[psutil.Process]:
        with self._lock:
            now = time.monotonic()
            if now - self._scanned_at >= DESCENDANTS_REFRESH_S:
                try:
                    self._children = psutil.Process().children(recursive=True)
                except psutil.Error:
                    self._children = []  # unreadable: charge this process alone
                self._scanned_at = now
            return list(self._children)

    def cpu_s(self) -> float:
        """CPU time of the tree: this process (all threads), the children it waited for,
        and each live descendant with the children it waited for. Units: s."""
        t = os.times()
        total = t.user + t.system + t.children_user + t.children_system
        for child in self._descendants():
            try:
                c = child.cpu_times()
            except psutil.Error:
                continue  # exited: its time reaches os.times() once it is waited for
            total += c.user + c.system + c.children_user + c.children_system
        return total

    def rss_bytes(self) -> int:
        """Resident memory of the tree (pages shared between processes count in each)."""
        total = int(psutil.Process().memory_info().rss)
        for child in self._descendants():
            try:
                total += int(child.memory_info().rss)
            except psutil.Error:
                continue
        return total
