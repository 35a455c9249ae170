"""Does ``torch.compile`` speed up a training step on this CPU? Eager vs compiled.

``--mode image``: one image codec's training step (forward under the trainer's
precision, the rate-distortion loss, backward, Adam) on random inputs.
``--mode joint``: the P-frame trainer's joint step (``PFrameStep``, as
``dvc-ext train experiment=joint`` runs it) from the shipped video model on
real Vimeo-90k pairs, with the three trained modules (motion codec, MC net,
residual codec) compiled and the intra codec frozen. Eager and
``torch.compile``d (inductor, default mode) copies alternate in rounds so that a
neighbour's load hits both alike; the compile time is reported apart. Writes JSON.

    python benchmarks/compile_speed.py --out benchmarks/results/compile_speed.json
    python benchmarks/compile_speed.py --mode joint --batch 4 --size 128 256 \
        --precisions bf16 --out benchmarks/results/compile_speed_joint.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]


def _step_fn(model, precision: str):
    from dvc_ext.training.precision import autocast

    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    lmbda = 0.013

    def loss_of(x):
        with autocast(precision, x.device):
            out = model(x, quality=torch.zeros(x.shape[0], dtype=torch.long))
        bits = sum((-torch.log2(v.float())).sum() for v in out["likelihoods"].values())
        bpp = bits / (x.shape[0] * x.shape[-2] * x.shape[-1])
        return lmbda * 255**2 * torch.mean((out["x_hat"].float() - x) ** 2) + bpp

    def step(x, fn):
        opt.zero_grad(set_to_none=True)
        loss = fn(x)
        loss.backward()
        opt.step()
        return float(loss)

    return loss_of, step


def measure(name, N, M, batch, size, precision, channels_last, rounds, steps):
    from image_codecs import build_codec

    torch.manual_seed(0)
    model = build_codec(name, in_channels=3, N=N, M=M, num_qualities=4).train()
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    x = torch.rand(batch, 3, size, size).to(memory_format=fmt)
    loss_of, step = _step_fn(model, precision)
    t = time.perf_counter()
    compiled = torch.compile(loss_of)
    step(x, compiled)  # compiles forward and backward
    compile_s = time.perf_counter() - t
    times = _alternate(
        lambda: step(x, loss_of), lambda: step(x, compiled), rounds, steps
    )
    eager, comp = (statistics.median(times[k]) for k in ("eager", "compiled"))
    return {
        "mode": "image", "codec": name, "N": N, "M": M, "batch": batch, "crop": size,
        "precision": precision, "channels_last": channels_last,
        "eager_s_per_step": eager, "compiled_s_per_step": comp,
        "speedup": eager / comp, "compile_s": compile_s, "rounds": times,
    }  # fmt: skip


def _alternate(run_eager, run_compiled, rounds: int, steps: int) -> dict:
    for _ in range(3):  # warm-up of both (oneDNN primitive cache, autotuning)
        run_eager()
        run_compiled()
    times = {"eager": [], "compiled": []}
    for _ in range(rounds):
        for label, fn in (("eager", run_eager), ("compiled", run_compiled)):
            t = time.perf_counter()
            for _ in range(steps):
                fn()
            times[label].append((time.perf_counter() - t) / steps)
    return times


def measure_joint(batch, size, precision, rounds, steps, data: Path):
    """The joint stage's step, eager vs its three trained modules compiled."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    from train_profile import _pairs, default_joint_step, training_step

    frames = _pairs(data, batch, size)
    q = torch.arange(batch) % 4
    lam = torch.tensor([256.0, 512.0, 1024.0, 2048.0])[q]

    def make(compiled: bool):
        model, step = default_joint_step(torch.channels_last)
        names = [n for n in ("motion_codec", "mc_net", "residual_codec")
                 if hasattr(model.pframe, n)]  # fmt: skip
        if compiled:
            for n in names:
                getattr(model.pframe, n).compile()
        params = [p for p in model.parameters() if p.requires_grad]
        # A tiny lr: the step's cost is what is measured, not the model's drift.
        opt = torch.optim.Adam(params, lr=1e-7)
        return training_step(step, opt, params, frames, q, lam, precision), names

    run_eager, _ = make(False)
    run_compiled, names = make(True)
    t = time.perf_counter()
    run_compiled()  # compiles forward and backward
    run_compiled()  # and the second pass's guards
    compile_s = time.perf_counter() - t
    times = _alternate(run_eager, run_compiled, rounds, steps)
    eager, comp = (statistics.median(times[k]) for k in ("eager", "compiled"))
    return {
        "mode": "joint", "compiled_modules": names, "batch": batch, "crop": size,
        "precision": precision, "channels_last": True,
        "eager_s_per_step": eager, "compiled_s_per_step": comp,
        "speedup": eager / comp, "compile_s": compile_s, "rounds": times,
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mode", choices=["image", "joint"], default="image")
    ap.add_argument("--codecs", nargs="+", default=["mbt2018-mean"])
    ap.add_argument("--N", type=int, default=64)
    ap.add_argument("--M", type=int, default=96)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--size", type=int, nargs="+", default=[128])
    ap.add_argument(
        "--data",
        type=Path,
        default=REPO.parent / "shared" / "data",
        help="--mode joint: the shared data (its train/vimeo_septuplet)",
    )
    ap.add_argument("--precisions", nargs="+", default=["bf16", "fp32"])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=5, help="steps per round")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    sys.path.insert(0, str(REPO))
    torch.set_num_threads(args.threads)
    rows = []
    for size in args.size:
        for precision in args.precisions:
            for name in ["joint"] if args.mode == "joint" else args.codecs:
                if args.mode == "joint":
                    row = measure_joint(
                        args.batch, size, precision, args.rounds, args.steps, args.data
                    )
                else:
                    row = measure(
                        name, args.N, args.M, args.batch, size, precision, True,
                        args.rounds, args.steps,
                    )  # fmt: skip
                brief = {k: v for k, v in row.items() if k != "rounds"}
                print(json.dumps(brief), flush=True)
                rows.append(row)
    result = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.processor()}",
        "load_average_at_start": os.getloadavg(),
        "torch": torch.__version__,
        "mode": args.mode,
        "command": " ".join(
            [
                "python benchmarks/compile_speed.py",
                *(sys.argv[1:] if argv is None else argv),
            ]
        ),
        "threads": args.threads,
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=2))
    tmp.replace(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
