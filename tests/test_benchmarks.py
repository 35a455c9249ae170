"""The benchmark scripts still run (tiny sizes; the numbers themselves live in JSON)."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
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
