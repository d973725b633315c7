"""GPU power-limit registers kept in a file, so that several processes see one GPU.

A real GPU's power limit is one register that every process on the machine reads and
writes; a fake GPU lives in one process. :class:`LimitRegister` stands in for the register
across processes: a JSON file ``{"limits_w": {uuid: watts}, "permitted": bool}``, read and
written under ``flock``. ``permitted`` False makes setting a limit fail with
``NVML_ERROR_NO_PERMISSION`` (a permission withdrawn mid-run).
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


class LimitRegister:
    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    @contextmanager
    def _state(self) -> Iterator[dict[str, Any]]:
        """The file's content under an exclusive lock; written back when the block ends."""
        fd = os.open(self.path.with_suffix(".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                state = json.loads(self.path.read_text(encoding="utf-8"))
            except FileNotFoundError:
                state = {"limits_w": {}, "permitted": True}
            before = json.dumps(state, sort_keys=True)
            yield state
            if json.dumps(state, sort_keys=True) != before:
                tmp = self.path.with_suffix(".tmp")
                tmp.write_text(json.dumps(state), encoding="utf-8")
                os.replace(tmp, self.path)
        finally:
            os.close(fd)

    def limit_w(self, uuid: str, default_w: float) -> float:
        with self._state() as state:
            return float(state["limits_w"].get(uuid, default_w))

    def set_limit_w(self, uuid: str, limit_w: float) -> bool:
        """Set the limit; False (nothing set) when permission is withdrawn."""
        with self._state() as state:
            if not state["permitted"]:
                return False
            state["limits_w"][uuid] = limit_w
            return True

    def permit(self, permitted: bool) -> None:
        with self._state() as state:
            state["permitted"] = permitted
