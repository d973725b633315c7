"""Finishes ended runs in the background, so that ending a run never waits for hardware.

A run's last boundary on a GPU may need the energy counter's next updates (up to about one
update period after the run ended: see :mod:`greenai.tracking.staleness`). The run ends at
once; its result, its observers' last call and its reports are made here, by one
thread ("greenai-finisher") that runs while there is work and then ends. Reading the run's
result before then does the work in the reader's thread instead (each run is finished
once, under its own lock). At interpreter exit every queued run is finished, so nothing a
run should have written is lost, and the warnings of runs whose result was never read are
shown; a forked child starts with an empty queue (the parent's
runs are the parent's to finish).
"""

from __future__ import annotations

import atexit
import logging
import threading
import weakref
from collections import deque
from collections.abc import Callable

from greenai.core.forks import after_fork_in_child

logger = logging.getLogger(__name__)

THREAD_NAME = "greenai-finisher"

_lock = threading.Lock()
_jobs: deque[Callable[[], None]] = deque()
_thread: threading.Thread | None = None
_at_exit = False  # _exit() is registered with atexit
_shows: list[weakref.WeakMethod[Callable[[], None]]] = []


def submit(job: Callable[[], None]) -> None:
    """Run ``job`` in the finisher's thread, after the jobs queued before it.

    ``job`` must be safe to run twice, or concurrently with itself (the run's finishing
    is: it happens once, under the run's lock); it must not raise.
    """
    global _thread, _at_exit
    with _lock:
        _jobs.append(job)
        if not _at_exit:
            atexit.register(_exit)
            _at_exit = True
        if _thread is None:
            _thread = threading.Thread(target=_run, name=THREAD_NAME, daemon=True)
            _thread.start()


def _run() -> None:
    global _thread
    while True:
        with _lock:
            if not _jobs:
                _thread = None
                return
            job = _jobs.popleft()
        _call(job)


def _call(job: Callable[[], None]) -> None:
    try:
        job()
    except Exception:  # a job reports its own failures; this must never kill the thread
        logger.debug("finisher job %r failed", job, exc_info=True)


def drain(timeout_s: float | None = None) -> None:
    """Finish every queued run now, in the calling thread, then wait for the one the
    finisher's thread may be finishing (at most ``timeout_s``; None: until it is done)."""
    while True:
        with _lock:
            job = _jobs.popleft() if _jobs else None
            thread = _thread
        if job is None:
            break
        _call(job)
    if thread is not None and thread is not threading.current_thread():
        thread.join(timeout_s)


def show_at_exit(show: Callable[[], None]) -> None:
    """Call the bound method ``show`` at exit, if its object still lives then (a run's kept
    warnings, when its result was never read)."""
    with _lock:
        _shows[:] = [ref for ref in _shows if ref() is not None]
        _shows.append(weakref.WeakMethod(show))


def _exit() -> None:
    drain()
    for ref in _shows:
        show = ref()
        if show is None:
            continue
        try:
            show()
        except Exception:  # e.g. -W error at exit: nothing is left to lose
            logger.debug("showing kept warnings at exit failed", exc_info=True)


def _forget_after_fork() -> None:
    """The parent's queue and thread did not follow it into the child."""
    global _lock, _jobs, _thread, _shows
    _lock = threading.Lock()
    _jobs = deque()
    _thread = None
    _shows = []


after_fork_in_child(_forget_after_fork)
