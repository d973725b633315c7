"""The type of a function decorated by a tracker (``@greenai.track``)."""

from __future__ import annotations

from typing import ParamSpec, Protocol, TypeVar

from greenai.tracking.result import Result

P = ParamSpec("P")
R_co = TypeVar("R_co", covariant=True)


class Tracked(Protocol[P, R_co]):
    """A decorated function: each call is its own run.

    Attributes:
        result: The result of the last call's run (also when the call raised), None
            before the first call. Each call replaces it.
    """

    result: Result | None

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R_co: ...
