"""What earlier runs of a job learned about its batch sizes, kept in a local JSON file.

Per job and GPU model (the key): the measurements, the smallest size
that ran out of memory and the choice, in ``$GREENAI_STATE_DIR/batch_sizes``
(or ``$XDG_STATE_HOME/greenai/batch_sizes``), next to the power profiles. A
:class:`~greenai.control.batch_size.BatchSizeController` explores only the sizes
its file does not know. Delete the file to measure again (after a driver, model
or data change). Never raises on I/O: a file that cannot be read is measured
again, one that cannot be written is only lost for the next run (both logged at
DEBUG).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

from greenai.control.batch_choice import SizePoint, check_size
from greenai.core.files import write_atomic
from greenai.core.state import state_dir

logger = logging.getLogger(__name__)

_FORMAT = "greenai-batch-size/1"


def default_store_dir() -> Path:
    """``$GREENAI_STATE_DIR/batch_sizes``, else ``$XDG_STATE_HOME/greenai/batch_sizes``.

    The same state folder as the power profiles and the limit journal.
    """
    return state_dir() / "batch_sizes"


class Learned(NamedTuple):
    """What a store held: the measured sizes and the smallest that ran out of memory."""

    points: dict[int, SizePoint]
    infeasible_from: int | None


def default_store_path(job: str, key: dict[str, Any]) -> Path:
    """The file for ``job`` and ``key`` in :func:`default_store_dir`."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in job)[:40]
    return default_store_dir() / f"{safe}-{digest}.json"


def load_learned(path: Path, key: dict[str, Any]) -> Learned | None:
    """What earlier runs learned under ``key``; None when nothing (or another key's, or
    unreadable)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("format") != _FORMAT or data.get("key") != key:
            return None
        points = {
            int(d["batch_size"]): SizePoint(
                int(d["batch_size"]), float(d["j_per_sample"]), float(d["s_per_sample"])
            )
            for d in data["sizes"]
        }
        infeasible = data.get("infeasible_from")
        infeasible = None if infeasible is None else check_size("infeasible_from", infeasible)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        logger.debug("unreadable batch-size store %s", path, exc_info=True)
        return None
    return Learned(points, infeasible)


def save_learned(
    path: Path,
    key: dict[str, Any],
    points: Mapping[int, SizePoint],
    infeasible_from: int | None,
    choice: int | None,
    mode: str,
) -> None:
    """Write what is known under ``key``, replacing the file atomically; a failure only
    loses it."""
    data = {
        "format": _FORMAT,
        "key": key,
        "sizes": [vars(points[s]) for s in sorted(points)],
        "infeasible_from": infeasible_from,
        "choice": choice,
        "mode": mode,
    }
    try:
        write_atomic(path, json.dumps(data, indent=1).encode())
    except OSError:
        logger.debug("could not save the batch-size store %s", path, exc_info=True)


class SizeStore:
    """One job's file of what it learned (or none, when ``reuse`` is off)."""

    def __init__(
        self, job: str, key: dict[str, Any], store_path: Path | None, *, reuse: bool
    ) -> None:
        self.path = store_path if store_path is not None else default_store_path(job, key)
        self._key = key
        self._reuse = reuse

    def load(self) -> Learned | None:
        """What earlier runs learned; None when nothing (or reuse is off)."""
        return load_learned(self.path, self._key) if self._reuse else None

    def save(
        self,
        points: Mapping[int, SizePoint],
        infeasible_from: int | None,
        choice: int | None,
        mode: str,
    ) -> None:
        """Write what is known (nothing when reuse is off); a failure only loses it."""
        if self._reuse:
            save_learned(self.path, self._key, points, infeasible_from, choice, mode)
