"""Does ``torch.compile`` speed up a training step on this CPU? Eager vs compiled.

One image codec's training step (forward under the trainer's precision, the
rate-distortion loss, backward, Adam), on random-crop-sized inputs; eager and
``torch.compile``d (inductor, default mode) alternate in rounds so that a
neighbour's load hits both alike. The compile time is reported apart. Writes JSON.

    python benchmarks/compile_speed.py --out benchmarks/results/compile_speed.json
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
    for _ in range(3):  # warm-up of both
        step(x, loss_of)
        step(x, compiled)
    times = {"eager": [], "compiled": []}
    for _ in range(rounds):
        for label, fn in (("eager", loss_of), ("compiled", compiled)):
            t = time.perf_counter()
            for _ in range(steps):
                step(x, fn)
            times[label].append((time.perf_counter() - t) / steps)
    eager, comp = (statistics.median(times[k]) for k in ("eager", "compiled"))
    return {
        "codec": name, "N": N, "M": M, "batch": batch, "crop": size,
        "precision": precision, "channels_last": channels_last,
        "eager_s_per_step": eager, "compiled_s_per_step": comp,
        "speedup": eager / comp, "compile_s": compile_s, "rounds": times,
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--codecs", nargs="+", default=["mbt2018-mean"])
    ap.add_argument("--N", type=int, default=64)
    ap.add_argument("--M", type=int, default=96)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--precisions", nargs="+", default=["bf16", "fp32"])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=5, help="steps per round")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    sys.path.insert(0, str(REPO))
    torch.set_num_threads(args.threads)
    rows = []
    for name in args.codecs:
        for precision in args.precisions:
            row = measure(name, args.N, args.M, args.batch, args.size, precision,
                          True, args.rounds, args.steps)  # fmt: skip
            print(
                json.dumps({k: v for k, v in row.items() if k != "rounds"}), flush=True
            )
            rows.append(row)
    result = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.processor()}",
        "load_average_at_start": os.getloadavg(),
        "torch": torch.__version__,
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
