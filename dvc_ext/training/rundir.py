"""A training run's folder: resolved config, log, metrics CSV, TensorBoard.

.. code-block:: none

    RUN_DIR/config.yaml           the resolved training config
    RUN_DIR/train.log             what the run printed
    RUN_DIR/metrics.csv           one row per log interval (train) and per
                                  quality index per validation (val)
    RUN_DIR/checkpoints/last.pth  model + training state (resume=true)
    RUN_DIR/checkpoints/STAGE.pth the model at the end of each stage
    RUN_DIR/checkpoints/best.pth  the best validation loss of the last stage
    RUN_DIR/tb/                   TensorBoard events (only if installed)
"""

from __future__ import annotations

import datetime as _dt
import os
import sys
from pathlib import Path
from typing import Any

from dvc_common import InputError, atomic_tempfile

CHECKPOINT = "last.pth"


def write_text_atomic(path: Path, text: str) -> None:
    fd, tmp = atomic_tempfile(path)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def find_resume_checkpoint(resume: Any, run_dir: Path, runs_parent: Path) -> Path:
    """The ``last.pth`` that ``resume=...`` points at.

    ``resume=true``: ``run_dir``'s if it has one, else the newest run under
    ``runs_parent`` (the runs of this name); ``resume=PATH``: a run folder or a
    checkpoint file.

    Raises:
        InputError: nothing to resume.
    """
    if resume is True or str(resume).lower() == "true":
        own = run_dir / "checkpoints" / CHECKPOINT
        if own.is_file():
            return own
        found = sorted(
            runs_parent.glob(f"*/checkpoints/{CHECKPOINT}"), key=os.path.getmtime
        )
        if not found:
            raise InputError(
                f"resume=true: no run with checkpoints/{CHECKPOINT} under {runs_parent} "
                f"(give resume=RUN_DIR or a checkpoint path)"
            )
        return found[-1]
    p = Path(str(resume)).expanduser()
    if p.is_dir():
        p = p / "checkpoints" / CHECKPOINT
    if not p.is_file():
        raise InputError(f"resume={resume}: no checkpoint at {p}")
    return p


def run_dir_of(checkpoint: Path) -> Path:
    """The run folder of ``RUN/checkpoints/last.pth``."""
    return (
        checkpoint.parent.parent
        if checkpoint.parent.name == "checkpoints"
        else checkpoint.parent
    )


class RunLog:
    """Lines to stdout (through tqdm when a bar is shown) and ``train.log``."""

    def __init__(self, path: Path | None, enabled: bool = True) -> None:
        self.path, self.enabled = path, enabled
        self.bar = None

    def __call__(self, msg: str) -> None:
        if not self.enabled:
            return
        line = f"[{_dt.datetime.now().strftime('%H:%M:%S')}] {msg}"
        if self.bar is not None:
            self.bar.write(line)
        else:
            print(line, flush=True)
        if self.path is not None:
            with self.path.open("a") as f:
                f.write(line + "\n")


def tensorboard_writer(setting: Any, log_dir: Path):
    """A SummaryWriter when TensorBoard is wanted and installed, else None.

    Raises:
        InputError: ``tensorboard=true`` but the package is not installed.
    """
    if setting in (False, "false", None):
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        if setting in (True, "true"):
            raise InputError("tensorboard=true but tensorboard is not installed "
                             "(pip install tensorboard)") from None  # fmt: skip
        return None
    return SummaryWriter(str(log_dir))


def show_progress(setting: Any) -> bool:
    """``progress=auto``: a bar only when stderr is a terminal."""
    if setting in ("auto", None):
        return sys.stderr.isatty()
    return bool(setting) and setting != "false"
