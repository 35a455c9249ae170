"""PWC-Net's confidence fill: which steps and settings, chosen away from the tests.

The fill (:class:`flows.pwcnet.PWCNet`, ``fill_sigma`` / ``fill_tau``) is
parameter-free, so it can be tried on fixed weights. Each setting is scored on
what decides it, none of which is the unit test's translation subset:

- the natural-translation set minus the test subset (mean and worst image);
- EPE on the held-out synthetic set (piecewise motion: where the fill could
  smear motion boundaries);
- warping PSNR on the real pairs (Middlebury, Vimeo test clips, BasketballPass).

The subset's numbers are printed beside them, as the confirmation, not the
criterion.

    python benchmarks/flow_fill.py --data ../shared/data --out benchmarks/results/flow_fill.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from flow import _epe, _psnr, real_pairs  # noqa: E402

from dvc_common import atomic_write_bytes  # noqa: E402
from flows import backward_warp, build_flow  # noqa: E402
from flows.synthetic import heldout_set  # noqa: E402
from flows.translation_set import translation_epe, translation_sources  # noqa: E402

#: The unit test's subset (tests/test_flows.py, TRANSLATION_SUBSET).
SUBSET = ["kodim03", "kodim07", "kodim19", "kodim20", "kodim23",
          "rubberwhale1", "basketball2"]  # fmt: skip

#: (fill_sigma per decoding step at strides 16, 8, 4, 4; fill_tau).
SETTINGS = [
    ((0, 0, 0, 0), 3.0),
    ((8, 8, 5, 0), 3.0),
    ((8, 8, 5, 5), 3.0),
    ((8, 8, 0, 0), 0.1),
    ((4, 4, 0, 0), 0.3),
    ((8, 2, 0, 0), 0.3),
    ((3, 0, 0, 0), 1.0),
    ((16, 0, 0, 0), 0.3),
    ((8, 0, 0, 0), 0.1),
    ((8, 0, 0, 0), 0.3),
]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--data", type=Path, required=True, help="the shared data folder")
    p.add_argument("--weights", default="default", help="pwcnet weights to probe")
    p.add_argument(
        "--out", type=Path, default=Path("benchmarks/results/flow_fill.json")
    )
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    state = build_flow("pwcnet", weights=args.weights).state_dict()
    sources = translation_sources(args.data)
    held_cur, held_ref, held_gt = heldout_set(64, size=(128, 128), data_root=args.data)
    pairs = real_pairs(args.data)
    rows = []
    for sigma, tau in SETTINGS:
        flow = build_flow("pwcnet", fill_sigma=sigma, fill_tau=tau).eval()
        flow.load_state_dict(state)

        def est(cur, ref, flow=flow):
            with torch.no_grad():
                return flow(cur, ref)

        per_image = translation_epe(est, sources)
        rest = {k: v for k, v in per_image.items() if k not in SUBSET}
        sub = {k: per_image[k] for k in SUBSET if k in per_image}
        worst = max(rest, key=rest.get)
        row = {
            "fill_sigma": list(sigma),
            "fill_tau": tau,
            "others_mean_epe_px": round(statistics.mean(rest.values()), 4),
            "others_worst": [worst, rest[worst]],
            "others_over_0.5px": sum(v >= 0.5 for v in rest.values()),
            "heldout_epe_px": _epe(est(held_cur, held_ref), held_gt),
            "warp_psnr_db": {
                k: round(
                    statistics.mean(
                        _psnr(backward_warp(r, est(c, r)), c) for c, r in v
                    ),
                    3,
                )
                for k, v in pairs.items()
            },
            "test_subset_epe_px": sub,
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    res = {
        "weights": args.weights,
        "settings": rows,
        "setup": {
            "others": len(sources) - len(SUBSET),
            "heldout_pairs": 64,
            "threads": args.threads,
            "torch": torch.__version__,
        },  # fmt: skip
    }
    atomic_write_bytes(args.out, (json.dumps(res, indent=2) + "\n").encode())


if __name__ == "__main__":
    main()
