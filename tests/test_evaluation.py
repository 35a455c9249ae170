"""Evaluation: sequence registry, protocols, anchors, metrics, eval end to end."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from codec_utils import make_image_checkpoint

from dvc_common import InputError
from dvc_ext import color
from dvc_ext.checkpoint import save_checkpoint
from dvc_ext.cli import compose, main
from dvc_ext.evaluation.anchors import DEFAULT_ANCHORS, build_anchor
from dvc_ext.evaluation.metrics import psnr_yuv420
from dvc_ext.evaluation.protocols import PROTOCOLS, Clip, build_protocol
from dvc_ext.evaluation.runner import (
    ALL_METRICS,
    AnchorContender,
    frame_metrics,
)
from dvc_ext.evaluation.sequences import (
    SEQUENCES,
    find_images,
    find_sequences,
    match_sequence,
    sequences_of,
)
from dvc_ext.tasks.evaluate import checkpoint_label
from dvc_ext.video_codec import VideoCodec
from image_codecs import codec_class

EXCERPT_D = "eval/hevc/BasketballPass_2frames_416x240_50Hz_8bit_P420.yuv"
EXCERPT_C = "eval/hevc/C_RaceHorses_2frames_832x480_30Hz_8bit_P420.yuv"


# -- sequence registry ---------------------------------------------------------------


@pytest.mark.parametrize(
    "name, expected",
    [
        ("Beauty_1920x1080_120fps_420_8bit_YUV.yuv", ("UVG", "Beauty")),
        ("ShakeNDry_1920x1080_120fps_420_8bit_YUV.yuv", ("UVG", "ShakeNDry")),
        ("BasketballPass_416x240_50.yuv", ("HEVC-D", "BasketballPass")),
        ("BasketballPass_2frames_416x240_50Hz_8bit_P420.yuv", ("HEVC-D", "BasketballPass")),
        ("C_RaceHorses_2frames_832x480_30Hz_8bit_P420.yuv", ("HEVC-C", "RaceHorses")),
        ("RaceHorsesC_832x480_30.yuv", ("HEVC-C", "RaceHorses")),
        ("RaceHorses_416x240_30.yuv", ("HEVC-D", "RaceHorses")),
        ("Kimono1_1920x1080_24.yuv", ("HEVC-B", "Kimono")),
        ("BQTerrace_1920x1080_60.yuv", ("HEVC-B", "BQTerrace")),
        ("KristenAndSara_1280x720_60.yuv", ("HEVC-E", "KristenAndSara")),
        ("Beauty_3840x2160_120fps_420_8bit_YUV.yuv", None),  # the 4K version
        ("BasketballPass_832x480_50.yuv", None),  # no such size
        ("Foreman_416x240_30.yuv", None),
    ],
)  # fmt: skip
def test_sequence_name_parsing(name, expected):
    spec = match_sequence(name)
    assert (spec.cls, spec.name) == expected if expected else spec is None


def test_registry_classes_and_sizes():
    assert [s.name for s in SEQUENCES["UVG"]] == [
        "Beauty", "Bosphorus", "HoneyBee", "Jockey", "ReadySteadyGo", "ShakeNDry",
        "YachtRide",
    ]  # fmt: skip
    sizes = {c: {(s.width, s.height) for s in SEQUENCES[c]} for c in SEQUENCES}
    assert sizes == {
        "UVG": {(1920, 1080)}, "HEVC-B": {(1920, 1080)}, "HEVC-C": {(832, 480)},
        "HEVC-D": {(416, 240)}, "HEVC-E": {(1280, 720)},
    }  # fmt: skip
    assert [len(SEQUENCES[c]) for c in SEQUENCES] == [7, 5, 4, 4, 3]
    assert SEQUENCES["UVG"][0].files == ("Beauty_1920x1080_120fps_420_8bit_YUV.yuv",)
    assert {s.family for s in sequences_of(["uvg", "D", "class-e", "hevc_b"])} == {
        "uvg", "hevc"
    }  # fmt: skip
    with pytest.raises(InputError, match="HEVC-B"):
        sequences_of(["HEVC-Z"])


def _fake_yuv(path: Path, w: int, h: int, frames: int = 1) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes(frames * w * h * 3 // 2))
    return path


def test_find_sequences_lists_missing_and_skipped(tmp_path):
    _fake_yuv(tmp_path / "a" / "BQSquare_416x240_60.yuv", 416, 240, 2)
    _fake_yuv(tmp_path / "D_BQSquare_1frames_416x240_60Hz_8bit_P420.yuv", 416, 240)
    _fake_yuv(tmp_path / "BlowingBubbles_416x240_50_10bit.yuv", 416, 240)
    _fake_yuv(tmp_path / "RaceHorsesC_832x480_30.yuv", 416, 240)
    s = find_sequences(tmp_path, ["HEVC-D"])
    assert [(f.name, f.frames) for f in s.found] == [("BQSquare", 2)]
    assert [m.name for m in s.missing] == [
        "BasketballPass",
        "BlowingBubbles",
        "RaceHorses",
    ]
    reasons = " ".join(why for _, why in s.skipped)
    assert "shorter duplicate" in reasons and "10-bit" in reasons
    assert "BasketballPass" in s.summary() and "missing" in s.summary()
    only = find_sequences(tmp_path, ["HEVC-D"], ["bqsquare"])
    assert [f.name for f in only.found] == ["BQSquare"] and not only.missing
    with pytest.raises(InputError, match="unknown sequence"):
        find_sequences(tmp_path, ["HEVC-D"], ["Foreman"])


def test_find_sequences_fails_clearly_when_none_is_there(tmp_path):
    _fake_yuv(tmp_path / "Beauty_3840x2160_120fps_420_8bit_YUV.yuv", 64, 64)
    with pytest.raises(InputError) as e:
        find_sequences(tmp_path, ["UVG"])
    msg = str(e.value)
    assert "Beauty_1920x1080_120fps_420_8bit_YUV.yuv" in msg and "3840x2160" in msg
    with pytest.raises(InputError, match="does not exist"):
        find_sequences(tmp_path / "nope", ["UVG"])


def test_find_images(shared_data, tmp_path):
    paths = find_images(shared_data / "eval" / "kodak")
    assert len(paths) == 24 and paths[0].name == "kodim01.png"
    assert len(find_images(shared_data / "eval" / "kodak", limit=2)) == 2
    with pytest.raises(InputError, match="no image"):
        find_images(tmp_path)


# -- protocols ------------------------------------------------------------------------


def test_dvc_protocol_on_the_ctc_excerpts(shared_data, tmp_path):
    p = PROTOCOLS["dvc"]
    clip = Clip(shared_data / EXCERPT_D, p, "hevc", name="BasketballPass")
    assert (clip.width, clip.height, clip.num_frames, clip.gop) == (384, 192, 2, 10)
    assert clip.short  # 2 of the protocol's 100 frames
    raw = np.fromfile(shared_data / EXCERPT_D, np.uint8)
    y0 = raw[: 416 * 240].reshape(240, 416)
    u0 = raw[416 * 240 : 416 * 240 + 208 * 120].reshape(120, 208)
    v0 = raw[416 * 240 + 208 * 120 : 416 * 240 * 3 // 2].reshape(120, 208)
    f0 = next(clip.frames())
    assert f0.rgb.shape == (3, 192, 384)
    assert np.array_equal(f0.planes[0], y0[:192, :384])
    assert np.array_equal(f0.planes[1], u0[:96, :192])
    # Cropping the planes at even offsets is exact: the crop of the full frame's RGB.
    full = color.yuv420_to_rgb(*(color.from_u8(q)[None] for q in (y0, u0, v0)))
    full8 = (full * 255).round() / 255
    assert torch.equal(f0.rgb, full8[:, :192, :384])
    # The file handed to codecs holds exactly the cropped planes.
    path, opts = clip.codec_input(tmp_path)
    assert path.stat().st_size == 2 * 384 * 192 * 3 // 2
    assert (opts["width"], opts["height"], opts["matrix"]) == (384, 192, "bt601")
    assert (
        "BT.601 limited range" in p.conversion() and "multiple of 64" in p.conversion()
    )
    rc = Clip(shared_data / EXCERPT_C, p, "hevc")
    assert (rc.width, rc.height) == (832, 448)  # 832 = 13 x 64
    uvg = PROTOCOLS["dvc"]
    assert (uvg.gop("uvg"), uvg.num_frames("uvg"), uvg.num_frames("hevc")) == (
        12,
        120,
        100,
    )


def test_dcvc_protocol_on_the_ctc_excerpts(shared_data, tmp_path):
    p = PROTOCOLS["dcvc"]
    clip = Clip(shared_data / EXCERPT_C, p, "hevc", name="RaceHorses")
    assert (clip.width, clip.height, clip.num_frames, clip.gop) == (832, 480, 2, 32)
    assert not clip.cropped and clip.short
    path, opts = clip.codec_input(tmp_path)
    assert path == shared_data / EXCERPT_C and opts["matrix"] == "bt709"
    frames = list(clip.frames())
    f1 = frames[1]
    rgb = color.yuv420_to_rgb(
        *(color.from_u8(q)[None] for q in f1.planes), "bt709", True, "nearest"
    )
    assert torch.equal(f1.rgb, (rgb * 255).round() / 255)
    assert "BT.709 full range" in p.conversion() and "original size" in p.conversion()
    # A perfect 4:2:0 decoder is perfect in both spaces (RGB by the same conversion).
    yuv_rgb = ["psnr_rgb", "psnr_y", "psnr_u", "psnr_v", "psnr_yuv"]
    m = frame_metrics(f1, p, planes=f1.planes, metrics=yuv_rgb)
    assert m["psnr_yuv"] == m["psnr_y"] == m["psnr_rgb"] == 100.0
    # A perfect RGB decoder still loses the 4:2:0 round trip in the YUV metrics.
    m = frame_metrics(f1, p, rgb=f1.rgb, metrics=["psnr_rgb", "psnr_y", "psnr_yuv"])
    assert m["psnr_rgb"] == 100.0 and 40 < m["psnr_yuv"] < 100
    assert p.num_frames("uvg") == 96 and p.bd_metric == "psnr_yuv"


def test_protocol_configs_match_the_builtins():
    for name in ("dvc", "dcvc"):
        cfg = compose("eval", [f"protocol={name}"])
        from omegaconf import OmegaConf

        built = build_protocol(OmegaConf.to_container(cfg.protocol, resolve=True))
        assert built == PROTOCOLS[name]
    with pytest.raises(InputError, match="geometry"):
        build_protocol({"name": "x", "geometry": "stretch"})
    with pytest.raises(InputError, match="unknown protocol setting"):
        build_protocol({"name": "x", "gop": 3})
    assert build_protocol({"name": "x", "intra_period": -1}).gop("hevc") == -1


def test_weighted_yuv_psnr():
    ref = tuple(torch.full(s, 0.5) for s in ((1, 8, 8), (1, 4, 4), (1, 4, 4)))
    dec = (ref[0] + 0.01, ref[1] + 0.1, ref[2])
    out = psnr_yuv420(ref, dec)
    assert out["psnr_y"] == pytest.approx(40.0) and out["psnr_u"] == pytest.approx(20.0)
    assert out["psnr_v"] == 100.0
    assert out["psnr_yuv"] == pytest.approx((6 * 40 + 20 + 100) / 8)


# -- anchors --------------------------------------------------------------------------


def test_anchor_settings():
    x264 = DEFAULT_ANCHORS["x264"]
    o = x264.options(23, 10)
    assert o["preset"] == "veryfast" and o["tune"] == "zerolatency" and o["crf"] == "23"
    assert "keyint=10" in o["x264-params"] and "scenecut=0" in o["x264-params"]
    assert "keyint=infinite" in x264.options(23, -1)["x264-params"]
    assert "keyint=-1" in DEFAULT_ANCHORS["x265"].options(23, -1)["x265-params"]
    assert "tune" not in DEFAULT_ANCHORS["x265_medium"].options(23, 12)
    a = build_anchor("mine", {"codec": "libx265", "crf": 30})
    assert a.crf == (30,) and a.preset == "veryfast"
    with pytest.raises(InputError, match="unknown setting"):
        build_anchor("bad", {"codec": "libx264", "qp": 3})
    with pytest.raises(InputError, match="libx264"):
        build_anchor("bad", {"codec": "libvpx"})


def test_x264_anchor_rate_is_the_stream_size(shared_data, tmp_path):
    clip = Clip(shared_data / EXCERPT_D, PROTOCOLS["dvc"], "hevc", name="bp", cls="D")
    spec = build_anchor("x264", {"codec": "libx264", "crf": [20, 40]})
    con = AnchorContender(spec)
    hi = con.run(clip, ("crf20", 20), tmp_path, ALL_METRICS)
    lo = con.run(clip, ("crf40", 40), tmp_path, ALL_METRICS)
    stream = tmp_path / hi["file"]
    assert stream.suffix == ".264" and stream.stat().st_size == hi["bytes"]
    assert hi["bytes"] == sum(f["bytes"] for f in hi["per_frame"])
    assert hi["bpp"] == pytest.approx(8 * hi["bytes"] / (2 * 384 * 192))
    assert [f["type"] for f in hi["per_frame"]] == ["I", "P/B"]
    assert lo["bpp"] < hi["bpp"]
    assert 25 < lo["metrics"]["psnr_rgb"] < hi["metrics"]["psnr_rgb"] < 60
    assert hi["metrics"]["psnr_y"] > 35
    assert (tmp_path / hi["file"]).read_bytes()[:4] == b"\0\0\0\1"  # Annex B


# -- end to end -------------------------------------------------------------------------


def _spec(name: str) -> dict:
    return {"name": name, **codec_class(name).tiny_config}


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory) -> Path:
    """A tiny random video model (DIS flow: no learned flow weights)."""
    cfg = {
        "intra_codec": _spec("bmshj2018-hyperprior"),
        "pframe": {
            "motion_codec": _spec("bmshj2018-hyperprior"),
            "residual_codec": _spec("bmshj2018-hyperprior"),
            "flow": {"name": "dis"},
            "mc_channels": 8,
        },
        "num_qualities": 2,
    }
    torch.manual_seed(0)
    model = VideoCodec(**cfg)
    model.update(force=True)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pth"
    return save_checkpoint(path, "video", cfg, model.state_dict(), {"note": "test"})


@pytest.fixture(scope="module")
def tiny_image_ckpt(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "img.pth"
    return make_image_checkpoint(path, "bmshj2018-hyperprior", 2)


def test_eval_end_to_end_basketballpass_with_x264(shared_data, tiny_ckpt, tmp_path):
    out = tmp_path / "out"
    rc = main([
        "eval", "dataset=hevc_d", f"dataset.root={shared_data / 'eval' / 'hevc'}",
        "frames=5", f"output_dir={out}",
        f"codecs.dvc-ext={tiny_ckpt}", "anchors.x264.crf=[18,30]", "ms_ssim=false",
        "anchors.x265=null", "anchors.x264_medium=null", "anchors.x265_medium=null",
        "references=[x264]", "keep_bitstreams=true", "progress=false",
    ])  # fmt: skip
    assert rc == 0
    data = json.loads((out / "results.json").read_text())
    res = data["results"]
    assert {(r["codec"], r["point"]) for r in res} == {
        ("dvc-ext", "q0"), ("dvc-ext", "q1"),
        ("x264", "crf18"), ("x264", "crf30"),
    }  # fmt: skip
    for r in res:
        # bpp from the real file (kept under bitstreams/) at the cropped size.
        assert (r["width"], r["height"], r["frames"]) == (384, 192, 5)
        assert os.path.getsize(out / "bitstreams" / r["file"]) == r["bytes"]
        assert r["bpp"] == pytest.approx(8 * r["bytes"] / (5 * 384 * 192))
        assert len(r["per_frame"]) == 5 and r["decode_s_per_frame"] > 0
        assert set(r["metrics"]) == set(ALL_METRICS) - {"ms_ssim_rgb"}
    ours = [r for r in res if r["codec"] == "dvc-ext"]
    assert (out / "bitstreams" / ours[0]["file"]).read_bytes()[:4] == b"DVCX"
    assert [f["type"] for f in ours[0]["per_frame"]] == ["I", "P", "P", "P", "P"]
    x264 = sorted((r for r in res if r["codec"] == "x264"), key=lambda r: r["param"])
    assert [r["bpp"] for r in x264] == sorted((r["bpp"] for r in x264), reverse=True)
    assert x264[0]["metrics"]["psnr_rgb"] > 33
    meta = data["meta"]
    assert (
        meta["protocol"]["name"] == "dvc" and "BT.601" in meta["protocol"]["conversion"]
    )
    assert "elementary stream" in meta["rate_definition"]
    assert "HEVC-D/BQSquare" in meta["missing"]
    bd = [
        b for b in data["bd"] if b["reference"] == "x264" and b["scope"] == "sequence"
    ]
    assert {b["codec"] for b in bd} == {"dvc-ext"}
    md = (out / "report.md").read_text()
    assert "BD-rate against x264" in md and "BasketballPass" in md
    assert (out / "points.csv").read_text().count("\n") == 5
    assert (out / "frames.csv").read_text().count("\n") == 21
    pngs = sorted(p.name for p in (out / "plots").glob("*.png"))
    assert pngs == [
        "rd_class_HEVC-D_psnr_rgb.png",
        "rd_seq_BasketballPass_psnr_rgb.png",
    ]
    assert (out / "plots" / pngs[0]).read_bytes()[:4] == b"\x89PNG"
    assert not (out / "results.partial.json").exists()


def test_eval_kodak_image_and_video_checkpoints(
    shared_data, tiny_ckpt, tiny_image_ckpt, tmp_path
):
    from dvc_ext.tasks.evaluate import evaluate

    cfg = compose("eval", [
        "dataset=kodak", f"dataset.root={shared_data / 'eval' / 'kodak'}",
        "dataset.limit=1", f"output_dir={tmp_path}", "progress=false",
        "codecs.dvc-ext=null", f"+codecs.video={tiny_ckpt}",
        f"+codecs.image={tiny_image_ckpt}", "references=[image]", "ms_ssim=false",
    ])  # fmt: skip
    out = evaluate(cfg)
    res = out["results"]
    assert {(r["codec"], r["sequence"]) for r in res} == {
        ("video", "kodim01"), ("image", "kodim01")
    }  # fmt: skip
    assert len(res) == 4  # two quality indices each, no anchors on images
    for r in res:
        assert (r["width"], r["height"], r["class"]) == (768, 512, "Kodak")
        assert set(r["metrics"]) == {"psnr_rgb"}
        assert r["per_frame"][0]["type"] == "I"
    assert any(b["codec"] == "video" for b in out["bd"])


def test_eval_without_data_fails_clearly(tmp_path, capsys):
    rc = main(["eval", "dataset=uvg", f"dataset.root={tmp_path}", "progress=false"])
    assert rc == 1
    err = capsys.readouterr().err
    assert "none of the UVG sequences" in err and "Beauty_1920x1080" in err


def test_eval_experiment_and_checkpoint_labels(tmp_path):
    cfg = compose("eval", ["eval_experiment=codecs", "checkpoints=[a.pth,b.pth]"])
    assert cfg.codecs["dvc-ext"] is None and list(cfg.checkpoints) == ["a.pth", "b.pth"]
    assert cfg.anchors.x264 is not None and cfg.anchors.x264_medium is None
    run = tmp_path / "runs" / "res_gaacnn" / "2025-01-01_10-00-00" / "checkpoints"
    assert checkpoint_label(run / "last.pth") == "res_gaacnn"
    assert checkpoint_label(run / "step_500.pth") == "res_gaacnn-step_500"
    assert checkpoint_label("models/mine_q4.pth") == "mine_q4"


@pytest.mark.slow
def test_ssf2020_anchor_from_a_state_dict(shared_data, tmp_path):
    from compressai.models.video import ScaleSpaceFlow

    from dvc_ext.evaluation.runner import SSFContender

    torch.manual_seed(0)
    torch.save(ScaleSpaceFlow().state_dict(), tmp_path / "ssf.pth")
    clip = Clip(
        shared_data / "formats" / "rav1e_small_input_64x64.y4m",
        PROTOCOLS["dcvc"], "hevc", frames=2, name="rav1e",
    )  # fmt: skip
    r = SSFContender("ssf2020", [tmp_path / "ssf.pth"]).run(
        clip, ("m0", 0), tmp_path, ALL_METRICS
    )
    assert [f["type"] for f in r["per_frame"]] == ["I", "P"]
    assert (r["width"], r["height"]) == (64, 64)
    assert r["bytes"] == (tmp_path / r["file"]).stat().st_size


def test_ms_ssim_equals_the_grouped_conv2d_definition():
    import torch.nn.functional as F

    from dvc_ext.evaluation.metrics import _MS_WEIGHTS, _gauss, ms_ssim

    def reference(a, b):  # the textbook form: grouped float64 conv2d, no padding
        a, b, vals = a[None].double(), b[None].double(), []
        for i, w in enumerate(_MS_WEIGHTS):
            g = _gauss(11, 1.5, 3)

            def blur(t, g=g):
                return F.conv2d(F.conv2d(t, g, groups=3), g.transpose(2, 3), groups=3)

            mu_a, mu_b = blur(a), blur(b)
            saa, sbb = blur(a * a) - mu_a**2, blur(b * b) - mu_b**2
            sab = blur(a * b) - mu_a * mu_b
            cs = (2 * sab + 9e-4) / (saa + sbb + 9e-4)
            lum = (2 * mu_a * mu_b + 1e-4) / (mu_a**2 + mu_b**2 + 1e-4)
            last = i == len(_MS_WEIGHTS) - 1
            vals.append(((lum * cs) if last else cs).mean().clamp_min(0) ** w)
            a, b = F.avg_pool2d(a, 2), F.avg_pool2d(b, 2)
        return float(torch.stack(vals).prod())

    a = torch.rand(3, 176, 192)
    b = (a + 0.1 * torch.randn_like(a)).clamp(0, 1)
    assert ms_ssim(b, a) == pytest.approx(reference(b, a), abs=1e-12)
    assert ms_ssim(a, a) == pytest.approx(1.0)


def _fake_result(codec, seq, point, bpp, q):
    return {
        "codec": codec, "sequence": seq, "class": "HEVC-D", "point": point,
        "param": point, "frames": 2, "width": 64, "height": 64,
        "bytes": int(bpp * 2 * 64 * 64 / 8), "bpp": bpp, "metrics": {"psnr_rgb": q},
        "encode_s_per_frame": 0.1, "decode_s_per_frame": 0.05, "file": "x",
        "per_frame": [{"index": 0, "type": "I", "bytes": 10, "decode_s": 0.05,
                       "psnr_rgb": q}],
    }  # fmt: skip


def test_class_aggregation_and_bd_tables(tmp_path):
    from dvc_ext.evaluation.report import write_report
    from dvc_ext.evaluation.runner import aggregate

    rates, quals = [0.1, 0.2, 0.4, 0.8], [30.0, 33.0, 36.0, 39.0]
    res = []
    for seq, scale in (("A", 0.9), ("B", 0.8)):
        for i, (r, q) in enumerate(zip(rates, quals)):
            res.append(_fake_result("ref", seq, f"p{i}", r, q))
            res.append(_fake_result("new", seq, f"p{i}", r * scale, q))
    classes = aggregate(res)
    assert len(classes) == 8 and {c["sequences"] for c in classes} == {2}
    new0 = next(c for c in classes if c["codec"] == "new" and c["point"] == "p0")
    assert new0["bpp"] == pytest.approx(0.1 * 0.85)
    meta = {"dataset": "t", "protocol": PROTOCOLS["dvc"].as_dict(), "codecs": [
        {"label": "new", "kind": "dvc-ext", "trained": False}]}  # fmt: skip
    rep = write_report(tmp_path, meta, res, classes, ["ref"], "psnr_rgb")
    by = {(b["scope"], b["sequence"] or b["class"]): b["bd_rate"] for b in rep["bd"]}
    assert by[("sequence", "A")] == pytest.approx(-10.0)
    assert by[("sequence", "B")] == pytest.approx(-20.0)
    assert by[("class-mean", "HEVC-D")] == pytest.approx(-15.0)
    assert by[("class-curve", "HEVC-D")] == pytest.approx(-15.0)
    md = rep["markdown"]
    assert "| A | HEVC-D | -10.00% |" in md and "| **mean** | HEVC-D | -15.00% |" in md
    assert "UNTRAINED" in md
    assert sorted(p.name for p in rep["paths"]["plots"]) == [
        "rd_class_HEVC-D_psnr_rgb.png", "rd_seq_A_psnr_rgb.png", "rd_seq_B_psnr_rgb.png"
    ]  # fmt: skip
    data = json.loads((tmp_path / "results.json").read_text())
    assert len(data["results"]) == 16 and len(data["classes"]) == 8


def test_dvc_bpg_experiment_codes_i_frames_with_x265(shared_data, tiny_ckpt, tmp_path):
    """eval_experiment=dvc_bpg: the model with its own and with x265-intra I-frames;
    each result gives the I-frames' share of the file's bytes."""
    out = tmp_path / "out"
    rc = main([
        "eval", "eval_experiment=dvc_bpg", "dataset=hevc_d",
        f"dataset.root={shared_data / 'eval' / 'hevc'}", "frames=3", f"output_dir={out}",
        f"codecs.dvc-ext={tiny_ckpt}", f"codecs.dvc-ext_x265-intra.checkpoint={tiny_ckpt}",
        "anchors.x264=null", "anchors.x265=null", "anchors.x264_medium=null",
        "anchors.x265_medium=null", "references=[dvc-ext]", "ms_ssim=false",
        "plots=false", "progress=false",
    ])  # fmt: skip
    assert rc == 0
    res = json.loads((out / "results.json").read_text())["results"]
    by = {(r["codec"], r["point"]): r for r in res}
    assert set(by) == {
        (c, q) for c in ("dvc-ext", "dvc-ext_x265-intra") for q in ("q0", "q1")
    }
    for r in res:
        i_frames = [f for f in r["per_frame"] if f["type"] == "I"]
        assert len(i_frames) == 1 and r["i_frame_bytes"] == i_frames[0]["bytes"]
        assert 0 < r["i_frame_share"] < 1
    own, bpg = by[("dvc-ext", "q1")], by[("dvc-ext_x265-intra", "q1")]
    # A random tiny intra codec against HEVC at QP 22: HEVC's I-frame is far better.
    assert bpg["per_frame"][0]["psnr_rgb"] > own["per_frame"][0]["psnr_rgb"] + 5
    assert "I-frames % of bytes" in (out / "report.md").read_text()
