"""The benchmark scripts still run (tiny sizes; the numbers themselves live in JSON)."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def test_image_codec_speed_writes_json(tmp_path):
    rng = np.random.default_rng(0)
    img = tmp_path / "img.png"
    Image.fromarray(rng.integers(0, 256, (64, 96, 3), dtype=np.uint8)).save(img)
    out = tmp_path / "speed.json"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "image_codec_speed.py"),
           "--image", str(img), "--sizes", "64x64", "--N", "8", "--M", "8", "--runs", "1",
           "--specs", "bmshj2018-hyperprior", "transformer-ctx:window=1",
           "--ratio-to", "bmshj2018-hyperprior", "--out", str(out)]  # fmt: skip
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    rows = json.loads(out.read_text())["results"]
    assert [r["spec"] for r in rows] == [
        "bmshj2018-hyperprior",
        "transformer-ctx:window=1",
    ]
    assert (
        rows[1]["config"]["window"] == 1
        and rows[0]["decode_ratio_vs_bmshj2018-hyperprior"] == 1
    )
    assert all(r["bytes"] > 0 and r["peak_rss_mb"] > 0 for r in rows)
    bad = subprocess.run(cmd[:-7] + ["--specs", "edic:window", "--out", str(out)],
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    assert bad.returncode != 0 and "not key=value" in bad.stderr


def test_codec_speed_runs_both_codecs(tmp_path):
    out = tmp_path / "codec_speed.json"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "codec_speed.py"), "--frames", "2",
           "--threads", "1", "--sizes", "128x128", "--out", str(out)]  # fmt: skip
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    rows = json.loads(out.read_text())["rows"]
    assert [r["codec"] for r in rows] == ["dvc-ext", "ssf2020"]
    assert rows[0]["trained"] and rows[0]["payload_bytes"] > 0
    assert rows[0]["encode_speed_vs_ssf2020"] > 0 and rows[1]["decode_fps"] > 0


def test_train_speed_writes_json(tmp_path, shared_data):
    out = tmp_path / "train_speed.json"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "train_speed.py"), "--data",
           str(shared_data), "--stages", "image", "--models", "default", "--modes",
           "bf16+channels_last", "--threads", "1", "--out", str(out)]  # fmt: skip
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    (row,) = json.loads(out.read_text())["rows"]
    assert row["stage"] == "image" and row["sec_per_step"] > 0, row


def test_validate_codes_the_held_out_clips(tmp_path, shared_data):
    """The campaign's validation: real files of held-out clips at every rate point
    (here 2 vtest frames and GOP 2; the shipped model)."""
    out = tmp_path / "val.json"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "validate.py"), "--data",
           str(shared_data), "--vtest-frames", "2", "--gop", "2", "--checkpoint",
           "default=default", "--out", str(out)]  # fmt: skip
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stderr[-2000:]
    res = json.loads(out.read_text())["results"]["default"]
    bpps = [pt["bpp"] for pt in res["points"]]
    assert bpps == sorted(bpps) and bpps[0] > 0
    assert [c["frames"] for c in res["points"][0]["clips"]] == [7, 7, 2]
    assert res["val_loss"] > 0
    losses = res["clip_losses"]
    assert list(losses) == [c["clip"] for c in res["points"][0]["clips"]]
    assert res["clip_mean_loss"] == pytest.approx(sum(losses.values()) / 3)


def test_validate_weighs_clips_equally_beside_the_pooled_loss():
    """A clip with many pixels dominates the pooled loss, not the clip mean; the
    per-clip losses and curves come from each clip's own bpp and PSNR."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "validate_mod", ROOT / "benchmarks" / "validate.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    points = [
        {"quality": q, "clips": [{"clip": "small", "bpp": 0.1 * (q + 1), "psnr": 30.0 + q},
                                 {"clip": "big", "bpp": 0.2 * (q + 1), "psnr": 40.0 + q}]}
        for q in range(4)
    ]  # fmt: skip
    losses = mod.clip_losses(points)
    want_small = (
        sum(
            lam * 10 ** (-(30.0 + q) / 10) + 0.1 * (q + 1)
            for q, lam in enumerate(mod.LAMBDAS)
        )
        / 4
    )
    assert losses["small"] == pytest.approx(want_small)
    assert losses["small"] > losses["big"]
    bpps, psnrs = mod.clip_curves(points)["big"]
    assert bpps == pytest.approx([0.2, 0.4, 0.6, 0.8]) and psnrs == [40, 41, 42, 43]
    assert mod.clip_losses(points[:3]) == {}  # not the campaign's four rate points


