"""The training campaign's learning curve: held-out validation against compute.

Reads the lineage manifest (``benchmarks/learning_curve.yaml``): the shipped
model's training metrics (one CSV, a ``run`` column, the runs in the order they
were trained) and the held-out validation JSONs that ``benchmarks/validate.py``
wrote for checkpoints along that lineage. The compute of a point is every run
before its run, plus its own run up to its step: ``elapsed_s`` (the trainer's
wall clock, resumes included) times the run's torch threads, so CPU-hours on
this 2-core machine as it was at the time (some runs shared it with other jobs).

Writes a CSV with one row per point: ``heldout`` rows (the real-GOP validation
at a checkpoint: loss, bpp and PSNR per rate point, BD-rate against the
previous point) and ``internal`` rows (the trainer's own validation every ``val_every``
steps: 256x256 pairs, a set that changed between runs, so comparable within a
run only), and a PNG: held-out loss against CPU-hours, the held-out RD curves,
and the internal validation per run. It also prints the held-out loss gained
per doubling of compute between consecutive points of one training method.

    python benchmarks/learning_curve.py --out-csv benchmarks/results/learning_curve.csv \\
        --out-png benchmarks/results/learning_curve.png
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import sys
from pathlib import Path

import yaml

from dvc_common import atomic_write_bytes

REPO = Path(__file__).resolve().parents[1]
FIELDS = ["kind", "label", "method", "run", "step", "cum_steps", "cpu_seconds"]
FIELDS += ["cpu_hours", "loss", "bd_rate_vs_prev"]
FIELDS += [f"{k}_q{q}" for q in range(4) for k in ("bpp", "psnr")]


def run_costs(csv_path: Path, config_path: Path) -> dict[str, dict]:
    """Per run, in training order: its threads and its train rows' (step, elapsed_s)."""
    threads: dict[str, int] = {}
    for entry in yaml.safe_load(config_path.read_text())["runs"]:
        t = entry["config"].get("threads")
        if not isinstance(t, int) or t < 1:
            # A null thread count means torch's default, which the log does
            # not record: the cost would be a guess.
            raise SystemExit(
                f"{config_path}: run {entry['run']} does not state its threads"
            )
        if threads.setdefault(entry["run"], t) != t:
            raise SystemExit(
                f"{config_path}: run {entry['run']} changed threads on resume"
            )
    runs: dict[str, dict] = {}
    with csv_path.open(newline="") as f:
        for row in csv.DictReader(f):
            r = runs.setdefault(row["run"], {"train": [], "val": []})
            if row["split"] == "train" and row["elapsed_s"]:
                r["train"].append((int(row["step"]), float(row["elapsed_s"])))
            elif row["split"] == "val":
                r["val"].append(row)
    missing = [name for name in runs if name not in threads]
    if missing:
        raise SystemExit(f"{config_path} has no config for run(s) {missing}")
    for name, r in runs.items():
        r["threads"] = threads[name]
        if not r["train"]:
            raise SystemExit(f"{csv_path}: run {name} has no train rows")
    return runs


def cost_at(runs: dict[str, dict], run: str, step: int) -> tuple[int, float]:
    """(training steps, CPU-seconds) spent up to ``step`` of ``run``, earlier runs included."""
    if run not in runs:
        raise SystemExit(f"no run {run!r} in the training metrics")
    steps, secs = 0, 0.0
    for name, r in runs.items():
        if name == run:
            done = [(s, e) for s, e in r["train"] if s <= step]
            if not done or r["train"][-1][0] < step:
                raise SystemExit(
                    f"run {run} logged no train row at or after step {step}"
                )
            # Logged every log_every steps: the last row at or before the
            # step, extended at the run's mean pace so far: within one log interval.
            s0, e0 = done[-1]
            pace = e0 / s0 if s0 else 0.0
            return steps + step, secs + (e0 + (step - s0) * pace) * r["threads"]
        steps += r["train"][-1][0]
        secs += r["train"][-1][1] * r["threads"]
    raise AssertionError("unreachable")


def _cost_fields(runs: dict[str, dict], run: str, step: int) -> dict:
    steps, secs = cost_at(runs, run, step)
    return {"cum_steps": steps, "cpu_seconds": round(secs, 1),
            "cpu_hours": round(secs / 3600, 3)}  # fmt: skip


def heldout_rows(manifest: dict, runs: dict[str, dict], root: Path) -> list[dict]:
    rows = []
    prev_pts = None
    from dvc_ext.evaluation.bdrate import bd_rate

    for p in manifest["points"]:
        data = json.loads((root / p["json"]).read_text())
        if p["result"] not in data["results"]:
            raise SystemExit(f"{p['json']} has no result {p['result']!r}")
        res = data["results"][p["result"]]
        pts = sorted(res["points"], key=lambda x: x["quality"])
        row = {"kind": "heldout", "label": p["label"], "run": p["run"], "step": p["step"],
               **_cost_fields(runs, p["run"], int(p["step"])),
               "loss": round(res["val_loss"], 5), "method": p.get("method", "pairs")}  # fmt: skip
        for q in pts:
            row[f"bpp_q{q['quality']}"] = round(q["bpp"], 5)
            row[f"psnr_q{q['quality']}"] = round(q["psnr"], 3)
        if prev_pts is not None:
            # Against the previous point, not the first: the curves moved to
            # higher quality over the campaign and no longer overlap the first.
            bd = bd_rate([x["bpp"] for x in prev_pts], [x["psnr"] for x in prev_pts],
                         [x["bpp"] for x in pts], [x["psnr"] for x in pts])  # fmt: skip
            row["bd_rate_vs_prev"] = "" if math.isnan(bd) else round(bd, 2)
        prev_pts = pts
        rows.append(row)
    for a, b in zip(rows, rows[1:]):
        if b["cpu_hours"] <= a["cpu_hours"]:
            raise SystemExit(
                f"points out of training order: {a['label']} then {b['label']}"
            )
    return rows


