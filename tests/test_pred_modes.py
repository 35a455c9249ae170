"""P-frame prediction modes (bitstream 1.1): the encoder's choice, decoded exactly."""

from __future__ import annotations

import pytest
import torch
from test_cli_codec import H, W, make_checkpoint

from dvc_common import BitstreamError, pad_to_multiple
from dvc_ext import bitstream as bs
from dvc_ext.checkpoint import load_checkpoint, save_checkpoint
from dvc_ext.io import open_video
from dvc_ext.pframe import PRED_MC, PRED_MODES, PRED_REF, PRED_WARP
from dvc_ext.tasks.codec import compress_file, decompress_file, load_video_model
from dvc_ext.video_codec import CodedFrame

LAMBDAS = [256.0, 1024.0]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    """The tiny test model, with the training objective's lambdas in its meta."""
    d = tmp_path_factory.mktemp("modes")
    blob = load_checkpoint(make_checkpoint(d / "plain.pth", seed=3))
    return save_checkpoint(d / "tiny.pth", "video", blob["config"], blob["state_dict"],
                           {"lambdas": LAMBDAS})  # fmt: skip


@pytest.fixture(scope="module")
def frames():
    """A still background with one moving square: both motion and no motion pay."""
    g = torch.Generator().manual_seed(11)
    base = torch.rand(3, H, W, generator=g) * 0.3 + 0.35
    out = []
    for t in range(5):
        f = base.clone()
        f[:, 10:26, 8 + 3 * t : 24 + 3 * t] = 0.9
        out.append(f)
    return out


@pytest.mark.parametrize("modes", [["warp"], ["ref"], ["mc", "warp", "ref"]])
def test_every_mode_decodes_to_the_encoders_frames(ckpt, frames, modes):
    enc_model = load_video_model(ckpt).model
    enc = list(enc_model.encode(iter(frames), 1, 0, pred_modes=modes, lam=LAMBDAS[1]))
    if modes == ["ref"]:
        for cf, _, _ in enc[1:]:
            assert cf.frame_type == bs.FRAME_PM
            assert cf.substreams[0] == bytes([PRED_REF]) and cf.substreams[1] == b""
    if modes == ["warp"]:
        assert all(cf.substreams[0] == bytes([PRED_WARP]) for cf, _, _ in enc[1:])
    dec = list(load_video_model(ckpt, for_decoding=True).model.decode(
        (c for c, _, _ in enc), H, W))  # fmt: skip
    assert len(dec) == len(frames)
    for (_, x_hat, _), y in zip(enc, dec):
        assert torch.equal(x_hat, y)


def test_the_choice_is_the_least_cost_mode(ckpt, frames):
    model = load_video_model(ckpt).model
    x0, _ = pad_to_multiple(frames[0][None], model.multiple)
    x1, _ = pad_to_multiple(frames[1][None], model.multiple)
    ref = model.intra.compress(x0, quality=1)["x_hat"].clamp(0, 1)
    lam = LAMBDAS[1]

    def cost(out):
        bits = 8 * (len(out["motion"]) + len(out["residual"]))
        mse = float(((out["x_hat"] - x1) ** 2).mean())
        return lam * mse + bits / x1[0, 0].numel()

    single = {m: model.pframe.compress(x1, ref, quality=1, modes=(m,))
              for m in PRED_MODES.values()}  # fmt: skip
    assert single[PRED_REF]["motion"] == b"" and single[PRED_MC]["motion"]
    chosen = model.pframe.compress(x1, ref, quality=1, modes=tuple(single), lam=lam)
    best = min(single, key=lambda m: cost(single[m]))
    assert chosen["mode"] == best
    assert torch.equal(chosen["x_hat"], single[best]["x_hat"])
    with pytest.raises(ValueError, match="needs lam"):
        model.pframe.compress(x1, ref, quality=1, modes=(PRED_MC, PRED_REF))


def test_compress_file_sets_the_flag_and_counts_modes(ckpt, frames, tmp_path):
    from dvc_ext.io import open_writer

    src = tmp_path / "still.y4m"
    w = open_writer(src, fps=25)
    for f in frames:
        w.write(f)
    w.close()
    loaded = load_video_model(ckpt)
    out = tmp_path / "modes.dvc"
    s = compress_file(src, out, loaded, quality=1, intra_period=0)
    assert sum(s["pred_modes"].values()) == len(frames) - 1
    assert s["counts"]["total"] == out.stat().st_size
    h = bs.BitstreamReader(out).header
    assert h.flags & bs.FLAG_PRED_MODES and h.version == bs.VERSION
    dec = tmp_path / "dec"
    decompress_file(out, dec, load_video_model(ckpt, for_decoding=True))
    assert len(list(open_video(dec).frames())) == len(frames)
    # DVC's mode alone writes no flag, so a 1.0 decoder reads the file.
    plain = tmp_path / "plain.dvc"
    s = compress_file(src, plain, loaded, quality=1, intra_period=0, pred_modes=["mc"])
    assert s["pred_modes"]["mc"] == len(frames) - 1
    assert bs.BitstreamReader(plain).header.flags == 0


def test_mode_records_need_the_flag_and_a_valid_mode(ckpt, frames, tmp_path):
    header = bs.Header(width=W, height=H, frame_count=2, intra_codec="x",
                       motion_codec="y", residual_codec="z")  # fmt: skip
    data = bs.encode_header(header) + bs.encode_frame(bs.FRAME_I, 1, [b"i"])
    data += bs.encode_frame(bs.FRAME_PM, 1, [bytes([PRED_REF]), b"", b"r"])
    path = tmp_path / "noflag.dvc"
    path.write_bytes(data)
    with pytest.raises(BitstreamError, match="prediction-mode flag"):
        list(bs.BitstreamReader(path))
    with pytest.raises(BitstreamError, match="prediction-mode flag"):
        with bs.BitstreamWriter(tmp_path / "w.dvc") as w:
            w.write_header(header)
            w.write_frame(bs.FRAME_PM, 1, [bytes([PRED_REF]), b"", b"r"])

    model = load_video_model(ckpt).model
    enc = list(model.encode(iter(frames[:2]), 1, 0, pred_modes=["warp"], lam=1.0))
    (i_frame, _, _), (p_frame, _, _) = enc
    _, motion, residual = p_frame.substreams
    bad = {
        "unknown prediction mode 3": [bytes([3]), motion, residual],
        "motion payload with prediction mode 'ref'": [
            bytes([PRED_REF]),
            motion,
            residual,
        ],
        "needs a motion payload": [bytes([PRED_WARP]), b"", residual],
        "2 bytes, not 1": [bytes([PRED_WARP, 0]), motion, residual],
    }
    for msg, subs in bad.items():
        coded = [i_frame, CodedFrame(bs.FRAME_PM, 1, subs)]
        with pytest.raises(BitstreamError, match=msg):
            list(model.decode(iter(coded), H, W))
