"""``dvc-ext train``: train the P-frame model or an image codec."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def train(cfg: Any) -> Path:
    """Run the training ``cfg`` describes (the composed ``configs/train.yaml``).

    Single process, or one process per device under ``torchrun``. Returns the
    run folder (config, metrics.csv, train.log, checkpoints/).
    """
    from dvc_ext.training import run

    return run(cfg)