def test_entropy_overhead_measures_classical_codecs(tmp_path):
    rng = np.random.default_rng(1)
    kodak = tmp_path / "kodak"
    kodak.mkdir()
    smooth = np.cumsum(rng.integers(-3, 4, (64, 96, 3)), axis=1) + 128
    Image.fromarray(np.clip(smooth, 0, 255).astype(np.uint8)).save(
        kodak / "kodim01.png"
    )
    out = tmp_path / "classical.json"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "entropy_overhead.py"),
           "--kodak", str(kodak), "--classical", 'j={"name": "jpeg", "levels": [20, 80]}',
           "--reference", "j", "--out", str(out)]  # fmt: skip
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    pts = json.loads(out.read_text())["codecs"]["j"]["points"]
    assert len(pts) == 2 and pts[0]["mean_bpp"] < pts[1]["mean_bpp"]
    assert 0 < pts[0]["mean_overhead"] < 0.05  # the payload's varints only
    bad = subprocess.run(cmd[:4] + ["--classical", 'j={"name": "jpeg", "levels": [80, 20]}',
                                    "--out", str(out)],
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    assert bad.returncode != 0 and "increase" in bad.stderr


def _write_lineage(folder: Path, threads_b: int = 2) -> Path:
    """Two runs (a: 1 thread, 100 s over 200 steps; b: ``threads_b`` threads) and two points."""
    rows = ["run,step,split,quality,loss,bpp,psnr,stage,elapsed_s"]
    rows += [f"a,{s},train,all,1,0.1,30,joint,{s / 2}" for s in (20, 100, 200)]
    rows += [f"b,{s},train,all,1,0.1,30,joint,{s}" for s in (20, 40, 60)]
    rows += [f"b,60,val,{q},{1 + q},0.{q + 1},3{q},joint," for q in range(4)]
    (folder / "m.csv").write_text("\n".join(rows) + "\n")
    cfg = {"runs": [{"run": "a", "config": {"threads": 1}},
                    {"run": "b", "config": {"threads": threads_b}}]}  # fmt: skip
    (folder / "m.yaml").write_text(json.dumps(cfg))

    def result(bpp0, psnr0):
        pts = [
            {"quality": q, "bpp": bpp0 * (1 + q), "psnr": psnr0 + q} for q in range(4)
        ]
        return {"results": {"r": {"val_loss": 1.0 / psnr0, "points": pts}}}

    (folder / "p1.json").write_text(json.dumps(result(0.1, 30.0)))
    (folder / "p2.json").write_text(json.dumps(result(0.09, 31.0)))
    man = {"csv": "m.csv", "config": "m.yaml",
           "points": [{"label": "one", "run": "a", "step": 150, "json": "p1.json", "result": "r"},
                      {"label": "two", "run": "b", "step": 60, "json": "p2.json", "result": "r"}]}  # fmt: skip
    (folder / "man.yaml").write_text(json.dumps(man))
    return folder / "man.yaml"


def test_learning_curve_counts_each_runs_cpu_time(tmp_path):
    import csv

    man = _write_lineage(tmp_path)
    out = tmp_path / "lc.csv"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "learning_curve.py"), "--manifest", str(man),
           "--root", str(tmp_path), "--out-csv", str(out), "--out-png", str(tmp_path / "lc.png")]  # fmt: skip
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    rows = list(csv.DictReader(out.open()))
    held = [r for r in rows if r["kind"] == "heldout"]
    # point one: step 150 of run a, logged at 100 (50 s) then at 0.5 s/step
    assert float(held[0]["cpu_seconds"]) == 75.0 and held[0]["cum_steps"] == "150"
    # point two: all of run a (100 s, 1 thread) + run b's 60 s on 2 threads
    assert float(held[1]["cpu_seconds"]) == 220.0 and held[1]["cum_steps"] == "260"
    assert float(held[1]["bd_rate_vs_prev"]) < 0  # better PSNR at fewer bits
    internal = [r for r in rows if r["kind"] == "internal"]
    assert len(internal) == 1 and float(internal[0]["loss"]) == 2.5
    assert (tmp_path / "lc.png").stat().st_size > 1000

    # a point past the end of its run, and a run without a thread count, are refused
    bad = json.loads(man.read_text())
    bad["points"][1]["step"] = 61
    man.write_text(json.dumps(bad))
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert p.returncode != 0 and "no train row at or after step 61" in p.stderr
    _write_lineage(tmp_path, threads_b=None)
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert p.returncode != 0 and "run b does not state its threads" in p.stderr
