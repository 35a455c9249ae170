"""Supervised training of the learned flows on synthetic-motion pairs.

``python -m flows.train --flow spynet --steps 2000 --out runs/flows/spynet.pth``

Loss: multi-scale end-point error. Every level ``k`` of the estimator's
pyramid (stride ``s_k``) is compared with the ground truth average-pooled by
``s_k`` and divided by ``s_k``; its EPE, converted back to full-resolution
pixels, is weighted by ``0.5 ** (distance from the finest level)``.

Writes ``OUT`` (``{"state_dict", "config"}``, what ``build_flow(weights=OUT)``
loads), ``OUT.yaml`` (the configuration and final numbers), ``OUT.csv`` (the
training log) and a resume state (``--state``, default ``OUT.state.pt``; the
optimiser is not in the shipped checkpoint). Running the same command again
resumes from the state. Every file is written to a temporary file and
renamed, so an interrupted run never leaves a half-written file.
"""

from __future__ import annotations

import argparse
import csv
import io
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import yaml

from dvc_common import InputError, atomic_write_bytes, fixed_threads

from .base import build_flow, flow_architecture
from .synthetic import SyntheticFlow, heldout_set, natural_images, photo_sources

_REPO = Path(__file__).resolve().parents[1]


def _atomic_save(obj, path: Path) -> None:
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


def _atomic_text(text: str, path: Path) -> None:
    atomic_write_bytes(path, text.encode())


