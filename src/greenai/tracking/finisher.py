"""Finishes ended runs in the background, so that ending a run never waits for hardware.

A run's last boundary on a GPU may need the energy counter's next updates (up to about one
update period after the run ended: see :mod:`greenai.tracking.staleness`). The run ends at
once; its result, its observers' last call and its reports are made here, by a few
threads ("greenai-finisher") that run while there is work and then end. Reading the run's
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

MAX_THREADS = 4
"""Threads that finish runs at once: a run whose outputs are slow (a metrics push to an
unreachable gateway) does not hold back the others' results."""

_lock = threading.Lock()
_jobs: deque[Callable[[], None]] = deque()
_threads: set[threading.Thread] = set()
_busy = 0  # threads running a job now
_at_exit = False  # _exit() is registered with atexit
_shows: list[weakref.WeakMethod[Callable[[], None]]] = []


def submit(job: Callable[[], None]) -> None:
    """Run ``job`` in a finisher thread: an idle one, else a new one (up to
    :data:`MAX_THREADS`), else after the jobs queued before it.

    ``job`` must be safe to run twice, or concurrently with itself (the run's finishing
    is: it happens once, under the run's lock); it must not raise.
    """
    global _at_exit
    with _lock:
        _jobs.append(job)
        if not _at_exit:
            atexit.register(_exit)
            _at_exit = True
        if len(_threads) - _busy < len(_jobs) and len(_threads) < MAX_THREADS:
            thread = threading.Thread(target=_run, name=THREAD_NAME, daemon=True)
            _threads.add(thread)
            thread.start()


def _run() -> None:
    global _busy
    me = threading.current_thread()
    while True:
        with _lock:
            if not _jobs:
                _threads.discard(me)
                return
            job = _jobs.popleft()
            _busy += 1
        try:
            _call(job)
        finally:
            with _lock:
                _busy -= 1


def _call(job: Callable[[], None]) -> None:
    try:
        job()
    except Exception:  # a job reports its own failures; this must never kill the thread
        logger.debug("finisher job %r failed", job, exc_info=True)


def drain() -> None:
    """Finish every queued run now, in the calling thread, then wait for those the finisher
    threads are finishing."""
    while True:
        with _lock:
            job = _jobs.popleft() if _jobs else None
            threads = list(_threads)
        if job is None:
            break
        _call(job)
    for thread in threads:
        if thread is not threading.current_thread():
            thread.join()


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
    global _lock, _jobs, _threads, _busy, _shows
    _lock = threading.Lock()
    _jobs = deque()
    _threads = set()
    _busy = 0
    _shows = []


after_fork_in_child(_forget_after_fork)