def internal_rows(runs: dict[str, dict]) -> list[dict]:
    rows = []
    for name, r in runs.items():
        by_step: dict[int, list[dict]] = {}
        for v in r["val"]:
            by_step.setdefault(int(v["step"]), []).append(v)
        for step, qs in sorted(by_step.items()):
            row = {"kind": "internal", "label": f"{name} ({qs[0]['stage']})", "run": name,
                   "method": "", "step": step, **_cost_fields(runs, name, step),
                   "loss": round(sum(float(v["loss"]) for v in qs) / len(qs), 5)}  # fmt: skip
            for v in qs:
                row[f"bpp_q{v['quality']}"] = round(float(v["bpp"]), 5)
                row[f"psnr_q{v['quality']}"] = round(float(v["psnr"]), 3)
            rows.append(row)
    return rows


def doubling_gains(
    rows: list[dict], min_doublings: float = 0.25
) -> list[tuple[str, str, float]]:
    """Held-out loss change (%) per doubling of CPU-hours between consecutive points.

    Only between points of one ``method``: where the training method changed
    (``chain=3`` after pairs) the jump is the method's, not the compute's.
    Intervals under ``min_doublings`` are merged into the next one.
    """
    out = []
    a = None
    for i, b in enumerate(rows):
        if a is None or b["method"] != a["method"]:
            a = b
            continue
        doublings = math.log2(b["cpu_hours"] / a["cpu_hours"])
        last_of_method = i + 1 == len(rows) or rows[i + 1]["method"] != b["method"]
        if doublings < min_doublings and not last_of_method:
            continue
        out.append(
            (a["label"], b["label"], (b["loss"] / a["loss"] - 1) * 100 / doublings)
        )
        a = b
    return out


def plot(path: Path, held: list[dict], internal: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(16, 4.8), dpi=100)
    try:
        ax = axes[0]
        h = [r["cpu_hours"] for r in held]
        ax.plot(h, [r["loss"] for r in held], marker="o")
        for r in held:
            ax.annotate(r["label"], (r["cpu_hours"], r["loss"]), fontsize=7,
                        xytext=(4, 4), textcoords="offset points")  # fmt: skip
        ax.set_xlabel("training CPU-hours (cumulative)")
        ax.set_ylabel("held-out validation loss (GOP 10, real files)")
        ax.set_title("held-out validation against compute")
        ax.grid(True, alpha=0.3)

        ax = axes[1]
        cmap = plt.get_cmap("viridis")
        top = max(h)
        for r in held:
            qs = [q for q in range(4) if f"bpp_q{q}" in r]
            ax.plot([r[f"bpp_q{q}"] for q in qs], [r[f"psnr_q{q}"] for q in qs], marker="o",
                    markersize=3, color=cmap(r["cpu_hours"] / top),
                    label=f"{r['label']}: {r['cpu_hours']:.1f} h")  # fmt: skip
        ax.set_xlabel("bpp")
        ax.set_ylabel("PSNR RGB (dB)")
        ax.set_title("held-out rate-distortion")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=6)

        ax = axes[2]
        for run in dict.fromkeys(r["run"] for r in internal):
            pts = [r for r in internal if r["run"] == run and "joint" in r["label"]]
            if pts:
                ax.plot([r["cpu_hours"] for r in pts], [r["loss"] for r in pts],
                        marker=".", label=run)  # fmt: skip
        ax.set_xlabel("training CPU-hours (cumulative)")
        ax.set_ylabel("trainer's validation loss (pairs, 256x256)")
        ax.set_title("internal validation, joint stage (set differs by run)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=6)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
    finally:
        plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--manifest", type=Path, default=REPO / "benchmarks" / "learning_curve.yaml"
    )
    ap.add_argument("--root", type=Path, default=REPO,
                    help="the manifest's paths are relative to this folder")  # fmt: skip
    ap.add_argument("--out-csv", type=Path, required=True)
    ap.add_argument("--out-png", type=Path, default=None)
    a = ap.parse_args(argv)
    if not a.manifest.is_file():
        raise SystemExit(f"no manifest at {a.manifest}")
    manifest = yaml.safe_load(a.manifest.read_text())
    runs = run_costs(a.root / manifest["csv"], a.root / manifest["config"])
    held = heldout_rows(manifest, runs, a.root)
    internal = internal_rows(runs)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=FIELDS, lineterminator="\n")
    w.writeheader()
    w.writerows(held + internal)
    atomic_write_bytes(a.out_csv, buf.getvalue().encode())
    if a.out_png is not None:
        plot(a.out_png, held, internal)
    for r in held:
        print(f"{r['label']:28s} {r['cum_steps']:6d} steps {r['cpu_hours']:6.2f} CPU-h "
              f"loss {r['loss']:.4f} BD-rate vs previous {r.get('bd_rate_vs_prev', '-')} %")  # fmt: skip
    for a_label, b_label, g in doubling_gains(held):
        print(f"{a_label} -> {b_label}: {g:+.1f} % loss per doubling of CPU-hours")
    return 0


if __name__ == "__main__":
    sys.exit(main())
