"""Training: the loop, DVC's staged schedule, run folders, resume and DDP.

``run(cfg)`` is what ``dvc-ext train`` calls (through
:func:`dvc_ext.tasks.train.train`); see ``docs/training.md``.
"""

from .loop import Trainer, run
from .schedule import Stage, build_schedule, stage_at, total_steps

__all__ = ["Stage", "Trainer", "build_schedule", "run", "stage_at", "total_steps"]
