"""Flow estimators: accuracy on held-out synthetic motion, warping on real pairs, speed.

For every registered flow (learned ones with their shipped weights) and a
zero-flow baseline:

- EPE (px) on a fixed held-out synthetic set (:func:`flows.synthetic.heldout_set`:
  photographs never used for training, mixed translation / affine / piecewise
  motion), overall and on pure integer translations up to 12 px;
- EPE on integer translations (up to 12 px) of unseen natural images
  (:mod:`flows.translation_set`: the 24 Kodak images and the Middlebury
  frames, two crop sizes each): the mean over images, the worst image and how
  many images miss 0.5 px;
- warping PSNR (dB) of ``backward_warp(ref, flow)`` against ``cur`` on real
  consecutive frames: the Middlebury pairs, the Vimeo test-list clips and the
  first frames of HEVC BasketballPass (all evaluation data, never trained on);
- seconds per frame pair at 416x240 and 1920x1080 (median of a few runs; the
  1080p frames are a real frame up-scaled, there is no real 1080p clip here).

    python benchmarks/flow.py --data ../shared/data --out benchmarks/results/flow.json
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

from flows import backward_warp, build_flow, default_weights, list_flows
from flows.synthetic import SyntheticFlow, heldout_set, natural_images
from flows.translation_set import translation_epe, translation_sources


def _rgb(path: Path) -> torch.Tensor:
    import cv2

    img = cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    return torch.from_numpy(img).permute(2, 0, 1).float()[None] / 255


def _i420_frames(path: Path, w: int, h: int, count: int) -> list[torch.Tensor]:
    import cv2

    size = w * h * 3 // 2
    raw = np.fromfile(path, dtype=np.uint8, count=size * count)
    out = []
    for k in range(len(raw) // size):
        yuv = raw[k * size : (k + 1) * size].reshape(h * 3 // 2, w)
        rgb = cv2.cvtColor(yuv, cv2.COLOR_YUV2RGB_I420)
        out.append(torch.from_numpy(rgb).permute(2, 0, 1).float()[None] / 255)
    return out


def real_pairs(data: Path) -> dict[str, list[tuple[torch.Tensor, torch.Tensor]]]:
    """``{set name: [(cur, ref), ...]}`` of consecutive real frames."""
    sets: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {}
    mb = data / "eval" / "flow_pairs"
    if mb.is_dir():
        sets["middlebury"] = [
            (_rgb(mb / f"{n}2.png"), _rgb(mb / f"{n}1.png"))
            for n in ("rubberwhale", "basketball")
        ]
    vimeo = data / "train" / "vimeo_septuplet"
    listing = vimeo / "sep_testlist.txt"
    if listing.is_file():
        pairs = []
        for clip in listing.read_text().split():
            ims = [_rgb(vimeo / "sequences" / clip / f"im{k}.png") for k in range(1, 8)]
            pairs += list(zip(ims[1:], ims[:-1]))
        sets["vimeo_test"] = pairs
    bb = data / "eval" / "hevc" / "BasketballPass_416x240_50.yuv"
    if bb.is_file():
        frames = _i420_frames(bb, 416, 240, 9)
        sets["basketballpass"] = list(zip(frames[1:], frames[:-1]))
    return sets


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float((a - b).square().mean())
    return 10 * np.log10(1.0 / max(mse, 1e-12))


def _translations(n: int = 16, seed: int = 7) -> tuple[torch.Tensor, ...]:
    gen = SyntheticFlow(
        natural_images("heldout"), size=(128, 128), max_shift=12, noise=0.0
    )
    rng = np.random.default_rng(seed)
    pairs = []
    while len(pairs) < n:
        cur, ref, flow = gen.sample(rng, "translation")
        if float((flow - flow.round()).abs().max()) == 0.0:
            pairs.append((cur, ref, flow))
    return tuple(torch.stack(t) for t in zip(*pairs))


def _time(flow, cur: torch.Tensor, ref: torch.Tensor, runs: int) -> float:
    with torch.no_grad():
        flow(cur, ref)  # warm-up (allocator, OpenCV init)
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            flow(cur, ref)
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _epe(v: torch.Tensor, gt: torch.Tensor, border: int = 0) -> float:
    e = (v - gt).norm(dim=1)
    if border:
        e = e[:, border:-border, border:-border]
    return round(float(e.mean()), 4)


def run(
    data: Path | None,
    n_heldout: int,
    runs: int,
    weights: dict[str, Path] | None = None,
    only: list[str] | None = None,
) -> dict:
    """Measure every estimator (or those in ``only``); ``weights`` overrides
    the shipped checkpoints."""
    weights = weights or {}
    names = ["zero", *list_flows()]
    if only:
        unknown = sorted(set(only) - set(names))
        if unknown:
            raise SystemExit(f"unknown estimator(s) {unknown}; known: {names}")
        names = [n for n in names if n in only]
    held = heldout_set(n_heldout, size=(128, 128), data_root=data)
    trans = _translations()
    sources = translation_sources(data)
    pairs = real_pairs(data) if data else {}
    base = pairs.get("basketballpass", [None])[0]
    if base is None:
        small = (torch.rand(1, 3, 240, 416), torch.rand(1, 3, 240, 416))
    else:
        small = base
    big = tuple(
        torch.nn.functional.interpolate(
            x, size=(1080, 1920), mode="bilinear", align_corners=False
        )
        for x in small
    )
    results: dict = {}
    for name in names:
        if name == "zero":
            flow = None
            used = None
        else:
            flow = build_flow(name)
            used = None
            if flow.differentiable:
                path = weights.get(name, default_weights(name))
                if not path.is_file():
                    print(f"skip {name}: no weights at {path}")
                    continue
                flow = build_flow(name, weights=path)
                # "default" for the shipped file: the JSON then reads the same
                # on every machine.
                used = "default" if path == default_weights(name) else str(path)
            flow.eval()

        def est(cur, ref, flow=flow):
            if flow is None:
                return cur.new_zeros(cur.shape[0], 2, *cur.shape[-2:])
            with torch.no_grad():
                return flow(cur, ref)

        row: dict = {"weights": used}
        cur, ref, gt = held
        row["heldout_epe_px"] = _epe(est(cur, ref), gt)
        cur, ref, gt = trans
        row["translation_epe_px"] = _epe(est(cur, ref), gt, border=16)
        if sources:
            per_image = translation_epe(est, sources)
            worst = max(per_image, key=per_image.get)
            row["natural_translation"] = {
                "mean_epe_px": round(statistics.mean(per_image.values()), 4),
                "worst_image": worst,
                "worst_epe_px": per_image[worst],
                "images_over_0.5px": sum(v >= 0.5 for v in per_image.values()),
                "per_image": per_image,
            }
        for set_name, plist in pairs.items():
            psnrs = [_psnr(backward_warp(r, est(c, r)), c) for c, r in plist]
            row[f"warp_psnr_db_{set_name}"] = round(statistics.mean(psnrs), 3)
        if flow is not None:
            row["sec_416x240"] = round(_time(flow, *small, runs), 4)
            row["sec_1920x1080"] = round(_time(flow, *big, max(1, runs // 2)), 3)
            row["params"] = sum(p.numel() for p in flow.parameters())
        results[name] = row
        print(name, row, flush=True)
    return {
        "estimators": results,
        "setup": {
            "heldout_pairs": n_heldout,
            "heldout_size": [128, 128],
            "translation_pairs": int(trans[0].shape[0]),
            "natural_translation_images": len(sources),
            "real_pairs": {k: len(v) for k, v in pairs.items()},
            "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "machine": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "note": "1080p timing uses an up-scaled BasketballPass frame pair",
        },
    }


def markdown(res: dict) -> str:
    rows = res["estimators"]
    sets = sorted(
        {k[13:] for r in rows.values() for k in r if k.startswith("warp_psnr")}
    )
    head = ["flow", "held-out EPE (px)", "translation EPE (px)"]
    head += ["natural translations: mean / worst EPE (px)"]
    head += [f"warp PSNR {s} (dB)" for s in sets] + ["s/pair 416x240", "s/pair 1080p"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, r in rows.items():
        cells = [name, r["heldout_epe_px"], r["translation_epe_px"]]
        nt = r.get("natural_translation")
        cells += [
            f"{nt['mean_epe_px']} / {nt['worst_epe_px']} ({nt['worst_image']})"
            if nt
            else ""
        ]
        cells += [r.get(f"warp_psnr_db_{s}", "") for s in sets]
        cells += [r.get("sec_416x240", "-"), r.get("sec_1920x1080", "-")]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--data", type=Path, default=None, help="the shared data folder")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/flow.json"))
    p.add_argument("--heldout", type=int, default=64)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument(
        "--weights",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="checkpoint of a learned flow instead of the shipped one",
    )
    p.add_argument(
        "--estimators",
        nargs="+",
        default=None,
        metavar="NAME",
        help="measure only these (zero, dis, pwcnet, ...); default: all",
    )
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    overrides = dict(w.split("=", 1) for w in args.weights)
    res = run(
        args.data,
        args.heldout,
        args.runs,
        {k: Path(v) for k, v in overrides.items()},
        args.estimators,
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(args.out.name + ".tmp")
    tmp.write_text(json.dumps(res, indent=2) + "\n")
    os.replace(tmp, args.out)
    print(markdown(res))


if __name__ == "__main__":
    main()
