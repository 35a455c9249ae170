"""Atomic file writes: a temporary file beside the target, renamed over it."""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def atomic_tempfile(path: str | os.PathLike) -> tuple[int, Path]:
    """Create a new temporary file beside ``path`` for an atomic write.

    Returns ``(fd, tmp)``; the caller writes through ``fd``, then
    ``os.replace(tmp, path)`` (or unlinks ``tmp`` on failure). Unlike
    ``mkstemp``, which makes the file 0600 and would leave exported weights,
    configs and logs unreadable to anyone else, the file is created 0666 and
    the kernel applies the umask, as for a plain ``open``; ``O_EXCL`` keeps
    two writers from sharing one temporary name.
    """
    path = Path(path)
    while True:
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), tmp
        except FileExistsError:
            continue


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file renamed over it
    (parent folders created): a reader sees the old file or the new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = atomic_tempfile(path)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
