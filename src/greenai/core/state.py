"""The folder where what must outlive a run is kept (limit journals, leases, profiles, batch
sizes), and how its private parts are opened: owned by this user, closed to everyone else,
never through a symbolic link. A GPU's power limit is restored from these files, so a file
another user could plant there must never be trusted."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

POWER_LIMIT_JOURNAL = "power_limits.json"
"""The power-limit journal's name in the state folder (see greenai.control.limit_journal)."""

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


def state_dir() -> Path:
    """``$GREENAI_STATE_DIR``, else ``$XDG_STATE_HOME/greenai``.

    ``XDG_STATE_HOME`` falls back to ``~/.local/state`` when unset, empty or not an
    absolute path (the XDG Base Directory rules).
    """
    explicit = os.environ.get("GREENAI_STATE_DIR", "")
    if explicit:
        return Path(explicit).expanduser()
    state_home = os.environ.get("XDG_STATE_HOME", "")
    base = Path(state_home) if os.path.isabs(state_home) else Path.home() / ".local" / "state"
    return base / "greenai"


def private_dir(path: Path) -> Path:
    """``path`` as a folder only this user may write: created with mode 0700 (its missing
    parents too); an existing one must be a real folder (not a link) owned by this user, and
    loses any write permission for group and others.

    Raises:
        OSError: It cannot be created, is a link or not a folder, or belongs to another user.
    """
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
    except FileExistsError as e:  # a file, or a dangling link, in the way
        raise OSError(errno.ENOTDIR, f"{path} is not a folder") from e
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode):
        raise OSError(errno.ENOTDIR, f"{path} is a link or not a folder")
    if hasattr(os, "geteuid") and info.st_uid != os.geteuid():
        raise OSError(errno.EPERM, f"{path} belongs to another user (uid {info.st_uid})")
    if info.st_mode & 0o022:
        os.chmod(path, stat.S_IMODE(info.st_mode) & ~0o022)
    return path


def open_private(path: Path, flags: int) -> int:
    """Open ``path`` (created with mode 0600 when ``flags`` has ``O_CREAT``) without following
    a link, close-on-exec; the descriptor. Only a regular file owned by this user is opened.

    Raises:
        OSError: It cannot be opened, is a link or not a regular file, or belongs to
            another user.
    """
    fd = os.open(path, flags | _NOFOLLOW | _CLOEXEC, 0o600)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise OSError(errno.EINVAL, f"{path} is not a regular file")
        if hasattr(os, "geteuid") and info.st_uid != os.geteuid():
            raise ForeignFileError(path, info.st_uid)
    except BaseException:
        os.close(fd)
        raise
    return fd


class ForeignFileError(PermissionError):
    """A state file that belongs to another user: it is not acted on."""

    def __init__(self, path: Path, uid: int) -> None:
        super().__init__(errno.EPERM, f"{path} belongs to another user (uid {uid})")
        self.path = path
        self.uid = uid
