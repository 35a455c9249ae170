"""Encode / decode time, parameters and peak memory of every image codec plug-in.

One table for the image-codec issues: each codec at the same channel widths
(``--N``, ``--M``; random weights, because coding time depends on the
architecture, not on training) compresses one Kodak image at 768x512 and the
same image resized to 1920x1080, to real bytes, and decodes them back. It also
holds two claims the papers make and we check here:

* EDIC (Liu et al.) decodes about two orders of magnitude faster than Minnen's
  serial autoregressive ``mbt2018`` at 768x512: see ``decode_ratio_vs``.
* the transformer context codec (Shen & Liu) trades speed for context through
  its sliding ``window``: list ``transformer-ctx:window=K`` specs.

Each (codec, size) runs in its own process, so its peak resident memory
(``ru_maxrss``) is its own; torch runs one thread. A spec is a registered name
with optional ``key=value`` constructor arguments after a colon.

    python benchmarks/image_codec_speed.py --image ../shared/data/eval/kodak/kodim01.png \\
        --out benchmarks/results/image_codec_speed.json
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

SPECS = (
    "bmshj2018-hyperprior",
    "mbt2018-mean",
    "mbt2018",
    "edic",
    "gaacnn",
    "transformer-ctx",
    "transformer-ctx:window=0",
    "transformer-ctx:window=1",
    "transformer-ctx:window=4",
)
SIZES = ((768, 512), (1920, 1080))


def parse_spec(spec: str) -> tuple[str, dict]:
    """``name:key=value,key=value`` -> (name, kwargs)."""
    name, _, rest = spec.partition(":")
    kwargs = {}
    for item in filter(None, rest.split(",")):
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"bad codec spec {spec!r}: {item!r} is not key=value")
        try:
            kwargs[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            kwargs[key] = value
    return name, kwargs


def worker(
    spec: str, width: int, height: int, image: Path, N: int, M: int, runs: int
) -> dict:
    import numpy as np
    import torch
    from PIL import Image

    from dvc_common import fixed_threads, pad_to_multiple
    from image_codecs import build_codec

    torch.manual_seed(0)
    img = Image.open(image).convert("RGB")
    if img.size != (width, height):
        img = img.resize((width, height), Image.BICUBIC)
    x = torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1).float().div(255)[None]
    name, kwargs = parse_spec(spec)
    model = build_codec(name, in_channels=3, N=N, M=M, **kwargs).eval()
    model.update(force=True)
    xp, _ = pad_to_multiple(x, model.downsampling_factor)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    enc_s, dec_s = [], []
    with torch.no_grad(), fixed_threads(1):
        for _ in range(runs):
            t = time.perf_counter()
            enc = model.compress(xp)
            enc_s.append(time.perf_counter() - t)
            t = time.perf_counter()
            out = model.decompress(enc["strings"], enc["shape"])
            dec_s.append(time.perf_counter() - t)
    assert out["x_hat"].shape == xp.shape
    nbytes = sum(len(s[0]) for s in enc["strings"])
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return {
        "spec": spec,
        "size": f"{width}x{height}",
        "config": model.build_kwargs,
        "parameters": sum(p.numel() for p in model.parameters()),
        "bytes": nbytes,
        "encode_s": enc_s,
        "decode_s": dec_s,
        "median_encode_s": statistics.median(enc_s),
        "median_decode_s": statistics.median(dec_s),
        "peak_rss_mb": peak / 1024,
        "peak_rss_rise_mb": (peak - rss_before) / 1024,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--image", type=Path, required=True, help="a Kodak image (768x512)")
    ap.add_argument("--specs", nargs="*", default=list(SPECS))
    ap.add_argument("--sizes", nargs="*", default=[f"{w}x{h}" for w, h in SIZES])
    ap.add_argument("--N", type=int, default=128)
    ap.add_argument("--M", type=int, default=192)
    ap.add_argument("--runs", type=int, default=3, help="codings per codec at 768x512")
    ap.add_argument("--runs-large", type=int, default=1, help="... above 768x512")
    ap.add_argument(
        "--ratio-to", default="edic", help="decode-time ratios against this spec"
    )
    ap.add_argument(
        "--out", type=Path, default=Path("benchmarks/results/image_codec_speed.json")
    )
    ap.add_argument(
        "--worker", nargs=3, metavar=("SPEC", "W", "H"), help=argparse.SUPPRESS
    )
    a = ap.parse_args()
    if not a.image.is_file():
        ap.error(f"no image at {a.image}")
    if a.worker:
        spec, w, h = a.worker
        w, h = int(w), int(h)
        runs = a.runs if w * h <= 768 * 512 else a.runs_large
        print(json.dumps(worker(spec, w, h, a.image, a.N, a.M, runs)))
        return
    for spec in a.specs:
        parse_spec(spec)
    sizes = []
    for s in a.sizes:
        try:
            w, h = (int(v) for v in s.lower().split("x"))
        except ValueError:
            ap.error(f"--sizes: {s!r} is not WxH")
        sizes.append((w, h))
    results = {
        "command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs; 1 torch thread, "
        "one process per (codec, size)",
        "image": a.image.name,
        "widths": {"N": a.N, "M": a.M},
        "weights": "random (coding time depends on the architecture, not the weights)",
        "results": [],
    }
    for w, h in sizes:
        for spec in a.specs:
            cmd = [sys.executable, __file__, "--image", str(a.image), "--N", str(a.N),
                   "--M", str(a.M), "--runs", str(a.runs), "--runs-large",
                   str(a.runs_large), "--worker", spec, str(w), str(h)]  # fmt: skip
            env = {**os.environ, "OMP_NUM_THREADS": "1"}
            p = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if p.returncode != 0:
                raise SystemExit(f"{spec} at {w}x{h} failed:\n{p.stderr[-2000:]}")
            r = json.loads(p.stdout.strip().splitlines()[-1])
            results["results"].append(r)
            print(f"{spec:28s} {w}x{h}: encode {r['median_encode_s']:.2f} s, decode "
                  f"{r['median_decode_s']:.2f} s, peak {r['peak_rss_mb']:.0f} MB", flush=True)  # fmt: skip
    ref = {
        r["size"]: r["median_decode_s"]
        for r in results["results"]
        if r["spec"] == a.ratio_to
    }
    for r in results["results"]:
        if r["size"] in ref:
            r[f"decode_ratio_vs_{a.ratio_to}"] = r["median_decode_s"] / ref[r["size"]]
    a.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = a.out.with_name(a.out.name + ".tmp")
    tmp.write_text(json.dumps(results, indent=2))
    tmp.replace(a.out)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
