"""DVC's staged training schedule as data.

G. Lu et al., "DVC: An End-to-end Deep Video Compression Framework", CVPR 2019,
and its journal version (TPAMI 2021) train progressively; the ``stages`` config
lists the stages to run, in order:

- ``motion``: flow, motion codec and MC net warm up on ``lambda * D(pred) +
  R_motion`` (``D`` of the warped and/or motion-compensated frame, see
  ``loss.motion_targets``); the residual codec is not run.
- ``residual``: the residual codec learns on the full objective, with the
  motion part frozen (DVC) or not (``freeze: []``).
- ``joint``: everything end to end on ``lambda * D + R_motion + R_residual``.
- ``image``: an image codec alone (``task=image``), ``lambda * D + R``.

Each stage has its own step count, learning rate, decay points and frozen
modules; the learning rate is a pure function of the step, so a resumed run
needs no scheduler state.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from dvc_common import InputError

PFRAME_STAGES = ("motion", "residual", "joint")
IMAGE_STAGES = ("image",)
#: Modules of the video model a stage can freeze.
MODULES = ("flow", "motion_codec", "mc_net", "residual_codec", "intra")
REF_MODES = ("raw", "intra")


@dataclass
class Stage:
    """One stage of the schedule: global steps ``[start, end)``."""

    name: str
    start: int
    steps: int
    lr: float
    lr_drops: list[float] = field(default_factory=list)
    lr_gamma: float = 0.1
    freeze: list[str] = field(default_factory=list)
    ref: str = "raw"

    @property
    def end(self) -> int:
        return self.start + self.steps

    def lr_at(self, step: int) -> float:
        """Learning rate at global ``step``: ``lr * gamma^(drops passed)``."""
        done = (step - self.start) / max(1, self.steps)
        return self.lr * self.lr_gamma ** sum(1 for f in self.lr_drops if done >= f)


def build_schedule(
    stages: Mapping[str, Any],
    task: str,
    optim: Mapping[str, Any],
    default_ref: str = "raw",
    max_stage_steps: int | None = None,
) -> list[Stage]:
    """The stages of ``stages`` (config order) with steps > 0.

    Raises:
        InputError: unknown stage or module names, a stage of the other task,
            or no stage with steps.
    """
    allowed = PFRAME_STAGES if task == "pframe" else IMAGE_STAGES
    out: list[Stage] = []
    start = 0
    for name, s in (stages or {}).items():
        s = dict(s or {})
        if name not in allowed:
            raise InputError(
                f"stage {name!r} is not a task={task} stage; choose from {', '.join(allowed)}"
            )
        steps = int(s.get("steps", 0) or 0)
        if max_stage_steps is not None:
            steps = min(steps, int(max_stage_steps))
        if steps <= 0:
            continue
        freeze = list(s.get("freeze") or [])
        bad = [m for m in freeze if m not in MODULES]
        if bad:
            raise InputError(
                f"stages.{name}.freeze: unknown {bad}; modules: {', '.join(MODULES)}"
            )
        ref = s.get("ref") or default_ref
        if ref not in REF_MODES:
            raise InputError(
                f"stages.{name}.ref must be one of {REF_MODES}, got {ref!r}"
            )
        drops = s.get("lr_drops", optim.get("lr_drops")) or []
        out.append(
            Stage(
                name=name,
                start=start,
                steps=steps,
                lr=float(s.get("lr") or optim.get("lr", 1e-4)),
                lr_drops=sorted(float(f) for f in drops),
                lr_gamma=float(s.get("lr_gamma", optim.get("lr_gamma", 0.1))),
                freeze=freeze,
                ref=ref,
            )
        )
        start += steps
    if not out:
        raise InputError(
            f"no training stage with steps > 0 for task={task} (stages: "
            f"{dict(stages or {})}); pick an experiment, e.g. experiment=dvc"
        )
    return out


def stage_at(schedule: list[Stage], step: int) -> Stage:
    """The stage global ``step`` belongs to (the last one past the end)."""
    for s in schedule:
        if step < s.end:
            return s
    return schedule[-1]


def total_steps(schedule: list[Stage]) -> int:
    return schedule[-1].end
