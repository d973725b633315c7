"""A function decorated by a tracker (``@greenai.track``): its type, and the wrapper itself."""

from __future__ import annotations

import functools
import types
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, Protocol, TypeVar

from greenai.tracking.result import Result

if TYPE_CHECKING:
    from greenai.tracking.meter import Meter

P = ParamSpec("P")
R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)


class Tracked(Protocol[P, R_co]):
    """A decorated function: each call is its own run.

    Attributes:
        result: The result of the last call's run (also when the call raised), None
            before the first call. Each call replaces it.
    """

    @property
    def result(self) -> Result | None: ...

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R_co: ...


class TrackedFunction(Generic[P, R]):
    """Runs ``fn`` inside a new run at each call; ``result`` is the last call's.

    A call ends its run without waiting for its result; reading :attr:`result` waits for
    it if needed (see :meth:`greenai.tracking.meter.Meter.end`). Binds as a method, and
    pickles by name like the function it wraps (for ``multiprocessing``).
    """

    def __init__(self, fn: Callable[P, R], new_run: Callable[[], Meter]) -> None:
        functools.update_wrapper(self, fn)
        self._fn = fn
        self._new_run = new_run
        self._last: Meter | None = None

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        run = self._last = self._new_run()
        with run:
            return self._fn(*args, **kwargs)

    @property
    def result(self) -> Result | None:
        """The last call's result (None before the first call)."""
        return None if self._last is None else self._last.result

    def __get__(self, obj: object, objtype: type | None = None) -> Any:
        return self if obj is None else types.MethodType(self, obj)

    def __reduce__(self) -> str:
        return str(getattr(self._fn, "__qualname__", ""))

    def __repr__(self) -> str:
        return f"<tracked {self._fn!r}>"
