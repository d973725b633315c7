"""Where control keeps what must outlive a run: limit journals, profiles, batch sizes."""

from __future__ import annotations

import os
from pathlib import Path


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
