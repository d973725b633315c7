"""Writing report files so that nothing a user saved is lost or seen half-written."""

from __future__ import annotations

import os
import uuid
from pathlib import Path


def write_atomic(path: str | os.PathLike[str], data: bytes, *, mode: int = 0o666) -> Path:
    """Replace ``path`` with ``data`` in one step; create missing parent folders.

    The bytes go to a temporary file in the same folder, are ``fsync``-ed, then
    renamed over ``path`` (``os.replace``) and the folder is ``fsync``-ed: a reader
    sees the old file or the new one, never half of one, even after a crash or
    power loss. A failed write leaves the old file as it was and removes the
    temporary file. The file gets ``mode`` less the umask (a plain ``open()``'s by default).

    Raises:
        OSError: The folder or file cannot be written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), mode)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_directory(path.parent)
    return path


def fsync_directory(directory: Path) -> None:
    """Make a rename or a new file in ``directory`` durable.

    A no-op where folders cannot be opened or synced (some file systems refuse
    ``fsync`` on a directory): the data itself was already synced.
    """
    try:
        dir_fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        return  # not supported here; see the docstring
    finally:
        os.close(dir_fd)
