"""Held-out validation of video checkpoints: real files, every byte counted.

The validation set of the training campaign (docs/training.md, "Held-out
validation"), chosen once and never trained on:

- the two ``sep_testlist.txt`` septuplets of ``train/vimeo_septuplet``
  (448x256, 7 frames each);
- the last ``--vtest-frames`` frames (default 40: four GOPs) of ``train/videos/vtest.avi`` (768x576),
  inside the tail that every training config of the campaign holds out
  (``dataset.parts.videos.val_fraction=0.19``: the last 151 of 795 frames).

Each clip is coded at full frame size through ``dvc-ext compress``'s own path
(:func:`dvc_ext.tasks.codec.compress_file`: ``VideoCodec``, GOP ``--gop``, a
real ``.dvc`` file) at every rate point; bpp is the file's bytes over the
clips' pixels, PSNR is RGB, from the MSE pooled over every pixel of every clip
(the encoder's reconstruction, which the decoder reproduces bit for bit).
The validation loss is DVC's objective on those numbers, averaged over the
rate points: ``mean_q(lambda_q * MSE_q + bpp_q)``, lambda 256..2048.

Pooled over pixels, the vtest clip (40 frames of 768x576) is about 92 % of
that loss, so a model can gain on it by learning a static camera alone. Each
result therefore also holds every clip's own loss, their mean with the clips
weighted equally (``clip_mean_loss``) and, against the reference, every clip's
BD-rate (``bd_rate_per_clip_vs_REF``).

    python benchmarks/validate.py --checkpoint default=default \\
        --checkpoint new=runs/v1/checkpoints/last.pth --out benchmarks/results/validation.json
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
LAMBDAS = (256.0, 512.0, 1024.0, 2048.0)


def validation_clips(data: Path, vtest_frames: int) -> list[dict]:
    """The clips of the validation set: ``{"name", "path", "start", "frames"}``."""
    vimeo = data / "train" / "vimeo_septuplet"
    clips = []
    for line in (vimeo / "sep_testlist.txt").read_text().split():
        clips.append({"name": f"vimeo/{line}", "path": vimeo / "sequences" / line,
                      "start": 0, "frames": None})  # fmt: skip
    vtest = data / "train" / "videos" / "vtest.avi"
    from dvc_ext.io import open_video

    n = open_video(vtest).info.num_frames
    clips.append({"name": f"vtest[{n - vtest_frames}:{n}]", "path": vtest,
                  "start": n - vtest_frames, "frames": vtest_frames})  # fmt: skip
    return clips


def validate(
    checkpoint: str,
    clips: list[dict],
    gop: int,
    threads: int,
    flow: dict | None = None,
    pred_modes: list[str] | None = None,
    refine_steps: int = 0,
) -> dict:
    from dvc_ext.tasks.codec import DEFAULT_PRED_MODES, compress_file, load_video_model

    pred_modes = list(pred_modes or DEFAULT_PRED_MODES)
    loaded = load_video_model(checkpoint, flow=flow)
    points = []
    t0 = time.time()
    for q in range(loaded.model.num_qualities):
        bits = px = sq = 0.0
        per_clip = []
        for clip in clips:
            with tempfile.TemporaryDirectory() as tmp:
                s = compress_file(
                    clip["path"], Path(tmp) / "v.dvc", loaded, quality=q,
                    intra_period=gop, frames=clip["frames"], start=clip["start"],
                    threads=threads, pred_modes=pred_modes, refine_steps=refine_steps,
                )  # fmt: skip
            n = s["frames"] * s["width"] * s["height"]
            mse = 10 ** (-s["psnr_rgb"] / 10)
            bits += s["bytes"] * 8
            px += n
            sq += mse * n
            per_clip.append({"clip": clip["name"], "frames": s["frames"],
                             "bpp": s["bpp"], "psnr": s["psnr_rgb"],
                             "counts": s["counts"], "pred_modes": s["pred_modes"]})  # fmt: skip
        mse = sq / px
        points.append({"quality": q, "bpp": bits / px, "mse": mse,
                       "psnr": 10 * math.log10(1 / mse), "clips": per_clip})  # fmt: skip
        print(f"  q{q}: {points[-1]['bpp']:.4f} bpp {points[-1]['psnr']:.2f} dB",
              file=sys.stderr)  # fmt: skip
    lam = LAMBDAS if len(points) == len(LAMBDAS) else None
    loss = (
        sum(lam[p["quality"]] * p["mse"] + p["bpp"] for p in points) / len(points)
        if lam
        else None
    )
    return {"checkpoint": loaded.source, "flow": flow, "pred_modes": pred_modes,
            "refine_steps": refine_steps, "points": points,
            "val_loss": loss, "seconds": round(time.time() - t0, 1)}  # fmt: skip


def clip_curves(points: list[dict]) -> dict[str, tuple[list[float], list[float]]]:
    """``{clip: (bpps, psnrs)}`` over the rate points, in quality order."""
    out: dict[str, tuple[list[float], list[float]]] = {}
    for p in sorted(points, key=lambda p: p["quality"]):
        for c in p["clips"]:
            bpps, psnrs = out.setdefault(c["clip"], ([], []))
            bpps.append(c["bpp"])
            psnrs.append(c["psnr"])
    return out


def clip_losses(points: list[dict]) -> dict[str, float]:
    """Each clip's own validation loss, from the per-clip numbers of ``points``."""
    if len(points) != len(LAMBDAS):
        return {}
    return {
        clip: sum(lam * 10 ** (-psnr / 10) + bpp
                  for lam, bpp, psnr in zip(LAMBDAS, bpps, psnrs)) / len(LAMBDAS)
        for clip, (bpps, psnrs) in clip_curves(points).items()
    }  # fmt: skip


