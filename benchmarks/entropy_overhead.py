"""Real file bytes vs the model's own rate estimate, quality and coding time, on Kodak.

For each codec: load a trained image checkpoint (``--checkpoint NAME=PATH``,
from ``dvc-ext train experiment=image``; every rate point of it is measured),
or train a baseline briefly on ../shared/data/train; then for every Kodak
image compress to a payload file, decode it back, and record real bytes,
estimated bits (sum of -log2 likelihoods), PSNR, MS-SSIM, encode and decode
time. With checkpoints, BD-rates against ``--reference`` close the table.
Writes JSON.

    python benchmarks/entropy_overhead.py --kodak ../shared/data/eval/kodak \
        --train ../shared/data/train --steps 300 --out benchmarks/results/entropy_overhead.json
    python benchmarks/entropy_overhead.py --kodak ../shared/data/eval/kodak \
        --checkpoint edic=runs/edic/checkpoints/last.pth \
        --checkpoint mbt2018-mean=runs/mean/checkpoints/last.pth \
        --reference mbt2018-mean --out benchmarks/results/image_codecs.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from dvc_common import fixed_threads, pad_to_multiple, unpad
from image_codecs import build_codec
from image_codecs.payload import pack_compressed, unpack_compressed

BASELINES = ("bmshj2018-hyperprior", "mbt2018-mean", "mbt2018")


def _load(path: Path) -> torch.Tensor:
    a = np.asarray(Image.open(path).convert("RGB"))
    return torch.from_numpy(a.copy()).permute(2, 0, 1).float().div(255)[None]


def _train_images(root: Path) -> list[torch.Tensor]:
    files = sorted((root / "vimeo_septuplet" / "sequences").rglob("im*.png"))
    return [_load(f) for f in files]


def _brief_training(model, images, steps: int, seed: int = 0) -> None:
    """A short CompressAI-style run (lambda = 0.013 * 255^2, 128 crops, batch 8)."""
    g = torch.Generator().manual_seed(seed)
    net = [p for n, p in model.named_parameters() if not n.endswith(".quantiles")]
    aux = [p for n, p in model.named_parameters() if n.endswith(".quantiles")]
    opt, aux_opt = torch.optim.Adam(net, lr=5e-4), torch.optim.Adam(aux, lr=1e-3)
    model.train()
    for _ in range(steps):
        batch = []
        for _ in range(8):
            im = images[int(torch.randint(len(images), (1,), generator=g))]
            y = int(torch.randint(im.shape[-2] - 127, (1,), generator=g))
            x = int(torch.randint(im.shape[-1] - 127, (1,), generator=g))
            batch.append(im[..., y : y + 128, x : x + 128])
        xb = torch.cat(batch)
        out = model(xb)
        bpp = model.rate_bits(out["likelihoods"]) / 128**2
        loss = 0.013 * 255**2 * F.mse_loss(out["x_hat"], xb) + bpp.mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        aux_opt.zero_grad()
        model.aux_loss().backward()
        aux_opt.step()
    model.eval()
    model.update(force=True)


def _measure(model, kodak: list[Path], quality, refine=None) -> dict:
    """One codec at one rate point over the Kodak images (``refine``: an
    ``image_codecs.base.Refinement`` for its encoder, or None)."""
    from dvc_ext.evaluation.metrics import ms_ssim, psnr

    rows = []
    extra = {} if refine is None else {"refine": refine}
    for path in kodak:
        x = _load(path)
        xp, pads = pad_to_multiple(x, model.downsampling_factor)
        with torch.no_grad(), fixed_threads(1):
            est_bits = model.rate_bits(model(xp, quality=quality)["likelihoods"]).item()
            t = time.perf_counter()
            data = pack_compressed(model.compress(xp, quality=quality, **extra))
            t_enc = time.perf_counter() - t
            with tempfile.NamedTemporaryFile(suffix=".bin") as f:
                f.write(data)
                f.flush()
                blob = Path(f.name).read_bytes()
            t = time.perf_counter()
            strings, shape = unpack_compressed(blob)
            x_hat = model.decompress(strings, shape, quality=quality)["x_hat"]
            x_hat = unpad(x_hat, pads).clamp(0, 1)
            t_dec = time.perf_counter() - t
        rows.append(
            {
                "image": path.name,
                "file_bytes": len(blob),
                # Of the latents as the transforms give them: a refined
                # encode codes other latents, so it has no overhead to report.
                "estimated_bytes": est_bits / 8,
                "overhead": None if refine else len(blob) / (est_bits / 8) - 1,
                "bpp": len(blob) * 8 / (x.shape[-1] * x.shape[-2]),
                "psnr": psnr(x_hat, x),
                "ms_ssim": ms_ssim(x_hat, x),
                "encode_s": t_enc,
                "decode_s": t_dec,
            }
        )
    return {
        "quality": quality,
        "mean_overhead": None
        if refine
        else statistics.mean(r["overhead"] for r in rows),
        "max_abs_overhead": None if refine else max(abs(r["overhead"]) for r in rows),
        "mean_bpp": statistics.mean(r["bpp"] for r in rows),
        "mean_psnr": statistics.mean(r["psnr"] for r in rows),
        "mean_ms_ssim": statistics.mean(r["ms_ssim"] for r in rows),
        "median_encode_s": statistics.median(r["encode_s"] for r in rows),
        "median_decode_s": statistics.median(r["decode_s"] for r in rows),
        "images": rows,
    }


def _from_checkpoint(path: Path):
    from dvc_ext.checkpoint import load_checkpoint
    from dvc_ext.training.model import load_weights

    blob = load_checkpoint(path, "image")
    model = build_codec(**blob["config"])
    load_weights(model, blob["state_dict"])
    meta = blob.get("meta") or {}
    info = {"checkpoint": str(path), "steps": meta.get("step")}
    if meta.get("lambdas"):
        info["lambdas"] = [float(v) for v in meta["lambdas"]]
        info["metric"] = str(meta.get("metric", "mse"))
    return model.eval(), info


def _bd_table(codecs: dict, reference: str) -> dict:
    from dvc_ext.evaluation.bdrate import bd_rate

    ref = codecs[reference]["points"]
    out = {}
    for name, c in codecs.items():
        if name == reference:
            continue
        pts = c["points"]
        out[name] = {
            f"bd_rate_{m}": bd_rate(
                [p["mean_bpp"] for p in ref],
                [p[f"mean_{m}"] for p in ref],
                [p["mean_bpp"] for p in pts],
                [p[f"mean_{m}"] for p in pts],
                label=f"{name} vs {reference} ({m})",
            )  # fmt: skip
            for m in ("psnr", "ms_ssim")
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kodak", type=Path, required=True)
    ap.add_argument("--train", type=Path, help="data for the brief training")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--N", type=int, default=64)
    ap.add_argument("--M", type=int, default=96)
    ap.add_argument("--images", type=int, default=24, help="first n Kodak images")
    ap.add_argument("--codecs", nargs="*", default=list(BASELINES))
    ap.add_argument(
        "--checkpoint", action="append", default=[], metavar="NAME=PATH",
        help="a trained image checkpoint (repeatable); replaces --codecs",
    )  # fmt: skip
    ap.add_argument(
        "--classical", action="append", default=[], metavar="NAME=JSON",
        help="a classical codec, e.g. 'x265-intra={\"name\": \"x265-intra\", "
        "\"levels\": [42, 37, 32, 27]}' (its rate points: the levels); repeatable",
    )  # fmt: skip
    ap.add_argument(
        "--refine", action="append", default=[], metavar="NAME=NEW:STEPS",
        help="also measure checkpoint NAME as NEW with its encoder refining each "
        "image's latents, STEPS gradient steps at its rate points' lambdas",
    )  # fmt: skip
    ap.add_argument("--reference", help="BD-rates against this checkpoint's NAME")
    ap.add_argument(
        "--merge", type=Path, action="append", default=[],
        help="an earlier JSON of this script whose codecs join the table",
    )  # fmt: skip
    ap.add_argument(
        "--out", type=Path, default=Path("benchmarks/results/entropy_overhead.json")
    )
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    kodak = sorted(args.kodak.glob("kodim*.png"))[: args.images]
    if not kodak:
        ap.error(f"no kodim*.png in {args.kodak}")
    jobs = [tuple(c.split("=", 1)) for c in args.checkpoint]
    if any(len(j) != 2 for j in jobs):
        ap.error("--checkpoint takes NAME=PATH")
    classical = {}
    for c in args.classical:
        name, _, spec = c.partition("=")
        try:
            spec = json.loads(spec)
            levels = spec.get("levels")
            classical[name] = build_codec(
                num_qualities=len(levels) if levels else 4, **spec
            ).eval()
        except (ValueError, TypeError, KeyError, AttributeError) as e:
            ap.error(f"--classical {c}: {e}")
    if not jobs and not classical and args.train is None:
        ap.error("give --train (brief training), --checkpoint NAME=PATH or --classical")
    train = _train_images(args.train) if not (jobs or classical) else []
    results = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, "
        f"{platform.processor() or 'cpu'}; coding under 1 torch thread",
        "torch": torch.__version__,
        "images": len(kodak),
        "setup": (
            "trained checkpoints, every rate point"
            if jobs or classical
            else f"N={args.N}, M={args.M}, trained {args.steps} steps on {args.train} "
            f"(lambda 0.013, 128x128 crops, batch 8)"
        ),
        "codecs": {},
    }
    runs = jobs or ([] if classical else [(c, None) for c in args.codecs])
    refined = {}
    for r in args.refine:
        base, _, rest = r.partition("=")
        new, _, steps = rest.partition(":")
        if base not in dict(jobs) or not new or not steps.isdigit():
            ap.error(f"--refine {r}: expected NAME=NEW:STEPS, NAME a --checkpoint")
        refined[new] = (base, int(steps))
        runs.append((new, dict(jobs)[base]))
    for name, path in runs + [(c, "classical") for c in classical]:
        t0 = time.time()
        if path == "classical":
            model, info = classical[name], {"classical": True}
        elif path is None:
            model = build_codec(name, in_channels=3, N=args.N, M=args.M)
            _brief_training(model, train, args.steps)
            info: dict = {"steps": args.steps}
        else:
            model, info = _from_checkpoint(Path(path))
        qualities = (
            list(range(model.num_qualities)) if model.num_qualities > 1 else [None]
        )
        refines = [None] * len(qualities)
        if name in refined:
            from image_codecs.base import Refinement

            lambdas = info.get("lambdas") or []
            if info.get("metric", "mse") != "mse":
                ap.error(
                    f"--refine: {name} was trained for {info['metric']!r}, not mse"
                )
            if len(lambdas) != len(qualities) or not model.refinable:
                ap.error(f"--refine: {name} needs a refinable codec and its lambdas")
            info["refine_steps"] = refined[name][1]
            refines = [Refinement(refined[name][1], lam) for lam in lambdas]
        points = [_measure(model, kodak, q, r) for q, r in zip(qualities, refines)]
        results["codecs"][name] = {
            **info,
            "codec": model.registry_name,
            "config": model.build_kwargs,
            "parameters": sum(p.numel() for p in model.parameters()),
            "seconds": time.time() - t0,
            "points": points,
        }
        for p in points:
            print(name, {k: v for k, v in p.items() if k != "images"}, flush=True)
    for earlier in args.merge:
        for name, c in json.loads(earlier.read_text())["codecs"].items():
            results["codecs"].setdefault(name, {**c, "from": str(earlier)})
    if args.reference:
        if args.reference not in results["codecs"]:
            ap.error(f"--reference {args.reference} is not one of the codecs")
        results["reference"] = args.reference
        results["bd"] = _bd_table(results["codecs"], args.reference)
        print("BD vs", args.reference, results["bd"])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=2))
    tmp.replace(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
