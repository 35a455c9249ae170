"""``dvc-ext export``: a training checkpoint to a small, shippable model file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dvc_common import InputError

from ..checkpoint import export_blob, load_checkpoint


def export(cfg: Any) -> Path:
    src, dst = Path(str(cfg.input)), Path(str(cfg.output))
    blob = load_checkpoint(src)
    meta: dict[str, Any] = {"exported_from": src.name}
    swaps = {k: cfg.get(k) for k in ("intra", "residual") if cfg.get(k)}
    part = cfg.get("extract")
    if part:
        from ..training.model import image_codec_of

        if blob["kind"] != "video" or swaps:
            raise InputError(
                "extract= takes a codec out of a video model, alone"
                + (
                    f"; {src} holds a {blob['kind']!r} model"
                    if blob["kind"] != "video"
                    else " (not with intra= / residual=)"
                )
            )
        config, state = image_codec_of(blob["config"], blob["state_dict"], str(part))
        blob = {**blob, "kind": "image", "config": config, "state_dict": state}
        meta["extracted"] = str(part)
    if swaps:
        # A codec swapped in without retraining: how an image codec is measured
        # in place of the video model's own (README: which intra codec).
        from ..training.model import with_image_codec

        if blob["kind"] != "video":
            raise InputError(
                f"{src} holds a {blob['kind']!r} model; intra= / residual= "
                "replace a codec of a video model"
            )
        for part, path in swaps.items():
            image = load_checkpoint(str(path), "image")
            config, state = with_image_codec(
                blob["config"], blob["state_dict"], part, image
            )
            blob = {**blob, "config": config, "state_dict": state}
            meta[f"{part}_codec_from"] = Path(str(path)).name
    out = export_blob(blob, dst, str(cfg.dtype), meta)
    swapped = "".join(f", {k} codec from {v}" for k, v in swaps.items())
    if part:
        swapped += f", its {part} codec as an image model"
    print(
        f"exported {src} -> {out} ({out.stat().st_size / 1e6:.2f} MB, "
        f"weights as {cfg.dtype}, no training state{swapped})"
    )
    return out