def epe(flow: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """Mean end-point error (px) of ``B x 2 x H x W`` flows."""
    return (flow - gt).norm(dim=1).mean()


def multiscale_epe(
    pyramid: list[tuple[torch.Tensor, int]], gt: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Weighted multi-scale EPE and the EPE of the finest level (both in px)."""
    total = gt.new_zeros(())
    finest = gt.new_zeros(())
    for depth, (flow, stride) in enumerate(reversed(pyramid)):
        target = gt if stride == 1 else F.avg_pool2d(gt, stride) / stride
        if target.shape[-2:] != flow.shape[-2:]:
            raise InputError(
                f"level of stride {stride} is {tuple(flow.shape[-2:])}, "
                f"expected {tuple(target.shape[-2:])}"
            )
        e = epe(flow, target) * stride
        total = total + 0.5**depth * e
        if depth == 0:
            finest = e
    return total, finest


def _lr_at(step: int, steps: int, lr: float, warmup: int = 50) -> float:
    if step < warmup:
        return lr * (step + 1) / warmup
    t = min(1.0, (step - warmup) / max(steps - warmup, 1))
    return lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * t)))


def _default_data() -> Path | None:
    for c in (
        _REPO.parent / "shared" / "data",
        _REPO.parent.parent / "shared" / "data",
    ):
        if (c / "train").is_dir():
            return c
    return None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m flows.train", description=__doc__)
    p.add_argument("--flow", required=True, help="registered flow name")
    p.add_argument("--steps", type=int, required=True, help="total optimiser steps")
    p.add_argument("--out", type=Path, required=True, help="checkpoint path (.pth)")
    p.add_argument("--state", type=Path, default=None, help="resume state path")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--crop", type=int, default=96, help="square crop size (px)")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--max-shift", type=float, default=16.0)
    p.add_argument(
        "--static", type=float, default=0.0, help="share of zero-motion pairs"
    )
    p.add_argument(
        "--texture",
        type=float,
        default=0.0,
        help="share of pairs with a periodic-texture or flat patch (aperture cases)",
    )
    p.add_argument(
        "--faint",
        type=float,
        default=0.0,
        help="share of those patches that are a faint ramp with grain (sky, walls)",
    )
    p.add_argument(
        "--init",
        type=Path,
        default=None,
        help="start from these weights (a checkpoint of this script); fine-tuning",
    )
    p.add_argument(
        "--level",
        type=int,
        default=None,
        help="train this pyramid level only (SpyNet's level-by-level training: "
        "the coarser levels run as they are, the finer ones are left out)",
    )
    p.add_argument(
        "--levels", type=int, default=None, help="pyramid levels of a new model"
    )
    p.add_argument(
        "--iters",
        type=int,
        nargs="+",
        default=None,
        help="passes of each level net of a new spynet, finest level first",
    )
    p.add_argument(
        "--fill-sigma",
        type=float,
        nargs="+",
        default=None,
        help="the confidence fill: Gaussian sigma (level cells) of each spynet "
        "level, finest first, or of each pwcnet decoding step, strides 16, 8, 4, "
        "4 (0: off); a checkpoint records it, so with --init "
        "only one saved before these settings existed takes a new value",
    )
    p.add_argument(
        "--fill-tau", type=float, default=None, help="the confidence fill's scale"
    )
    p.add_argument(
        "--context",
        type=int,
        default=None,
        help="pwcnet: width of its context network (0: none); with --init from "
        "weights without one, the net is added and trained from its identity start",
    )
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu", help="cpu, cuda, ...")
    p.add_argument(
        "--precision",
        choices=("fp32", "bf16"),
        default="fp32",
        help="bf16: the pyramid's forward under bfloat16 autocast (weights, "
        "loss and optimiser stay fp32); about 3x faster on a CPU with AMX",
    )
    p.add_argument(
        "--teacher",
        type=float,
        default=0.7,
        help="initial share of teacher-forced steps",
    )
    p.add_argument("--jitter", type=float, default=2.0, help="teacher-forcing offset")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--log-every", type=int, default=20)
    p.add_argument("--save-every", type=int, default=50)
    p.add_argument("--data", type=Path, default=None, help="shared data folder")
    p.add_argument("--heldout", type=int, default=32, help="held-out pairs at the end")
    p.add_argument(
        "--photos",
        type=Path,
        default=None,
        help="also cut pairs from this folder of photographs (e.g. "
        "shared/data/train/images); never a folder under eval/",
    )
    p.add_argument(
        "--photo-downscale",
        type=float,
        default=3.0,
        help="reduce each photograph by this factor first (area averaging)",
    )
    p.add_argument(
        "--photo-repeat",
        type=int,
        default=1,
        help="draw each photograph this many times as often as one other source",
    )
    return p.parse_args(argv)


def train(args: argparse.Namespace) -> dict:
    """Run (or resume) a training; returns the final numbers."""
    with fixed_threads(args.threads):
        return _train(args)


def _train(args: argparse.Namespace) -> dict:
    out: Path = args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    state_path = args.state or out.with_name(out.name + ".state.pt")
    log_path, cfg_path = out.with_suffix(".csv"), out.with_suffix(".yaml")
    data = args.data or _default_data()

    kwargs = {} if args.levels is None else {"levels": args.levels}
    # Per-level settings: one value means all levels, as the constructor reads it.
    for key in ("iters", "fill_sigma"):
        values = getattr(args, key)
        if values is not None:
            kwargs[key] = values[0] if len(values) == 1 else tuple(values)
    if args.fill_tau is not None:
        kwargs["fill_tau"] = args.fill_tau
    if args.context is not None:
        kwargs["context"] = args.context
    if args.init is not None and not args.init.is_file():
        raise InputError(f"--init: no checkpoint at {args.init}")
    # --init also gives the architecture (recorded in its checkpoint); a resumed
    # run then loads its own state over those weights.
    # A context net asked for is grown onto --init weights that lack it.
    grown = {"context": "context_net."} if kwargs.get("context") else None
    model = build_flow(args.flow, weights=args.init, grown=grown, **kwargs)
    if not model.differentiable or not hasattr(model, "flow_pyramid"):
        raise InputError(f"flow {args.flow!r} is not a trainable estimator")
    if args.level is not None:
        nets = getattr(model, "nets", None)
        if nets is None or not 0 <= args.level < len(nets):
            raise InputError(
                f"--level {args.level}: flow {args.flow!r} has no such pyramid level"
            )
        model.requires_grad_(False)
        nets[args.level].requires_grad_(True)
    params = [p for p in model.parameters() if p.requires_grad]
    resume = state_path.is_file()
    model.to(args.device)
    opt = torch.optim.Adam(params, lr=args.lr)
    step = 0
    if resume:
        st = torch.load(state_path, map_location=args.device, weights_only=True)
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["optimizer"])
        step = int(st["step"])
        print(f"resumed {args.flow} at step {step} from {state_path}", flush=True)
        if log_path.exists():  # drop rows logged after the state was saved
            rows = list(csv.reader(open(log_path, newline="")))
            kept = rows[:1] + [r for r in rows[1:] if int(r[0]) <= step]
            buf = io.StringIO()
            csv.writer(buf).writerows(kept)
            _atomic_text(buf.getvalue(), log_path)
    elif log_path.exists():
        log_path.unlink()

    sources = natural_images("train", data)
    if args.photos is not None:
        sources += photo_sources(args.photos, args.photo_downscale, args.photo_repeat)
    gen = SyntheticFlow(
        sources,
        size=(args.crop, args.crop),
        max_shift=args.max_shift,
        static=args.static,
        texture=args.texture,
        faint=args.faint,
    )
    arch = flow_architecture(model)
    config = {
        "flow": args.flow,
        "model": arch,
        "params": sum(p.numel() for p in model.parameters()),
        "train": {
            "steps": args.steps,
            "batch": args.batch,
            "crop": args.crop,
            "lr": args.lr,
            "schedule": "linear warm-up 50 steps, cosine to 5%",
            "optimizer": "Adam",
            "loss": "multi-scale EPE, level weights 0.5**depth"
            if args.level is None
            else f"EPE of level {args.level} (the only one trained)",
            "teacher_forcing": {
                "initial_share": args.teacher,
                "until": "70% of the steps (linear decay)",
                "jitter_level_px": args.jitter,
            },
            "seed": args.seed,
            "threads": args.threads,
            "precision": args.precision,
            "level": args.level,
        },
        "data": {
            "generator": "flows.synthetic.SyntheticFlow",
            "max_shift": args.max_shift,
            "static_share": args.static,
            "texture_share": args.texture,
            "faint_share": args.faint,
            "init": str(args.init) if args.init else None,
            "kinds": list(gen.kinds),
            "kind_weights": [float(w) for w in gen.weights],
            "sources": "scikit-image photos (train list)"
            + (" + shared/data/train (Vimeo train list, vtest.avi)" if data else "")
            + (
                f" + photos {args.photos} (/{args.photo_downscale:g}, x{args.photo_repeat})"
                if args.photos is not None
                else ""
            ),
        },
    }

    def save(final: dict | None = None) -> None:
        blob = {
            "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "config": {"flow": args.flow, "step": step, "model": arch},
        }
        _atomic_save(blob, out)
        _atomic_save(
            {"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step},
            state_path,
        )
        cfg = dict(config, step=step)
        if final:
            cfg["result"] = final
        _atomic_text(yaml.safe_dump(cfg, sort_keys=False), cfg_path)

    autocast = torch.autocast(
        torch.device(args.device).type,
        dtype=torch.bfloat16,
        enabled=args.precision == "bf16",
    )
    new_log = not log_path.exists()
    model.train()
    t0 = time.time()
    run_loss = run_epe = 0.0
    n_run = 0
    with open(log_path, "a", newline="") as fh:
        writer = csv.writer(fh)
        if new_log:
            writer.writerow(["step", "loss", "epe", "lr", "seconds"])
        while step < args.steps:
            # Step-seeded: a resumed run draws the same batches as an unbroken one.
            rng = np.random.default_rng([args.seed, step])
            cur, ref, gt = (t.to(args.device) for t in gen.batch(args.batch, rng))
            lr = _lr_at(step, args.steps, args.lr)
            for g in opt.param_groups:
                g["lr"] = lr
            # Teacher forcing (SpyNet's level-wise training) on a share of the
            # steps that falls to zero at 70% of the run: every level learns its
            # residual task at once instead of waiting for the coarser ones.
            p_tf = args.teacher * max(0.0, 1.0 - step / (0.7 * args.steps))
            with autocast:
                if args.level is not None:
                    pyramid = model.flow_pyramid(cur, ref, until=args.level)[-1:]
                elif rng.random() < p_tf:
                    pyramid = model.flow_pyramid(cur, ref, guide=gt, jitter=args.jitter)
                else:
                    pyramid = model.flow_pyramid(cur, ref)
            # The EPE in fp32: a bf16 flow is only good to ~0.06 px at 16 px.
            pyramid = [(f.float(), stride) for f, stride in pyramid]
            loss, fine = multiscale_epe(pyramid, gt)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 10.0)
            opt.step()
            step += 1
            run_loss += loss.item()
            run_epe += fine.item()
            n_run += 1
            if step % args.log_every == 0 or step == args.steps:
                writer.writerow(
                    [
                        step,
                        f"{run_loss / n_run:.4f}",
                        f"{run_epe / n_run:.4f}",
                        f"{lr:.3e}",
                        f"{time.time() - t0:.1f}",
                    ]
                )
                fh.flush()
                print(
                    f"step {step} loss {run_loss / n_run:.3f} epe {run_epe / n_run:.3f}"
                    f" lr {lr:.2e} {time.time() - t0:.0f}s",
                    flush=True,
                )
                run_loss = run_epe = 0.0
                n_run = 0
            if step % args.save_every == 0:
                save()

    final: dict = {}
    if args.heldout > 0:
        model.eval()
        held = heldout_set(args.heldout, data_root=data)
        cur, ref, gt = (t.to(args.device) for t in held)
        with torch.no_grad():
            final["heldout_epe_px"] = round(float(epe(model(cur, ref), gt)), 4)
            final["heldout_zero_flow_epe_px"] = round(float(gt.norm(dim=1).mean()), 4)
        final["heldout_pairs"] = args.heldout
    save(final)
    print(f"done: {final}", flush=True)
    return final


def main(argv: list[str] | None = None) -> None:
    train(parse_args(argv))


if __name__ == "__main__":
    main()
