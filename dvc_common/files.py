"""Atomic file writes: a temporary file beside the target, renamed over it."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def atomic_tempfile(path: str | os.PathLike) -> tuple[int, Path]:
    """Open a temporary file beside ``path`` for an atomic write.

    Returns ``(fd, tmp)``; the caller writes through ``fd``, then
    ``os.replace(tmp, path)`` (or unlinks ``tmp`` on failure). ``mkstemp``
    creates files 0600, which would make exported weights, configs and logs
    unreadable to anyone else; the file gets the mode a plain ``open`` would
    give it (0666 less the umask) since these outputs are meant to be shared.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    umask = os.umask(0)
    os.umask(umask)
    os.fchmod(fd, 0o666 & ~umask)
    return fd, Path(tmp)
