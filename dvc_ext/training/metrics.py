"""Training metrics: per-sample values averaged over steps and processes, CSV rows."""

from __future__ import annotations

import csv
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from dvc_common import atomic_tempfile

from ..losses import psnr
from . import distributed as D

COLUMNS = (
    "step", "epoch", "stage", "split", "quality", "lambda", "loss", "bpp",
    "bpp_motion", "bpp_residual", "bpp_intra", "psnr", "psnr_warp", "psnr_pred",
    "psnr_intra", "ms_ssim", "aux_loss", "lr", "sec_per_step", "elapsed_s",
)  # fmt: skip
#: Per-sample MSEs are reported as the mean PSNR over samples (not the PSNR of the mean).
PSNR_OF = {"mse": "psnr", "mse_warp": "psnr_warp", "mse_pred": "psnr_pred",
           "mse_intra": "psnr_intra"}  # fmt: skip


def accumulate(
    acc: dict, per_sample: Mapping[str, torch.Tensor], group: Any = None
) -> None:
    """Add a step's per-sample metrics to running sums keyed ``(name, group)``."""
    for k, v in per_sample.items():
        v = psnr(v) if k in PSNR_OF else v
        key = (PSNR_OF.get(k, k), group)
        s = acc.setdefault(
            key, [torch.zeros((), dtype=torch.float64, device=v.device), 0]
        )
        s[0] += v.double().sum()
        s[1] += v.numel()


def reduce_means(info: D.DistInfo, acc: dict) -> dict:
    """Means of the running sums over every process (one all-reduce)."""
    keys = sorted(acc, key=str)
    if not keys:
        return {}
    sums = torch.stack([acc[k][0] for k in keys]).to(info.device)
    counts = torch.tensor(
        [float(acc[k][1]) for k in keys], dtype=torch.float64, device=info.device
    )
    D.all_reduce_sum(info, sums)
    D.all_reduce_sum(info, counts)
    return {k: float(s / n) for k, s, n in zip(keys, sums.tolist(), counts.tolist())}


class MetricsCSV:
    """Append-only CSV of metrics; a resumed run first drops rows after its step."""

    def __init__(self, path: Path, resume_step: int | None = None) -> None:
        self.path = path
        if resume_step is not None and path.is_file():
            with path.open(newline="") as f:
                rows = [r for r in csv.DictReader(f) if int(r["step"]) <= resume_step]
            self._rewrite(rows)
        elif not path.is_file():
            self._rewrite([])

    def _rewrite(self, rows: list[dict]) -> None:
        fd, tmp = atomic_tempfile(self.path)
        with os.fdopen(fd, "w", newline="") as f:
            w = csv.DictWriter(f, COLUMNS, extrasaction="ignore")
            w.writeheader()
            w.writerows(rows)
        os.replace(tmp, self.path)

    def write(self, row: Mapping[str, Any]) -> None:
        with self.path.open("a", newline="") as f:
            csv.DictWriter(f, COLUMNS, extrasaction="ignore").writerow(
                {k: _fmt(v) for k, v in row.items()}
            )


def _fmt(v: Any) -> Any:
    if isinstance(v, float):
        return f"{v:.6g}"
    return v