def _flow_spec(spec: str) -> tuple[str, dict]:
    """``LABEL:name=dis,preset=fine`` -> ``(LABEL, {"name": "dis", "preset": "fine"})``."""
    label, sep, body = spec.partition(":")
    items = [kv.partition("=") for kv in body.split(",")] if sep else []
    if not label or not items or any(not k or not eq for k, eq, _ in items):
        raise SystemExit(f"--flow wants LABEL:key=value[,key=value], got {spec!r}")
    return label, {k: v for k, _, v in items}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", action="append", required=True,
                    help="LABEL=PATH (PATH 'default' = the shipped model); the first is the reference"
                         " unless --reference names one")  # fmt: skip
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--vtest-frames", type=int, default=40)
    ap.add_argument("--gop", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--flow", action="append", default=[],
                    help="LABEL:name=dis,preset=fine: that checkpoint encodes with this flow")  # fmt: skip
    ap.add_argument("--pred-modes", action="append", default=[],
                    help="LABEL:mc,warp: that checkpoint's encoder picks P-frame predictions"
                         " from these (default: compress's, all three)")  # fmt: skip
    ap.add_argument("--refine", action="append", default=[], metavar="LABEL:STEPS",
                    help="that checkpoint's encoder refines each I-frame's and residual's"
                         " latents, STEPS gradient steps (default 0)")  # fmt: skip
    ap.add_argument("--reference", default=None, metavar="JSON:LABEL",
                    help="take the reference's numbers from an earlier run's JSON instead of re-coding it")  # fmt: skip
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args(argv)
    flows = dict(_flow_spec(f) for f in a.flow)
    modes = {
        lab: m.split(",") for lab, _, m in (x.partition(":") for x in a.pred_modes)
    }
    refine = {lab: n for lab, _, n in (x.partition(":") for x in a.refine)}
    if not all(n.isdigit() for n in refine.values()):
        ap.error(f"--refine takes LABEL:STEPS, got {a.refine}")
    refine = {lab: int(n) for lab, n in refine.items()}
    from dvc_ext.evaluation.bdrate import bd_rate

    torch.set_num_threads(a.threads)
    clips = validation_clips(a.data, a.vtest_frames)
    results = {}
    if a.reference:
        ref_file, _, ref_label = a.reference.rpartition(":")
        earlier = json.loads(Path(ref_file).read_text())
        if earlier.get("gop") != a.gop or earlier.get("clips") != [
            {k: str(v) for k, v in c.items()} for c in clips
        ]:
            raise SystemExit(f"{ref_file} was measured on other clips or GOP")
        if ref_label not in earlier["results"]:
            raise SystemExit(f"{ref_file} has no result {ref_label!r}")
        results[ref_label] = {**earlier["results"][ref_label], "from": ref_file}
    for spec in a.checkpoint:
        label, _, path = spec.partition("=")
        print(f"{label}: {path}", file=sys.stderr)
        results[label] = validate(
            path or label, clips, a.gop, a.threads, flows.get(label), modes.get(label),
            refine.get(label, 0),
        )  # fmt: skip
    labels = list(results)
    for r in results.values():
        losses = clip_losses(r["points"])
        r["clip_losses"] = losses
        r["clip_mean_loss"] = sum(losses.values()) / len(losses) if losses else None
    ref = results[labels[0]]["points"]
    ref_clips = clip_curves(ref)
    for label in labels[1:]:
        pts = results[label]["points"]
        results[label]["bd_rate_vs_" + labels[0]] = bd_rate(
            [p["bpp"] for p in ref], [p["psnr"] for p in ref],
            [p["bpp"] for p in pts], [p["psnr"] for p in pts],
        )  # fmt: skip
        results[label]["bd_rate_per_clip_vs_" + labels[0]] = {
            clip: bd_rate(*ref_clips[clip], *curve)
            for clip, curve in clip_curves(pts).items()
            if clip in ref_clips
        }
    out = {
        "command": "python benchmarks/validate.py " + " ".join(argv or sys.argv[1:]),
        "machine": f"{platform.machine()}, {platform.processor() or platform.node()}",
        "torch": torch.__version__,
        "gop": a.gop,
        "clips": [{k: str(v) for k, v in c.items()} for c in clips],
        "results": results,
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(out, indent=1) + "\n")
    for label, r in results.items():
        bd = r.get("bd_rate_vs_" + labels[0])
        print(f"{label}: val loss {r['val_loss']:.4f}"
              + (f", BD-rate vs {labels[0]} {bd:+.1f} %" if bd is not None else ""))  # fmt: skip
        per_clip = r.get("bd_rate_per_clip_vs_" + labels[0], {})
        for clip, loss in r["clip_losses"].items():
            bd_clip = per_clip.get(clip)
            print(f"  {clip}: loss {loss:.4f}"
                  + (f", BD-rate {bd_clip:+.1f} %" if bd_clip is not None else ""))  # fmt: skip
        if r["clip_mean_loss"] is not None:
            print(f"  clips weighted equally: loss {r['clip_mean_loss']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
