"""Decode time of EDIC vs the autoregressive mbt2018 and the mean-scale mbt2018-mean.

The EDIC paper (Liu et al., "A Unified End-to-End Framework for Efficient Deep
Image Compression") claims decoding about two orders of magnitude faster than
Minnen's autoregressive model at 768x512. This script measures it here: each
codec at the same channel widths (N, M) compresses one Kodak image (768x512)
and decodes it ``--runs`` times under one torch thread; JSON holds every run,
the median and the ratios. Weights are random unless ``--checkpoint NAME=PATH``
names trained ones: decode time depends on the architecture (a serial
position-by-position loop or not), not on training.

    python benchmarks/decode_speed.py --image ../shared/data/eval/kodak/kodim01.png \
        --runs 5 --out benchmarks/results/decode_speed.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from dvc_common import fixed_threads, pad_to_multiple
from image_codecs import build_codec

CODECS = ("edic", "mbt2018", "mbt2018-mean")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--image", type=Path, required=True, help="a 768x512 Kodak image")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--N", type=int, default=192)
    ap.add_argument("--M", type=int, default=192)
    ap.add_argument("--codecs", nargs="*", default=list(CODECS))
    ap.add_argument(
        "--checkpoint", action="append", default=[], metavar="NAME=PATH",
        help="trained weights for a codec (else random weights at --N/--M)",
    )  # fmt: skip
    ap.add_argument(
        "--out", type=Path, default=Path("benchmarks/results/decode_speed.json")
    )
    args = ap.parse_args()
    if not args.image.is_file():
        ap.error(f"no image at {args.image}")
    torch.manual_seed(0)
    rgb = np.asarray(Image.open(args.image).convert("RGB"))
    x = torch.from_numpy(rgb.copy()).permute(2, 0, 1).float().div(255)[None]
    trained = dict(c.split("=", 1) for c in args.checkpoint)
    results = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, "
        f"{platform.processor() or 'cpu'}; 1 torch thread",
        "torch": torch.__version__,
        "image": f"{args.image.name} ({x.shape[-1]}x{x.shape[-2]})",
        "runs": args.runs,
        "codecs": {},
    }
    for name in args.codecs:
        if name in trained:
            from dvc_ext.checkpoint import load_checkpoint
            from dvc_ext.training.model import load_weights

            blob = load_checkpoint(trained[name], "image")
            model = build_codec(**blob["config"])
            load_weights(model, blob["state_dict"])
        else:
            model = build_codec(name, in_channels=3, N=args.N, M=args.M)
            model.update(force=True)
        model.eval()
        xp, _ = pad_to_multiple(x, model.downsampling_factor)
        with torch.no_grad(), fixed_threads(1):
            t = time.perf_counter()
            enc = model.compress(xp)
            t_enc = time.perf_counter() - t
            runs = []
            for _ in range(args.runs):
                t = time.perf_counter()
                model.decompress(enc["strings"], enc["shape"])
                runs.append(time.perf_counter() - t)
        results["codecs"][name] = {
            "weights": trained.get(name, f"random, N={args.N}, M={args.M}"),
            "config": model.build_kwargs,
            "parameters": sum(p.numel() for p in model.parameters()),
            "bytes": sum(len(s[0]) for s in enc["strings"]),
            "encode_s": t_enc,
            "decode_s": runs,
            "median_decode_s": statistics.median(runs),
        }
        print(name, f"median decode {statistics.median(runs):.3f} s", flush=True)
    med = {n: c["median_decode_s"] for n, c in results["codecs"].items()}
    if "edic" in med:
        results["decode_time_ratio_vs_edic"] = {
            n: v / med["edic"] for n, v in med.items() if n != "edic"
        }
        print("decode time / edic's:", results["decode_time_ratio_vs_edic"])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=2))
    tmp.replace(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
