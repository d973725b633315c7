"""The engine of ``greenai run [options] -- CMD ...``: meter a whole command's run.

:func:`run_command` starts a :class:`~greenai.tracking.meter.Meter`, then the command as
a child process that inherits greenai's stdin, stdout, stderr, environment and
working directory, waits for it, stops the tracker and returns the child's exit
status the way a shell reports it, with the run's :class:`~greenai.tracking.result.Result`.

Signals. The child runs in greenai's own process group and session, as a shell
would run any command. That way it keeps the terminal: it can read stdin (a child
in a background process group would be stopped by SIGTTIN), ``pdb`` works, and
Ctrl-Z/``fg``/``bg`` move greenai and the child together as one job. A child in
its own foreground process group would need greenai to do a shell's job control
(``tcsetpgrp``, handing the terminal back on every stop), for no gain.

greenai forwards SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 to the
child: the child decides what they mean, greenai keeps waiting and still writes
its result afterwards. A terminal sends SIGINT (Ctrl-C) and SIGQUIT (Ctrl-\\) to
its whole foreground process group, so the child already has them when greenai is
in the terminal's foreground; forwarding them again would interrupt the child
twice (a ``KeyboardInterrupt`` in the middle of its own clean-up). So those two
are forwarded only when greenai is *not* the foreground process group of a
controlling terminal (no terminal, a background job, a job started by a script,
a scheduler or CI): there they can only have come from ``kill``, and the child got
nothing. uv forwards SIGINT only from the second one on instead, which swallows a
lone ``kill -INT`` in CI (astral-sh/uv#12108); the foreground test is checked when
the signal arrives, so a job moved with ``bg`` forwards again.

What this costs: ``kill -INT <greenai's pid>`` from another shell while greenai is
a terminal's foreground job is not forwarded (it cannot be told apart from
Ctrl-C without ``siginfo``, which Python's handlers do not get); send it to the
job instead, ``kill -INT -<pgid>``, as Ctrl-C does, or send SIGTERM. And a signal
sent to the whole process group by other means (``kill -TERM -<pgid>``, a shell
hanging up its jobs) reaches the child directly and through greenai, so twice.

Signals greenai ignores when it starts (``nohup`` sets SIGHUP to ignored; a
non-interactive shell's background jobs ignore SIGINT and SIGQUIT) are left
ignored, so the child inherits that too, as it would without greenai. Handlers
are installed only in the main thread (Python allows nothing else) and only on
POSIX; elsewhere the child is metered without forwarding. The previous handlers
are back in place before :func:`run_command` returns or raises.

What is metered: every device the tracker meters. GPUs (NVML) and RAPL are
machine-level sensors, so they see the child's work. The CPU estimate is
per-process (:class:`~greenai.devices.cpu_estimate.CpuEstimate`): it counts a
child's CPU time only once the child has exited and been waited for, which
:func:`run_command` does before stopping the tracker, so the run's total includes
the child's CPU time (and that of the descendants it waited for), while the live
display shows none of it until the end. The DRAM estimate is greenai's own
resident memory, not the child's.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from types import FrameType
from typing import TextIO

from greenai.core.units import format_elapsed, format_energy_status, format_power_w
from greenai.tracking.meter import Meter
from greenai.tracking.result import Result

logger = logging.getLogger(__name__)

FORWARDED_SIGNALS: tuple[signal.Signals, ...] = tuple(
    getattr(signal, name)
    for name in ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2")
    if hasattr(signal, name)
)
"""Signals greenai passes on to the child while it runs (those this platform has)."""

KEYBOARD_SIGNALS: frozenset[signal.Signals] = frozenset(
    s for s in FORWARDED_SIGNALS if s.name in ("SIGINT", "SIGQUIT")
)
"""Signals a terminal sends to its whole foreground process group (Ctrl-C, Ctrl-\\)."""

EXIT_NOT_FOUND = 127
"""Exit status a shell reports for a command it cannot find."""

EXIT_CANNOT_EXECUTE = 126
"""Exit status a shell reports for a command it found but cannot execute."""

_Handler = Callable[[int, FrameType | None], object] | int | signal.Handlers


class CommandError(ValueError):
    """The command could not be started (not found, not executable).

    Attributes:
        argv: The command line as given.
        exit_status: What a shell would exit with: :data:`EXIT_NOT_FOUND` (127)
            or :data:`EXIT_CANNOT_EXECUTE` (126), for ``greenai run`` to pass on.
    """

    def __init__(self, message: str, *, argv: Sequence[str], exit_status: int) -> None:
        super().__init__(message)
        self.argv = tuple(argv)
        self.exit_status = exit_status


def run_command(
    argv: Sequence[str],
    tracker: Meter,
    *,
    live: bool | None = None,
    live_stream: TextIO | None = None,
    live_period_s: float = 1.0,
) -> tuple[int, Result]:
    """Run ``argv`` as a child process and meter its whole run with ``tracker``.

    The tracker starts before the child (device probing takes a moment, and the
    child's start-up is part of its cost) and stops after the child has exited
    and been waited for (so the per-process CPU estimate includes the child's CPU
    time). Signals are forwarded as the module docstring explains, with the
    previous handlers restored on every way out.

    Args:
        argv: The command and its arguments (``["python", "train.py"]``); the
            command is looked up on ``PATH`` as a shell would.
        tracker: A tracker that has not been started; it is started and stopped
            here, and its outputs receive the run's result.
        live: Show a one-line status (elapsed time, current power, energy so far)
            on ``live_stream``, refreshed in place. Default: when ``live_stream``
            is a terminal. Nothing at all is written otherwise.
        live_stream: Where the status line goes. Default: ``sys.stderr``, so that
            the child's stdout stays clean.
        live_period_s: How often the status line is refreshed. Units: s.

    Returns:
        ``(exit_status, result)``: the child's exit code, or ``128 + N`` when a
        signal N killed it (a shell's ``$?``), and the run's result.

    Raises:
        CommandError: The command could not be started (a ``ValueError`` naming
            it, with the ``OSError`` as its cause). The tracker is stopped without
            calling its outputs: no command ran, so there is nothing to report.
        TypeError: ``argv`` is a string or holds something other than strings.
        ValueError: ``argv`` is empty or ``live_period_s`` is not a positive number.
    """
    args = _check_argv(argv)
    if not (
        isinstance(live_period_s, (int, float))
        and not isinstance(live_period_s, bool)
        and 0 < live_period_s < math.inf
    ):
        raise ValueError(
            f"live_period_s must be a positive number of seconds, got {live_period_s!r}"
        )
    stream = sys.stderr if live_stream is None else live_stream
    show = _isatty(stream) if live is None else bool(live)
    forwarder = _Forwarder()
    tracker.start()
    try:
        with forwarder.installed():
            try:
                child = subprocess.Popen(args)
            except OSError as e:
                raise _start_error(args, e) from e
            forwarder.attach(child)
            logger.debug("started %r as pid %d", args, child.pid)
            display = _LiveLine(stream, tracker, live_period_s) if show else None
            try:
                if display is not None:
                    display.start()
                child.wait()
            except BaseException:
                # Only a bug or an interrupt outside the main thread gets here: like
                # subprocess.run, leave no orphan behind.
                child.kill()
                child.wait()
                raise
            finally:
                if display is not None:
                    display.close()
    except BaseException:
        _abandon(tracker)
        raise
    result = tracker.stop()
    return _exit_status(child.returncode), result


def _check_argv(argv: Sequence[str]) -> list[str]:
    if isinstance(argv, (str, bytes)):
        raise TypeError(f"argv must be a sequence of strings, not a single string: {argv!r}")
    args = list(argv)
    if not args:
        raise ValueError("no command given: argv is empty")
    for i, arg in enumerate(args):
        if not isinstance(arg, str):
            raise TypeError(f"argv[{i}] must be a string, got {arg!r}")
    return args


def _start_error(args: Sequence[str], error: OSError) -> CommandError:
    """A clear error naming the command, with the exit status a shell would give."""
    command = args[0]
    if isinstance(error, FileNotFoundError):
        where = "" if os.sep in command else " on PATH"
        return CommandError(
            f"cannot run {command!r}: command not found{where}",
            argv=args,
            exit_status=EXIT_NOT_FOUND,
        )
    if isinstance(error, PermissionError):
        why = "permission denied (not an executable file?)"
    else:
        why = error.strerror or str(error)
    return CommandError(
        f"cannot run {command!r}: {why}", argv=args, exit_status=EXIT_CANNOT_EXECUTE
    )


def _exit_status(returncode: int) -> int:
    """A shell's ``$?``: the exit code, or 128 + N for a child killed by signal N."""
    return returncode if returncode >= 0 else 128 - returncode


def _abandon(tracker: Meter) -> None:
    """Stop the tracker without handing its result to its outputs (no command ran to report).

    Never raises: the error that got us here is the one the caller needs to see.
    """
    try:
        tracker.stop(write_outputs=False)
    except Exception:
        logger.debug("could not stop the tracker after a failed run", exc_info=True)


def _isatty(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):  # no isatty, or a closed stream
        return False


# --------------------------------------------------------------------- signals
class _Forwarder:
    """Passes the signals greenai receives on to the child, while installed.

    Signals that arrive before the child exists are held and sent once it has
    started; if it never starts, they are raised again in greenai once the
    previous handlers are back, so they act as they would have without greenai.
    """

    def __init__(self) -> None:
        self._child: subprocess.Popen[bytes] | None = None
        self._pending: list[signal.Signals] = []

    @contextmanager
    def installed(self) -> Iterator[None]:
        """Install the forwarding handlers for the block, then restore the previous ones."""
        previous: dict[signal.Signals, _Handler] = {}
        if os.name == "posix" and threading.current_thread() is threading.main_thread():
            for signum in FORWARDED_SIGNALS:
                handler = signal.getsignal(signum)
                # None: a handler installed outside Python, which could not be put back.
                # SIG_IGN: greenai ignores it, and the child inherits that (nohup).
                if handler is None or handler == signal.SIG_IGN:
                    continue
                previous[signum] = handler
                signal.signal(signum, self._on_signal)
        else:
            logger.debug("signals are not forwarded: not in the main thread of a POSIX process")
        try:
            yield
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            pending, self._pending = self._pending, []
            self._child = None
            for signum in pending:  # the child never started: act as greenai would have
                signal.raise_signal(signum)

    def attach(self, child: subprocess.Popen[bytes]) -> None:
        """Forward from now on to ``child``, starting with the signals held so far."""
        self._child = child
        pending, self._pending = self._pending, []
        for signum in pending:
            # They arrived before the child existed, so even a Ctrl-C missed it.
            _send(child, signum)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        sig = signal.Signals(signum)
        child = self._child
        if child is None:
            self._pending.append(sig)
        elif sig in KEYBOARD_SIGNALS and _terminal_sent_it_to(child):
            logger.debug("%s: from the terminal, which sent it to the child too", sig.name)
        else:
            _send(child, sig)


def _send(child: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    logger.debug("forwarding %s to pid %d", sig.name, child.pid)
    # A no-op once the child has been waited for, so a recycled pid is never signalled.
    child.send_signal(sig)


def _terminal_sent_it_to(child: subprocess.Popen[bytes]) -> bool:
    """Whether a SIGINT/SIGQUIT greenai got has most likely reached ``child`` from the terminal.

    True when the child is in greenai's process group and that group is the
    foreground process group of greenai's controlling terminal: the terminal sends
    Ctrl-C and Ctrl-\\ to every process of that group.
    """
    try:
        group = os.getpgrp()
        if os.getpgid(child.pid) != group:
            return False
        tty = os.open("/dev/tty", os.O_RDONLY | os.O_NOCTTY)  # the controlling terminal
    except OSError:  # no controlling terminal (ENXIO), or the child is gone
        return False
    try:
        return os.tcgetpgrp(tty) == group
    except OSError:
        return False
    finally:
        os.close(tty)


# --------------------------------------------------------------------- live view
def _live_reading(tracker: Meter) -> tuple[float, float]:
    """``(power_w, energy_j)``: total power at the latest sample and energy since start.

    Devices without a valid power reading (a failed sensor, or a counter's first
    sample, whose power is known only from the second) are left out of the power;
    NaN when no device has one yet.
    """
    snap = tracker.snapshot()
    known = [w for w in snap.power_w.values() if not math.isnan(w)]
    return (sum(known) if known else math.nan), snap.energy_j


class _LiveLine:
    """A status line refreshed in place on a terminal by a small thread, cleared at the end.

    It shares the terminal with the child: a line the child prints while the
    status is shown starts right after the status, and the next refresh draws the
    status on the child's next line. One short line, on stderr by default, keeps
    that harmless; pass ``live=False`` for clean logs. A stream that fails to write
    switches the display off, never the metering.
    """

    def __init__(self, stream: TextIO, tracker: Meter, period_s: float) -> None:
        self._stream = stream
        self._tracker = tracker
        self._period_s = period_s
        self._t0 = time.monotonic()
        self._shown = 0  # length of the line now on screen
        self._broken = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="greenai-live", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        """Stop refreshing, and erase the status line."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        if self._shown:
            self._write("\r" + " " * self._shown + "\r")
            self._shown = 0

    def _run(self) -> None:
        while not self._stop.wait(self._period_s) and not self._broken:
            self._draw()

    def _draw(self) -> None:
        power_w, energy_j = _live_reading(self._tracker)
        line = _format_status(time.monotonic() - self._t0, power_w, energy_j)
        width = _width(self._stream)
        if width is not None and width > 1:  # a pty nobody sized says 0 columns
            line = line[: width - 1]
        pad = " " * max(self._shown - len(line), 0)  # cover what is left of a longer line
        if self._write("\r" + line + pad):
            self._shown = len(line)

    def _write(self, text: str) -> bool:
        if self._broken:
            return False
        try:
            self._stream.write(text)
            self._stream.flush()
        except (OSError, ValueError):  # closed or broken stream: stop drawing, keep metering
            logger.debug("live display off: cannot write to %r", self._stream, exc_info=True)
            self._broken = True
            return False
        return True


def _format_status(elapsed_s: float, power_w: float, energy_j: float) -> str:
    """The live status line, e.g. ``greenai  0:01:05  431 W  28.1 kJ``. Units: s, W, J.

    Kept short, so that it fits an 80-column terminal with room to spare: a line
    that wraps cannot be redrawn in place with ``\\r``.
    """
    power = "-- W" if math.isnan(power_w) else format_power_w(power_w, decimals=0)
    return f"greenai  {format_elapsed(elapsed_s)}  {power}  {format_energy_status(energy_j)}"


def _width(stream: TextIO) -> int | None:
    """The terminal's width in columns, if the stream is one."""
    try:
        return os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, ValueError, OSError):  # not a real file, or not a terminal
        return None
