"""Encoder-side latent refinement: fewer bits or less error for the same decoder."""

from __future__ import annotations

import pytest
import skimage.data
import torch
from test_cli_codec import make_checkpoint

from dvc_common import InputError
from dvc_ext.tasks.codec import compress_file, decompress_file, load_video_model
from dvc_ext.video_codec import VideoCodec
from image_codecs import build_codec, codec_class, list_codecs
from image_codecs.base import Refinement
from image_codecs.payload import pack_compressed, unpack_compressed

LAM = 512.0  # the default model's lambda at quality 1


@pytest.fixture(scope="module")
def intra():
    """The shipped default's intra codec (trained weights: on an untrained
    codec every latent is as good as another)."""
    return load_video_model("default").model.intra


@pytest.fixture(scope="module")
def image() -> torch.Tensor:
    # A photograph no training run of this project used (scikit-image's).
    img = torch.from_numpy(skimage.data.coffee()).permute(2, 0, 1).float() / 255
    return img[None, :, 100:228, 200:392].contiguous()


def _code(codec, x, refine=None):
    with torch.no_grad():
        out = codec.compress(x, quality=1, refine=refine)
    data = pack_compressed(out)
    mse = float(((out["x_hat"].clamp(0, 1) - x) ** 2).mean())
    return data, out["x_hat"], LAM * mse + 8 * len(data) / x[0, 0].numel()


def test_refined_latents_cost_less_and_decode_exactly(intra, image):
    plain, _, plain_cost = _code(intra, image)
    data, x_hat, cost = _code(intra, image, Refinement(steps=15, lam=LAM))
    assert data != plain
    assert cost < 0.98 * plain_cost  # real bytes, real error
    strings, shape = unpack_compressed(data)
    with torch.no_grad():
        dec = intra.decompress(strings, shape, quality=1)["x_hat"]
    assert torch.equal(dec, x_hat)
    # Seeded: the same encode again writes the same bytes.
    assert _code(intra, image, Refinement(steps=15, lam=LAM))[0] == data
    assert _code(intra, image, Refinement(steps=0, lam=LAM))[0] == plain
    assert all(p.requires_grad for p in intra.parameters())


def test_refinement_that_does_not_help_is_dropped(intra, image):
    """A step size far too large only makes things worse: the encoder keeps the
    transforms' latents, byte for byte."""
    plain = _code(intra, image)[0]
    assert _code(intra, image, Refinement(steps=3, lam=LAM, lr=500.0))[0] == plain


