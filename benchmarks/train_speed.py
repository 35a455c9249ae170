"""Seconds per training step of ``dvc-ext train``: precision, layout, threads.

Each measurement is its own ``dvc-ext train`` process (``debug=profile``: no
validation, no checkpoints in between) on ``../shared/data/train``; the time
is the ``sec_per_step`` of ``metrics.csv`` over steps 11-20 of the stage
(the first ten warm up the allocator and oneDNN's kernel cache), and it
includes the data path (decoding, crops, DIS flow in the video stages) as
the trainer meets it. Video stages start from the shipped default model
(``init.video``) so the flow and codecs see realistic inputs.

    python benchmarks/train_speed.py --out benchmarks/results/train_speed.json

Run it on an otherwise idle machine: two threads on a busy CPU measure the
other job, not this one.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

#: (label, overrides) of the models measured.
MODELS = {
    "default": [],
    "N128_M192": [
        "codec.intra_codec.N=128",
        "codec.intra_codec.M=192",
        "codec.pframe.residual_codec.N=128",
        "codec.pframe.residual_codec.M=192",
        "codec.pframe.motion_codec.N=128",
        "codec.pframe.motion_codec.M=128",
        "codec.pframe.mc_channels=64",
    ],  # fmt: skip
}
MODES = {
    "fp32": ["precision=fp32", "channels_last=false"],
    "bf16": ["precision=bf16", "channels_last=false"],
    "bf16+channels_last": ["precision=bf16", "channels_last=true"],
    "fp32+channels_last": ["precision=fp32", "channels_last=true"],
}


def _stage_args(stage: str, model: str, data: Path) -> list[str]:
    d = data / "train"
    common = [
        "dataset=mixed",
        f"dataset.parts.vimeo.root={d / 'vimeo_septuplet'}",
        f"dataset.parts.videos.root={d / 'videos'}",
        "dataset.crop=128",
    ]
    if stage == "image":
        nm = ["image_codec.N=128", "image_codec.M=192"] if model != "default" else []
        return ["experiment=image", "image_codec=mbt2018-mean", "batch_size=8",
                *nm, *common]  # fmt: skip
    args = [f"experiment={stage}", "flow=dis", "batch_size=4", "train_intra=false",
            *common]  # fmt: skip
    if model == "default":
        args.append(f"init.video={REPO / 'dvc_ext' / 'weights' / 'video_default.pth'}")
    else:
        # DVC's sizes (codec=default) with the default's codec families.
        args += ["codec=mean", *MODELS[model]]
    return args


def measure(stage: str, model: str, mode: str, threads: int, data: Path) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [
            sys.executable, "-m", "dvc_ext", "train",
            *_stage_args(stage, model, data), *MODES[mode],
            f"threads={threads}", "debug=profile", "max_stage_steps=20",
            "log_every=10", "num_workers=1", f"run_dir={tmp}/run",
        ]  # fmt: skip
        t0 = time.time()
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
        if proc.returncode != 0:
            return {"error": proc.stderr.strip().splitlines()[-1:]}
        with open(Path(tmp) / "run" / "metrics.csv") as f:
            rows = [r for r in csv.DictReader(f) if r["split"] == "train"]
        warm = [float(r["sec_per_step"]) for r in rows if int(r["step"]) > 10]
        return {"sec_per_step": round(sum(warm) / len(warm), 4),
                "wall_s": round(time.time() - t0, 1)}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument(
        "--stages", nargs="+", default=["image", "motion", "residual", "joint"]
    )
    ap.add_argument("--models", nargs="+", default=list(MODELS))
    ap.add_argument(
        "--modes", nargs="+", default=["fp32", "bf16", "bf16+channels_last"]
    )
    ap.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args(argv)
    rows = []
    for model in a.models:
        for stage in a.stages:
            for mode in a.modes:
                for th in a.threads:
                    r = measure(stage, model, mode, th, a.data)
                    row = {"model": model, "stage": stage, "mode": mode,
                           "threads": th, **r}  # fmt: skip
                    print(json.dumps(row), flush=True)
                    rows.append(row)
    import torch

    out = {
        "command": "python benchmarks/train_speed.py " + " ".join(argv or sys.argv[1:]),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, "
        f"avx512_bf16={torch.cpu._is_avx512_bf16_supported()}, "
        f"amx={torch.cpu._is_amx_tile_supported()}",
        "torch": torch.__version__,
        "batch": {"image": "8 x 128x128", "video": "4 x 128x128 pairs"},
        "compile": "not measured (see docs/training.md)",
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "rows": rows,
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
