"""``dvc-ext export``: a training checkpoint to a small, shippable model file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..checkpoint import export_checkpoint


def export(cfg: Any) -> Path:
    src, dst = Path(str(cfg.input)), Path(str(cfg.output))
    out = export_checkpoint(src, dst, str(cfg.dtype), {"exported_from": src.name})
    print(
        f"exported {src} -> {out} ({out.stat().st_size / 1e6:.2f} MB, "
        f"weights as {cfg.dtype}, no training state)"
    )
    return out