@pytest.mark.parametrize(
    "kwargs, match",
    [({"steps": -1, "lam": 1.0}, "steps"), ({"steps": 1, "lam": 0.0}, "lambda"),
     ({"steps": 1, "lam": 1.0, "lr": 0.0}, "lr")],
)  # fmt: skip
def test_refinement_settings_are_checked(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Refinement(**kwargs)


def test_video_encoder_refines_and_the_decoder_needs_nothing():
    H, W = 64, 96
    img = torch.from_numpy(skimage.data.astronaut()).permute(2, 0, 1).float() / 255
    frames = [img[:, 200 + 2 * t : 200 + 2 * t + H, 180 + 3 * t : 180 + 3 * t + W]
              for t in range(3)]  # fmt: skip
    model: VideoCodec = load_video_model("default").model
    plain = [c.substreams for c, _, _ in model.encode(iter(frames), 1, 0, lam=LAM)]
    enc = list(model.encode(iter(frames), 1, 0, lam=LAM, refine_steps=8))
    refined = [a != b for (c, _, _), b in zip(enc, plain) for a in [c.substreams]]
    assert refined[0] and any(refined[1:])  # the I-frame and a P-frame's residual
    dec_model = load_video_model("default", for_decoding=True).model
    dec = list(dec_model.decode((c for c, _, _ in enc), H, W))
    for (_, x_hat, _), y in zip(enc, dec):
        assert torch.equal(x_hat, y)
    with pytest.raises(ValueError, match="lam"):
        next(model.encode(iter(frames), 1, 0, refine_steps=2))


def test_compress_file_refine_steps(tmp_path):
    src = tmp_path / "frames"
    src.mkdir()
    import cv2
    import numpy as np

    img = skimage.data.astronaut()[200:256, 180:252, ::-1]
    for t in range(3):
        cv2.imwrite(str(src / f"f{t:03d}.png"), np.roll(img, 2 * t, axis=1).copy())
    loaded = load_video_model("default")
    s = compress_file(src, tmp_path / "r.dvc", loaded, quality=1, refine_steps=3)
    assert s["refine_steps"] == 3
    d = decompress_file(tmp_path / "r.dvc", tmp_path / "out.y4m",
                        load_video_model("default", for_decoding=True))  # fmt: skip
    assert d["frames"] == 3
    with pytest.raises(InputError, match="refine_steps"):
        compress_file(src, tmp_path / "n.dvc", loaded, refine_steps=-1)
    no_lambdas = load_video_model(make_checkpoint(tmp_path / "plain.pth"))
    with pytest.raises(InputError, match="lambdas"):
        compress_file(src, tmp_path / "m.dvc", no_lambdas, refine_steps=2)
    assert not (tmp_path / "m.dvc").exists()
    from dvc_ext.checkpoint import load_checkpoint, save_checkpoint

    blob = load_checkpoint(tmp_path / "plain.pth", "video")
    ssim = save_checkpoint(tmp_path / "ssim.pth", "video", blob["config"],
                           blob["state_dict"], {"lambdas": [8.0, 16.0],
                                                "metric": "ms-ssim"})  # fmt: skip
    with pytest.raises(InputError, match="ms-ssim"):
        compress_file(src, tmp_path / "s.dvc", load_video_model(ssim), refine_steps=2)
    assert not (tmp_path / "s.dvc").exists()


def test_eval_takes_refine_steps_for_video_models(tmp_path):
    from dvc_ext.tasks.evaluate import build_contenders

    cfg = {"codecs": {"r": {"checkpoint": "default", "refine_steps": 5}}}
    (con,) = build_contenders(cfg, images=False)
    assert con.refine_steps == 5 and con.describe()["refine_steps"] == 5
    from omegaconf import OmegaConf

    from dvc_ext.checkpoint import default_checkpoint
    from dvc_ext.tasks.export import export

    intra = tmp_path / "intra.pth"
    export(OmegaConf.create({"input": str(default_checkpoint()), "output": str(intra),
                             "extract": "intra", "dtype": "float16"}))  # fmt: skip
    bad = {"codecs": {"i": {"checkpoint": str(intra), "refine_steps": 5}}}
    with pytest.raises(InputError, match="refine_steps"):
        build_contenders(bad, images=True)


@pytest.mark.parametrize("name", list_codecs())
def test_every_refinable_codec_decodes_its_refined_bytes(name, intra, image):
    cls = codec_class(name)
    if not cls.refinable:
        pytest.skip(f"{name} offers no refinement")
    if name == intra.registry_name:
        codec, lr = intra, 0.02  # trained: untrained, no refinement was kept
    else:
        lr = 0.1
        codec = build_codec(name, in_channels=3, num_qualities=2, **cls.tiny_config)
        codec.update(force=True)
        codec.eval()
    x = image[..., :, :128].contiguous()
    with torch.no_grad():
        plain = pack_compressed(codec.compress(x, quality=1))
        out = codec.compress(x, quality=1, refine=Refinement(8, LAM, lr=lr))
        data = pack_compressed(out)
        assert data != plain  # the refined latents were kept, so they are tested
        strings, shape = unpack_compressed(data)
        assert torch.equal(codec.decompress(strings, shape, quality=1)["x_hat"],
                           out["x_hat"])  # fmt: skip
