"""Rate points and rate estimates of every registered codec, after brief training."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from codec_utils import natural_image, quick_train, smooth_flow

from image_codecs import build_codec, codec_class, list_codecs

CODECS = list_codecs()
#: A rate estimate to match and weights to train: the learned codecs only.
LEARNED = [n for n in CODECS if codec_class(n).learned]


def _tiny(name, in_channels, num_qualities=1):
    torch.manual_seed(0)
    cfg = dict(codec_class(name).tiny_config)
    return build_codec(
        name, in_channels=in_channels, num_qualities=num_qualities, **cfg
    )


@pytest.mark.slow
@pytest.mark.parametrize("name", LEARNED)
@pytest.mark.parametrize("kind", ["image", "flow"])
def test_real_bytes_match_estimate(name, kind):
    """Real rANS bytes within 3% of the model's own estimate (256 x 256)."""
    x, c = (natural_image(256), 3) if kind == "image" else (smooth_flow(256), 2)
    model = _tiny(name, c)
    quick_train(model, x, steps=150, lmbda=0.05)
    with torch.no_grad():
        est_bytes = model.rate_bits(model(x)["likelihoods"]).item() / 8
        enc = model.compress(x)
    real = sum(len(s[0]) for s in enc["strings"])
    assert real > 500, "too few bytes for a meaningful comparison"
    assert abs(real / est_bytes - 1) < 0.03, (real, est_bytes)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["bmshj2018-hyperprior", "mbt2018-mean", "edic"])
def test_bf16_trained_codec_codes_its_estimate(name):
    """Trained with a bf16 forward (``precision: bf16``), coded in float32: the
    real bytes stay within the contract's 3 % of the float32 estimate, and
    decoding reproduces the encoder's reconstruction bit for bit."""
    from dvc_ext.training.precision import bf16_supported

    if not bf16_supported(torch.device("cpu")):
        pytest.skip("this CPU has no bf16 support")
    x = natural_image(256)
    model = _tiny(name, 3)
    quick_train(model, x, steps=150, lmbda=0.05, precision="bf16")
    with torch.no_grad():
        est_bytes = model.rate_bits(model(x)["likelihoods"]).item() / 8
        enc = model.compress(x)
        dec = model.decompress(enc["strings"], enc["shape"])["x_hat"]
    real = sum(len(s[0]) for s in enc["strings"])
    assert real > 500, "too few bytes for a meaningful comparison"
    assert abs(real / est_bytes - 1) < 0.03, (real, est_bytes)
    assert torch.equal(dec, enc["x_hat"])


@pytest.mark.slow
@pytest.mark.parametrize("name", CODECS)
def test_higher_quality_more_bytes_less_distortion(name):
    x = natural_image(256)
    model = _tiny(name, 3, num_qualities=3)
    if model.learned:
        quick_train(model, x, steps=120, lr=1e-3)
    sizes, mses = [], []
    with torch.no_grad():
        for q in range(3):
            enc = model.compress(x, quality=q)
            sizes.append(sum(len(s[0]) for s in enc["strings"]))
            mses.append(F.mse_loss(enc["x_hat"], x).item())
    assert sizes[0] < sizes[1] < sizes[2], sizes
    # Neighbouring points may still cross after so few steps; the ends may not.
    assert mses[0] > mses[2], mses
