"""Where a joint-stage training step's time goes: per module, forward and backward.

The shipped default model in training mode (``precision`` and channels_last as
the trainer runs it), one batch of real Vimeo-90k frame pairs (random crops of
``../shared/data/train``). Each part runs on the inputs it meets inside the
step, timed alone: forward under autocast, then backward of a scalar of its
outputs (the reconstruction and the log-likelihoods, as the loss uses them);
the DIS flow has no backward. The whole step (``PFrameStep`` forward, the loss's
backward, gradient clipping, Adam) is timed too, so the parts can be checked
against it. Medians over ``--repeats``. Writes JSON.

    python benchmarks/train_profile.py --out benchmarks/results/train_profile.json
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

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]


def _pairs(data: Path, batch: int, crop: int) -> torch.Tensor:
    from PIL import Image

    seqs = sorted((data / "train" / "vimeo_septuplet" / "sequences").glob("*/*"))
    rng = np.random.default_rng(0)
    out = []
    for k in range(batch):
        seq = seqs[k % len(seqs)]
        a, b = (
            np.asarray(Image.open(seq / f"im{i}.png").convert("RGB")) for i in (1, 2)
        )
        y = int(rng.integers(0, a.shape[0] - crop + 1))
        x = int(rng.integers(0, a.shape[1] - crop + 1))
        pair = np.stack([a, b])[:, y : y + crop, x : x + crop]
        out.append(torch.from_numpy(pair.copy()).permute(0, 3, 1, 2).float() / 255)
    return torch.stack(out)  # B x 2 x 3 x H x W


def _timed(fn, repeats: int) -> float:
    fn()  # warm-up (oneDNN primitive cache)
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def _scalar(out: dict) -> torch.Tensor:
    s = out["x_hat"].float().sum()
    for lik in out.get("likelihoods", {}).values():
        s = s + torch.log(lik.float()).sum()
    return s


def default_joint_step(memory_format: torch.memory_format):
    """``(model, step)``: the shipped video model in training mode and the
    ``PFrameStep`` that ``dvc-ext train experiment=joint`` runs on it."""
    from dvc_ext.checkpoint import default_checkpoint, load_checkpoint
    from dvc_ext.training.model import PFrameStep, build_video, load_weights

    blob = load_checkpoint(default_checkpoint("video"), "video")
    model = build_video(blob["config"])
    load_weights(model, blob["state_dict"])
    model.train()
    model.intra.requires_grad_(False)  # the joint stage's default: train_intra=false
    model.to(memory_format=memory_format)
    step = PFrameStep(model, "mse", ["warp", "pred"])
    step.memory_format = memory_format
    step.configure("joint", "raw", False, False)
    step.train()
    return model, step


def training_step(step, opt, params, frames, q, lam, precision: str):
    """One whole trainer step (forward, loss, backward, clipping, Adam) as a
    closure."""
    from dvc_ext.training.precision import autocast

    dev = torch.device("cpu")

    def run():
        opt.zero_grad(set_to_none=True)
        with autocast(precision, dev):
            out = step(frames, q, lam)
        out["loss"].backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()

    return run


def profile(args) -> dict:
    from dvc_ext.training.precision import autocast, resolve_precision

    dev = torch.device("cpu")
    precision, note = resolve_precision(args.precision, dev)
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format
    model, step = default_joint_step(fmt)
    frames = _pairs(args.data, args.batch, args.crop)
    ref, cur = (frames[:, i].contiguous(memory_format=fmt) for i in (0, 1))
    q = torch.arange(args.batch) % model.num_qualities
    lam = torch.tensor([256.0, 512.0, 1024.0, 2048.0])[q]
    pf = model.pframe
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=1e-5)

    with torch.no_grad():
        v = pf.estimate_flow(cur, ref)
        with autocast(precision, dev):
            mv_hat = pf.motion_codec(v, quality=q)["x_hat"].float()
            x_pred = pf._predict(ref, mv_hat)[0].float()
    res_in = (cur - x_pred).contiguous(memory_format=fmt)

    def fwd(fn):
        def run():
            with torch.no_grad(), autocast(precision, dev):
                fn()

        return run

    def fwd_bwd(fn, scalar):
        def run():
            model.zero_grad(set_to_none=True)
            with autocast(precision, dev):
                out = fn()
            scalar(out).backward()

        return run

    parts = {
        "flow (DIS, OpenCV)": (lambda: pf.estimate_flow(cur, ref), None),
        "motion codec": (lambda: pf.motion_codec(v, quality=q), _scalar),
        "warp + MC net": (
            lambda: pf._predict(ref, mv_hat)[0],
            lambda o: o.float().sum(),
        ),
        "residual codec": (lambda: pf.residual_codec(res_in, quality=q), _scalar),
    }
    rows = {}
    for name, (fn, scalar) in parts.items():
        f = _timed(fwd(fn), args.repeats)
        row = {"forward_s": f}
        if scalar is not None:
            fb = _timed(fwd_bwd(fn, scalar), args.repeats)
            row.update(backward_s=fb - f, forward_backward_s=fb)
        rows[name] = row

    def optimizer():
        for p in params:
            p.grad = torch.zeros_like(p)
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()

    rows["clip + Adam"] = {"forward_s": 0.0, "backward_s": 0.0,
                           "optimizer_s": _timed(optimizer, args.repeats)}  # fmt: skip

    whole = training_step(step, opt, params, frames, q, lam, precision)
    total = _timed(whole, args.repeats)
    parts_sum = sum(
        r.get("forward_backward_s", r["forward_s"]) + r.get("optimizer_s", 0.0)
        for r in rows.values()
    )
    for r in rows.values():
        r["share_of_parts"] = (
            r.get("forward_backward_s", r["forward_s"]) + r.get("optimizer_s", 0.0)
        ) / parts_sum
    return {
        "precision": precision, "precision_note": note,
        "channels_last": args.channels_last, "batch": args.batch, "crop": args.crop,
        "threads": torch.get_num_threads(), "parts": rows,
        "parts_sum_s": parts_sum, "whole_step_s": total,
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--crop", type=int, default=128)
    ap.add_argument("--precision", nargs="+", default=["bf16", "fp32"])
    ap.add_argument("--no-channels-last", dest="channels_last", action="store_false")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    sys.path.insert(0, str(REPO))
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    results = []
    for p in args.precision:
        args_p = argparse.Namespace(**{**vars(args), "precision": p})
        r = profile(args_p)
        results.append(r)
        print(json.dumps({k: v for k, v in r.items()}, indent=1), flush=True)
    out = {
        "command": "python benchmarks/train_profile.py "
        + " ".join(argv or sys.argv[1:]),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.processor()}",
        "load_average_at_start": os.getloadavg(),
        "torch": torch.__version__,
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(out, indent=2))
    tmp.replace(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
