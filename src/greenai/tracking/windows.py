"""A run's windows and steps: the tree of spans, the public :class:`Window`, the steps' times.

The run itself is the root :class:`Span` of its :class:`Windows`; a window is a span
under the nested window open when it began (or under the root; keyed windows, which may
overlap, always are). A span's result is computed once (:mod:`greenai.tracking.compute`)
and kept. A step is lighter: :class:`StepMark` hands its times to the run's step log
(:mod:`~greenai.tracking.step_log`).
"""

from __future__ import annotations

import operator
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING

from greenai.core.clock import Clock
from greenai.tracking.readings import Mark
from greenai.tracking.result import Result

if TYPE_CHECKING:
    from greenai.tracking.observer import RunObserver
    from greenai.tracking.run_samples import RunSamples
    from greenai.tracking.step_log import StepLog


class Span:
    """One window (or the whole run): its boundaries, the windows inside it, its result."""

    __slots__ = ("children", "end", "name", "result", "start")

    def __init__(self, name: str | None, start: Mark) -> None:
        self.name = name
        self.start = start
        self.end: Mark | None = None
        self.children: list[Span] = []
        self.result: Result | None = None


def walk(span: Span) -> Iterator[Span]:
    """Every window under ``span``, depth first, in start order."""
    for child in span.children:
        yield child
        yield from walk(child)


def step_work(samples: int | None, tokens: int | None) -> tuple[int, int]:
    """``run.step(samples=, tokens=)``'s counts, checked (None: 0, not said).

    Raises:
        ValueError: A count is not a whole number >= 0 (the message names it).
    """
    counts = []
    for name, value in (("samples", samples), ("tokens", tokens)):
        if value is None:
            counts.append(0)
            continue
        try:  # any integer type (numpy's too), never a bool or a float
            count = -1 if isinstance(value, bool) else operator.index(value)
        except TypeError:
            count = -1
        if count < 0:
            raise ValueError(f"{name} must be a whole number >= 0, got {value!r}")
        counts.append(count)
    return counts[0], counts[1]


class StepMark:
    """One step of a run, as a context manager (see :meth:`greenai.tracking.meter.Meter.step`).

    Args:
        steps: The run's steps, added to when the step ends.
        samples: The run's samples (the steps' energy comes from them).
        observers: Told of each step that ends normally.
        inert: True when the run is not this process's (a forked child): nothing is marked.
        work: The samples and tokens the step processes (0: not said).
    """

    __slots__ = ("_clock", "_inert", "_observers", "_samples", "_steps", "_t0", "_work")

    def __init__(
        self,
        steps: StepLog,
        samples: RunSamples,
        observers: Sequence[RunObserver],
        *,
        inert: Callable[[], bool],
        work: tuple[int, int] = (0, 0),
    ) -> None:
        self._steps = steps
        self._work = work
        self._samples = samples
        self._clock: Clock = samples.clock
        self._observers = observers
        self._inert = inert
        self._t0 = 0.0

    def count(self, *, samples: int | None = None, tokens: int | None = None) -> None:
        """Add work the step did, once it is known (tokens a ``generate`` made), before the
        step ends. Raises ValueError for a count that is not a whole number >= 0."""
        more = step_work(samples, tokens)
        self._work = (self._work[0] + more[0], self._work[1] + more[1])

    def __enter__(self) -> StepMark:
        self._t0 = self._clock.now()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        if self._inert():
            return  # the parent's run: not this process's to mark
        t1 = self._clock.now()
        self._steps.add(self._t0, t1, self._samples, self._work)
        if exc_type is None:
            for observer in self._observers:
                observer.step_ended(self._t0, t1)


class Windows:
    """A run's tree of windows: the run itself (``root``), the nested windows open now and
    the keyed ones (:meth:`begin`/:meth:`end`).

    Args:
        root: The run, begun.
        mark: Reads a window boundary: synchronizes, timestamps and reads the counters.
        finalize: An ended span's result.
        lock: Guards the tree; the tracker's readings share it.
        steps: The run's steps: each window (and the run) gathers its own from its start.
    """

    def __init__(
        self,
        root: Span,
        *,
        mark: Callable[[], Mark],
        finalize: Callable[[Span], Result],
        lock: threading.RLock,
        steps: StepLog,
    ) -> None:
        self.root = root
        self._steps = steps
        steps.collect(root)
        self._mark = mark
        self._finalize = finalize
        self._lock = lock
        self._stack: list[Span] = []  # nested windows open now, innermost last
        self._keyed: dict[str, Span] = {}

    def open(self, name: str | None, *, nested: bool) -> Span:
        """Begin a window: under the innermost open nested window (or the run)."""
        span = Span(name, self._mark())
        self._steps.collect(span)
        with self._lock:
            parent = self._stack[-1] if nested and self._stack else self.root
            parent.children.append(span)
            if nested:
                self._stack.append(span)
        return span

    def close(self, span: Span) -> None:
        """End a window (once)."""
        if span.end is not None:
            return
        span.end = self._mark()
        with self._lock:
            if span in self._stack:
                self._stack.remove(span)

    def result(self, span: Span) -> Result:
        """The ended window's result."""
        return self._finalize(span)

    def begin(self, key: str) -> None:
        """Open a window that may overlap others, known by ``key`` until :meth:`end`."""
        if key in self._keyed:
            raise ValueError(f"a window with key {key!r} is already open")
        self._keyed[key] = self.open(key, nested=False)

    def end(self, key: str) -> Result:
        """Close the window opened with ``begin(key)`` and return its result."""
        try:
            span = self._keyed.pop(key)
        except KeyError:
            raise KeyError(
                f"no open window with key {key!r} (open: {sorted(self._keyed)})"
            ) from None
        self.close(span)
        return self._finalize(span)

    def open_spans(self) -> list[Span]:
        """The windows open now: the nested ones, outermost first, then the keyed ones."""
        return [*self._stack, *self._keyed.values()]

    def close_all(self) -> None:
        """End every open window, innermost first, then the run."""
        for span in [*reversed(self._stack), *self._keyed.values()]:
            self.close(span)
        self._keyed.clear()
        self.root.end = self._mark()


class Window:
    """A named phase of a run. Its :attr:`result` is ready once the window has ended."""

    def __init__(self, windows: Windows, name: str) -> None:
        self._windows = windows
        self.name = name
        self._span: Span | None = None

    def __enter__(self) -> Window:
        self._span = self._windows.open(self.name, nested=True)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._span is not None
        self._windows.close(self._span)

    @property
    def result(self) -> Result:
        """The window's energy (waits only if a GPU counter has not updated since the start)."""
        if self._span is None or self._span.end is None:
            raise RuntimeError(f"window {self.name!r} has not ended yet")
        return self._windows.result(self._span)
