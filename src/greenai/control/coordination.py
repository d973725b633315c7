"""Controllers of one run take turns measuring.

A batch-size controller measures joules per sample at each size it explores; the
energy-target governor measures joules per step at each power limit it profiles. Measured
at once, each would read the other's changes as its own. So on one run the batch size is
explored first, at the limit in force (the governor's first candidate: the highest), and
the power limits are profiled at the chosen size; the batch-size controller checks its
choice again (:class:`~greenai.control.batch_size.BatchSizeController`'s refreshes) only
while the governor is not profiling. A controller says when it measures with
:func:`begin` / :func:`end` and asks :func:`others` before measuring.
"""

from __future__ import annotations

import threading
import weakref

_measuring: weakref.WeakKeyDictionary[object, set[str]] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def begin(run: object, who: str) -> None:
    """``who`` ("batch_size", "power_limit") measures on ``run`` (its tracker) from now on."""
    with _lock:
        _measuring.setdefault(run, set()).add(who)


def end(run: object, who: str) -> None:
    """``who`` no longer measures on ``run``."""
    with _lock:
        _measuring.get(run, set()).discard(who)


def others(run: object, who: str) -> bool:
    """Whether a controller other than ``who`` measures on ``run`` now."""
    with _lock:
        return bool(_measuring.get(run, set()) - {who})


def clear(run: object) -> None:
    """A new run on ``run`` (a tracker started again): nobody measures on it yet."""
    with _lock:
        _measuring.pop(run, None)
