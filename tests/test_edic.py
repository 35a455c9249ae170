"""EDIC: ablation switches, K=1 = plain Gaussian, a real-image file round trip."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from codec_utils import natural_image, random_crops

from dvc_common import fixed_threads
from image_codecs import build_codec, codec_class
from image_codecs.edic import EDIC
from image_codecs.entropy import GaussianConditional
from image_codecs.payload import pack_compressed, unpack_compressed

ABLATIONS = {
    "channel_attention": {"channel_attention": False},
    "mixture_components": {"mixture_components": 1},
    "enhancement": {"enhancement": False},
}


def _tiny(**kw) -> EDIC:
    torch.manual_seed(0)
    cfg = {**codec_class("edic").tiny_config, **kw}
    model = build_codec("edic", in_channels=3, **cfg).eval()
    model.update(force=True)
    return model


def _n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _copy_shared(src: torch.nn.Module, dst: torch.nn.Module) -> set[str]:
    """Load ``src``'s parameters into ``dst`` wherever name and shape agree.

    Returns the names of ``dst``'s state that kept its own values.
    """
    theirs = src.state_dict()
    mine = dst.state_dict()
    shared = {k: v for k, v in theirs.items() if k in mine and mine[k].shape == v.shape}
    mine.update(shared)
    dst.load_state_dict(mine)
    dst.update(force=True)
    return set(mine) - set(shared)


@pytest.fixture(scope="module")
def image() -> torch.Tensor:
    return natural_image(64)


def test_defaults_and_bad_arguments():
    m = EDIC()
    assert (m.N, m.M, m.K) == (192, 192, 3)
    assert m.channel_attention and m.enhancement
    with pytest.raises(ValueError, match="mixture_components"):
        EDIC(N=8, M=8, mixture_components=0)


@pytest.mark.parametrize("switch", list(ABLATIONS))
def test_ablation_switch_changes_params_and_output(switch, image):
    full = _tiny()
    ablated = _tiny(**ABLATIONS[switch])
    assert _n_params(ablated) < _n_params(full)
    # Same weights wherever the two share a parameter: any difference in the
    # output is the switched module's.
    kept = _copy_shared(full, ablated)
    assert not any("quantiles" in k or "_cdf" in k for k in kept)
    with torch.no_grad():
        a, b = full(image), ablated(image)
    same_x = torch.equal(a["x_hat"], b["x_hat"])
    same_y = torch.equal(a["likelihoods"]["y"], b["likelihoods"]["y"])
    same_z = torch.equal(a["likelihoods"]["z"], b["likelihoods"]["z"])
    if switch == "channel_attention":
        # It sits in g_a (so y and z change) and in g_s. (An untrained y is
        # tiny: its rounded values, hence the likelihoods, may coincide.)
        assert not kept
        with torch.no_grad():
            ya, yb = full.g_a(image), ablated.g_a(image)
            assert not torch.equal(ya, yb)
            assert not torch.equal(full.h_a(ya), ablated.h_a(yb))
        assert not same_x
    elif switch == "mixture_components":
        # Only the entropy model of y changes: same reconstruction, other rate.
        assert {k.split(".")[0] for k in kept} == {"h_s"}
        assert same_x and same_z and not same_y
    else:
        # Decoder-side only: same bits, other reconstruction, and the full
        # model's output is exactly the enhancement of the ablated one's.
        assert not kept
        assert same_y and same_z and not same_x
        with torch.no_grad():
            assert torch.equal(full.enhance(b["x_hat"]), a["x_hat"])


@pytest.mark.parametrize("values", ["rounded", "noisy", "spread"])
def test_k1_is_a_plain_gaussian(values, image):
    """K=1: the mixture likelihood is CompressAI's GaussianConditional's."""
    model = _tiny(mixture_components=1)
    with torch.no_grad():
        y = model.g_a(image)
        z_hat, _ = model.entropy_bottleneck(model.h_a(y))
        scales, means, logits = model.mixture_params(z_hat)
        if values == "rounded":  # what coding sees
            y_hat = torch.round(y)
        elif values == "noisy":  # what training sees
            y_hat = y + torch.empty_like(y).uniform_(-0.5, 0.5)
        else:  # an untrained y is near 0: also values far from the means
            y_hat = torch.randint(-6, 7, y.shape).float()
        ours = model.gaussian_mixture.likelihood(y_hat, scales, means, logits)
        gc = GaussianConditional(None)
        ref = gc._likelihood(y_hat, scales[:, 0], means=means[:, 0])
    assert scales.shape == (1, 1, model.M, 4, 4)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-7)
    if values == "spread":
        assert float(ref.min()) < 1e-3 < float(ref.max())
    if values == "rounded":
        # The model's own rate term is that same Gaussian likelihood.
        with torch.no_grad():
            lik = model(image)["likelihoods"]["y"]
        torch.testing.assert_close(
            lik, gc.likelihood_lower_bound(ref), rtol=1e-5, atol=1e-7
        )


def test_k1_codes_round_trip(image):
    model = _tiny(mixture_components=1)
    with torch.no_grad():
        enc = model.compress(image)
        dec = model.decompress(enc["strings"], enc["shape"])
    assert torch.equal(dec["x_hat"], enc["x_hat"])


def test_kodak_file_round_trip(shared_data, tmp_path):
    """A 128 x 128 Kodak crop to a file and back, bit-exact (untrained model)."""
    import skimage.io

    rgb = skimage.io.imread(shared_data / "eval" / "kodak" / "kodim23.png")[..., :3]
    crop = np.ascontiguousarray(rgb[200:328, 300:428])
    x = torch.from_numpy(crop).permute(2, 0, 1).float().div(255)[None]
    model = _tiny()
    with torch.no_grad():
        enc = model.compress(x)
    path = tmp_path / "kodim23_crop.edic"
    path.write_bytes(pack_compressed(enc))
    strings, shape = unpack_compressed(path.read_bytes())
    with torch.no_grad():
        dec = model.decompress(strings, shape)
    assert dec["x_hat"].shape == x.shape
    assert torch.equal(dec["x_hat"], enc["x_hat"])
    assert path.stat().st_size > 50


def _vimeo_frames(root, listing: str) -> list[torch.Tensor]:
    import skimage.io

    clips = (root / listing).read_text().split()
    return [
        torch.from_numpy(
            np.ascontiguousarray(
                skimage.io.imread(root / "sequences" / c / "im4.png")[..., :3]
            )
        )
        .permute(2, 0, 1)
        .float()
        .div(255)[None]
        for c in clips
    ]


@pytest.mark.slow
def test_short_training_on_real_crops(shared_data):
    """100 steps on Vimeo crops: the held-out RD loss and MSE both drop.

    Not "rate and distortion both drop": an untrained EDIC's latent is nearly
    zero, so it starts at almost no bits (about 0.02 bpp, measured) and a grey
    image; training buys distortion with rate.
    """
    root = shared_data / "train" / "vimeo_septuplet"
    train = _vimeo_frames(root, "sep_trainlist.txt")
    gen = torch.Generator().manual_seed(1)
    held = torch.cat(
        [random_crops(f, 4, 64, gen) for f in _vimeo_frames(root, "sep_testlist.txt")]
    )
    lmbda = 0.01 * 255**2
    model = _tiny()

    def evaluate() -> tuple[float, float]:
        model.eval()
        model.update(force=True)
        with torch.no_grad():
            out = model(held)
        bpp = (model.rate_bits(out["likelihoods"]) / 64**2).mean().item()
        mse = torch.nn.functional.mse_loss(out["x_hat"], held).item()
        return lmbda * mse + bpp, mse

    loss0, mse0 = evaluate()
    net = [p for n, p in model.named_parameters() if not n.endswith("quantiles")]
    aux = [p for n, p in model.named_parameters() if n.endswith("quantiles")]
    opt, aux_opt = torch.optim.Adam(net, lr=1e-3), torch.optim.Adam(aux, lr=1e-2)
    model.train()
    # Tiny convolutions gain nothing from threads, and on a loaded 2-core
    # machine two threads ran this test over 10x slower (measured).
    with fixed_threads(1):
        _train(model, train, gen, opt, aux_opt, net, lmbda, steps=100)
    loss1, mse1 = evaluate()
    assert loss1 < 0.5 * loss0, (loss0, loss1)
    assert mse1 < 0.5 * mse0, (mse0, mse1)


def _train(model, frames, gen, opt, aux_opt, net, lmbda, steps: int) -> None:
    for _ in range(steps):
        i = int(torch.randint(0, len(frames), (1,), generator=gen))
        x = random_crops(frames[i], 4, 64, gen)
        out = model(x)
        bpp = model.rate_bits(out["likelihoods"]) / 64**2
        mse = (out["x_hat"] - x).square().flatten(1).mean(1)
        loss = (lmbda * mse + bpp).mean()
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net, 1.0)
        opt.step()
        aux_opt.zero_grad()
        model.aux_loss().backward()
        aux_opt.step()
