"""The classical intra codecs (x265-intra, jpeg, webp): what of the plug-in
contract they keep beyond tests/test_codec_contract.py (which runs them on RGB):
exact bits in ``forward``, rate order on a natural image, damaged streams
refused, deterministic decoding in another process, use as a video model's
I-frame codec by name, and refusal to train."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from codec_utils import natural_image

from dvc_common import BitstreamError, InputError
from image_codecs import build_codec, codec_class
from image_codecs.classical import (
    downsample_chroma,
    rgb_to_ycbcr,
    upsample_chroma,
    ycbcr_to_rgb,
)

CLASSICAL = ["x265-intra", "jpeg", "webp"]
VARIANTS = [("x265-intra", {}), ("x265-intra", {"chroma": "444"}), ("jpeg", {}),
            ("jpeg", {"chroma": "444"}), ("webp", {})]  # fmt: skip


def _ids(v):
    return v[0] + "".join(f"-{k}{x}" for k, x in v[1].items())


@pytest.fixture(scope="module")
def image() -> torch.Tensor:
    return natural_image(128)[0, :, :96, :]  # 96 x 128: not square


def test_they_are_registered_and_not_learned():
    for name in CLASSICAL:
        cls = codec_class(name)
        assert not cls.learned and cls.channels == (3,)
        assert not list(build_codec(name, num_qualities=4).parameters())


@pytest.mark.parametrize("variant", VARIANTS, ids=_ids)
def test_exact_bits_rate_order_and_quality(variant, image):
    name, kw = variant
    codec = build_codec(name, num_qualities=4, **kw)
    x = image[None]
    sizes, psnrs = [], []
    for q in range(4):
        enc = codec.compress(x, quality=q)
        (data,) = enc["strings"][0]
        sizes.append(len(data))
        dec = codec.decompress(enc["strings"], enc["shape"], quality=q)["x_hat"]
        assert torch.equal(dec, enc["x_hat"]) and dec.shape == x.shape
        psnrs.append(-10 * torch.log10(((dec - x) ** 2).mean()).item())
        # forward reports the real stream's bits, to the bit.
        out = codec(x, quality=q)
        assert codec.rate_bits(out["likelihoods"]).item() == 8 * len(data)
        assert torch.equal(out["x_hat"], enc["x_hat"])
    assert sizes == sorted(sizes) and len(set(sizes)) == 4, sizes
    assert psnrs == sorted(psnrs), psnrs
    assert psnrs[0] > 24, psnrs  # a real codec, not noise


@pytest.mark.parametrize("name", CLASSICAL)
def test_damaged_streams_are_refused(name, image):
    codec = build_codec(name, num_qualities=2)
    enc = codec.compress(image[None], quality=0)
    (data,) = enc["strings"][0]
    bad_ones = [b"", b"\x00" * 64, b"garbage" * 20]
    if name != "x265-intra":
        # FFmpeg's HEVC decoder conceals a cut-off slice and says nothing: in a
        # .dvc file the frame CRC catches it (test below), as for every codec.
        bad_ones.append(data[: len(data) // 3])
    for bad in bad_ones:
        with pytest.raises(BitstreamError):
            codec.decompress([[bad]], enc["shape"])
    with pytest.raises(BitstreamError, match="payload says"):
        codec.decompress(enc["strings"], [enc["shape"][0] + 2, enc["shape"][1]])


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="RGB"):
        build_codec("jpeg", in_channels=2)
    with pytest.raises(ValueError, match="decrease"):
        build_codec("x265-intra", num_qualities=2, levels=[22, 37])
    with pytest.raises(ValueError, match="0..51"):
        build_codec("x265-intra", num_qualities=2, levels=[60, 30])
    with pytest.raises(ValueError, match="2 levels for 3"):
        build_codec("webp", num_qualities=3, levels=[10, 20])
    with pytest.raises(ValueError, match="chroma"):
        build_codec("x265-intra", chroma="422")
    assert build_codec("x265-intra", num_qualities=4).levels == [37, 32, 27, 22]


def test_colour_and_chroma_arithmetic():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    # Full-range BT.601 at 8 bits: the round trip is within rounding.
    back = ycbcr_to_rgb(rgb_to_ycbcr(rgb)).astype(int)
    assert np.abs(back - rgb.astype(int)).max() <= 2
    grey = np.full((4, 4, 3), 77, np.uint8)
    assert (rgb_to_ycbcr(grey)[1:] == 128).all()
    flat = np.full((4, 6), 200, np.uint8)
    assert (upsample_chroma(downsample_chroma(np.tile(flat, (2, 2)))) == 200).all()
    c = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    up = upsample_chroma(c)
    assert up.shape == (6, 8) and up[0, 0] == c[0, 0] and up[-1, -1] == c[-1, -1]


def test_decoding_in_another_process_is_identical(tmp_path, image):
    cases = []
    for i, (name, kw) in enumerate(VARIANTS):
        codec = build_codec(name, num_qualities=2, **kw)
        enc = codec.compress(
            torch.stack([image, image.flip(-1)]), quality=torch.tensor([0, 1])
        )
        torch.save({"strings": enc["strings"], "shape": enc["shape"], "x_hat": enc["x_hat"]},
                   tmp_path / f"{i}.pt")  # fmt: skip
        cases.append(name)
    script = (
        "import sys, torch; torch.set_num_threads(2)\n"
        "from image_codecs import build_codec\n"
        "for i, name in enumerate(sys.argv[2:]):\n"
        "    b = torch.load(f'{sys.argv[1]}/{i}.pt', weights_only=True)\n"
        "    x = build_codec(name, num_qualities=2).decompress(b['strings'], b['shape'])['x_hat']\n"
        "    torch.save(x, f'{sys.argv[1]}/{i}.out.pt')\n"
    )
    subprocess.run([sys.executable, "-c", script, str(tmp_path), *cases], check=True,
                   timeout=300)  # fmt: skip
    for i in range(len(cases)):
        want = torch.load(tmp_path / f"{i}.pt", weights_only=True)["x_hat"]
        assert torch.equal(
            torch.load(tmp_path / f"{i}.out.pt", weights_only=True), want
        )


# -- in the video model ------------------------------------------------------------


def _video_ckpt(tmp: Path) -> Path:
    from test_cli_codec import make_checkpoint

    return make_checkpoint(tmp / "video.pth")


def _clip(tmp: Path, n: int = 3) -> Path:
    from dvc_ext.io import open_writer

    img = natural_image(128)[0]
    path = tmp / "clip.y4m"
    w = open_writer(path, fps=25)
    for t in range(n):
        w.write(img[:, 10 + 2 * t : 10 + 2 * t + 56, 8 + 3 * t : 8 + 3 * t + 72])
    w.close()
    return path


def test_video_model_takes_it_by_name_and_decoder_needs_nothing(tmp_path):
    from dvc_ext.cli import main
    from dvc_ext.io import open_video

    ckpt, clip = _video_ckpt(tmp_path), _clip(tmp_path)
    files = {}
    for label, extra in (("own", []), ("x265", ["intra={name:x265-intra,chroma:'444'}"]),
                         ("jpeg", ["intra={name:jpeg,levels:[30,80]}"])):  # fmt: skip
        out = tmp_path / f"{label}.dvc"
        rc = main(["compress", str(clip), str(out), f"checkpoint={ckpt}", "quality=1",
                   "intra_period=2", "progress=false", *extra])  # fmt: skip
        assert rc == 0
        files[label] = out
        # The plain model decodes it: the classical codec comes from the header.
        dec = tmp_path / f"{label}_dec"
        assert main(["decompress", str(out), str(dec), f"checkpoint={ckpt}",
                     "progress=false"]) == 0  # fmt: skip
        there = tmp_path / f"{label}_there"
        script = (
            "import sys, torch; torch.set_num_threads(2)\n"
            "from dvc_ext.tasks.codec import decompress_file, load_video_model\n"
            "decompress_file(sys.argv[1], sys.argv[2], "
            "load_video_model(sys.argv[3], for_decoding=True))\n"
        )
        subprocess.run([sys.executable, "-c", script, str(out), str(there), str(ckpt)],
                       check=True, timeout=300)  # fmt: skip
        a = [f.rgb for f in open_video(dec).frames()]
        b = [f.rgb for f in open_video(there).frames()]
        assert len(a) == 3 and all(torch.equal(x, y) for x, y in zip(a, b))
    sizes = {k: v.stat().st_size for k, v in files.items()}
    assert len(set(sizes.values())) == 3, sizes
    # Another P-frame model still refuses the file: the fingerprint covers it.
    from test_cli_codec import make_checkpoint

    from dvc_common import ModelMismatchError
    from dvc_ext.tasks.codec import decompress_file, load_video_model

    other = make_checkpoint(tmp_path / "other.pth", seed=1)
    with pytest.raises(ModelMismatchError):
        decompress_file(files["x265"], tmp_path / "no.y4m",
                        load_video_model(other, for_decoding=True))  # fmt: skip
    # A damaged file is rejected (the cut-off HEVC slice included).
    data = files["x265"].read_bytes()
    for k, bad in enumerate([data[: len(data) // 4], data[:-3],
                             data[:200] + bytes([data[200] ^ 4]) + data[201:]]):  # fmt: skip
        src, dst = tmp_path / f"bad{k}.dvc", tmp_path / f"bad{k}.y4m"
        src.write_bytes(bad)
        with pytest.raises(BitstreamError):
            decompress_file(src, dst, load_video_model(ckpt, for_decoding=True))
        assert not dst.exists()
    # A learned codec by name has no weights to code with.
    with pytest.raises(InputError, match="learned codec"):
        load_video_model(ckpt, intra={"name": "mbt2018-mean"})


def test_training_refuses_them(shared_data, tmp_path):
    from test_train import _run

    with pytest.raises(InputError, match="classical codec .* cannot be trained"):
        _run(shared_data, tmp_path / "a", "experiment=image", "image_codec=jpeg")
    with pytest.raises(InputError, match="intra codec 'webp'"):
        _run(shared_data, tmp_path / "b", "experiment=joint", "codec.intra_codec.name=webp",
             "train_intra=true")  # fmt: skip
    with pytest.raises(InputError, match="residual codec 'jpeg'"):
        _run(shared_data, tmp_path / "c", "experiment=residual",
             "codec.pframe.residual_codec.name=jpeg")  # fmt: skip


def test_a_pframe_run_trains_against_classical_i_frames(shared_data, tmp_path):
    """DVC's set-up: the P-frame model learns on references that BPG (here
    x265-intra) decoded; the intra codec is fixed."""
    from test_train import _rows, _run

    run = _run(shared_data, tmp_path / "r", "experiment=joint",
               "codec.intra_codec.name=x265-intra", "train_intra=false", "ref=intra",
               "max_stage_steps=2")  # fmt: skip
    rows = _rows(run)
    assert rows and all(np.isfinite(float(r["loss"])) for r in rows)
