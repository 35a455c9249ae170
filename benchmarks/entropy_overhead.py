"""Real file bytes vs the model's own rate estimate, and coding time, on Kodak.

For each baseline codec: train it briefly on ../shared/data/train (or load a
checkpoint), then for every Kodak image compress to a payload file, decode it
back, and record real bytes, estimated bits (sum of -log2 likelihoods), encode
and decode time. Writes JSON.

    python benchmarks/entropy_overhead.py --kodak ../shared/data/eval/kodak \
        --train ../shared/data/train --steps 300 --out benchmarks/results/entropy_overhead.json
"""

from __future__ import annotations

import argparse
import json
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
        loss = (0.013 * 255**2 * F.mse_loss(out["x_hat"], xb) + bpp.mean())
        opt.zero_grad()
        loss.backward()
        opt.step()
        aux_opt.zero_grad()
        model.aux_loss().backward()
        aux_opt.step()
    model.eval()
    model.update(force=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kodak", type=Path, required=True)
    ap.add_argument("--train", type=Path, required=True)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--N", type=int, default=64)
    ap.add_argument("--M", type=int, default=96)
    ap.add_argument("--images", type=int, default=24, help="first n Kodak images")
    ap.add_argument("--codecs", nargs="*", default=list(BASELINES))
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/entropy_overhead.json"))
    args = ap.parse_args()

    torch.manual_seed(0)
    kodak = sorted(args.kodak.glob("kodim*.png"))[: args.images]
    train = _train_images(args.train)
    results = {
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads, "
        f"{platform.processor() or 'cpu'}",
        "torch": torch.__version__,
        "setup": f"N={args.N}, M={args.M}, trained {args.steps} steps on "
        f"{args.train} (lambda 0.013, 128x128 crops, batch 8); coding under 1 thread",
        "codecs": {},
    }
    for name in args.codecs:
        model = build_codec(name, in_channels=3, N=args.N, M=args.M)
        t0 = time.time()
        _brief_training(model, train, args.steps)
        rows = []
        for path in kodak:
            x = _load(path)
            xp, pads = pad_to_multiple(x, model.downsampling_factor)
            with torch.no_grad(), fixed_threads(1):
                est_bits = model.rate_bits(model(xp)["likelihoods"]).item()
                t = time.perf_counter()
                data = pack_compressed(model.compress(xp))
                t_enc = time.perf_counter() - t
                with tempfile.NamedTemporaryFile(suffix=".bin") as f:
                    f.write(data)
                    f.flush()
                    blob = Path(f.name).read_bytes()
                t = time.perf_counter()
                strings, shape = unpack_compressed(blob)
                x_hat = unpad(model.decompress(strings, shape)["x_hat"], pads)
                t_dec = time.perf_counter() - t
            mse = F.mse_loss(x_hat.clamp(0, 1), x).item()
            rows.append(
                {
                    "image": path.name,
                    "file_bytes": len(blob),
                    "estimated_bytes": est_bits / 8,
                    "overhead": len(blob) / (est_bits / 8) - 1,
                    "bpp": len(blob) * 8 / (x.shape[-1] * x.shape[-2]),
                    "psnr": 10 * np.log10(1 / mse),
                    "encode_s": t_enc,
                    "decode_s": t_dec,
                }
            )
        results["codecs"][name] = {
            "train_s": time.time() - t0,
            "mean_overhead": statistics.mean(r["overhead"] for r in rows),
            "max_abs_overhead": max(abs(r["overhead"]) for r in rows),
            "mean_bpp": statistics.mean(r["bpp"] for r in rows),
            "mean_psnr": statistics.mean(r["psnr"] for r in rows),
            "median_encode_s": statistics.median(r["encode_s"] for r in rows),
            "median_decode_s": statistics.median(r["decode_s"] for r in rows),
            "images": rows,
        }
        print(name, {k: v for k, v in results["codecs"][name].items() if k != "images"})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
