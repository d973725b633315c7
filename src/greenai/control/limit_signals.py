"""Restoring power limits on the signals that end a process.

``SIGINT`` raises ``KeyboardInterrupt`` in Python, so the guards' ``with`` blocks and
``atexit`` restore on it. ``SIGTERM``, ``SIGHUP`` and ``SIGQUIT`` end the process without
either, so while any guard holds a changed limit one handler for them (installed from the
main thread, where Python allows it) restores every guard's limits and then does what the
signal did before: calls the handler that was there, or ends the process with the signal's
own status (and core dump, for ``SIGQUIT``). A signal that was ignored stays ignored.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

logger = logging.getLogger(__name__)

SIGNALS: tuple[signal.Signals, ...] = tuple(
    getattr(signal, name) for name in ("SIGTERM", "SIGHUP", "SIGQUIT") if hasattr(signal, name)
)

_Handler = Callable[[int, FrameType | None], Any] | int | None

_previous: dict[int, _Handler] = {}  # signal -> the handler ours replaced
_restore: Callable[[], None] | None = None


def install(restore: Callable[[], None]) -> None:
    """Call ``restore`` on each of :data:`SIGNALS` before its previous action; idempotent.
    Outside the main thread Python cannot install handlers: nothing is done (``atexit``
    and the ``with`` blocks still restore)."""
    global _restore
    _restore = restore
    if threading.current_thread() is not threading.main_thread():
        logger.debug("not in the main thread: no signal handlers for power limits")
        return
    for signum in SIGNALS:
        if signum in _previous:
            continue
        previous = signal.getsignal(signum)
        if previous == signal.SIG_IGN:
            continue  # this signal does not end the process: nothing to restore on it
        signal.signal(signum, _on_signal)
        _previous[signum] = previous


def uninstall() -> None:
    """Put back the handlers ours replaced (where ours is still the one installed)."""
    if threading.current_thread() is not threading.main_thread():
        return
    for signum in list(_previous):
        _put_back(signum)


def _put_back(signum: int) -> _Handler:
    previous = _previous.pop(signum, None)
    try:
        if signal.getsignal(signum) == _on_signal:
            signal.signal(signum, previous if previous is not None else signal.SIG_DFL)
    except ValueError as e:  # not in the main thread
        logger.debug("could not put back the handler of signal %d: %r", signum, e)
    return previous


def _on_signal(signum: int, frame: FrameType | None) -> None:
    """Restore every guarded limit, then let the signal do what it did before."""
    if _restore is not None:
        _restore()
    previous = _put_back(signum)
    if callable(previous):
        previous(signum, frame)
        return
    # the default action: end the process with the signal's own status, as if we weren't here
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)
