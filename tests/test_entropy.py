"""Our Gaussian-mixture conditional and the shared entropy layers."""

from __future__ import annotations

import pytest
import torch

from dvc_common import BitstreamError
from image_codecs.entropy import GaussianConditional, GaussianMixtureConditional


def _params(B=2, K=3, C=8, H=5, W=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    scales = torch.exp(torch.randn(B, K, C, H, W, generator=g) - 0.5)
    means = torch.randn(B, K, C, H, W, generator=g) * 2
    logits = torch.randn(B, K, C, H, W, generator=g)
    y = means[:, 0] + torch.randn(B, C, H, W, generator=g) * scales[:, 0] * 2
    return y, scales, means, logits


def test_round_trip_batch2_inputs_untouched():
    gmm = GaussianMixtureConditional(3)
    y, s, m, w = _params()
    copies = [t.clone() for t in (y, s, m, w)]
    strings = gmm.compress(y, s, m, w)
    assert len(strings) == 2 and all(isinstance(b, bytes) for b in strings)
    y_hat = gmm.decompress(strings, s, m, w)
    assert torch.equal(y_hat, torch.round(y))
    for a, b in zip(copies, (y, s, m, w)):
        assert torch.equal(a, b)


def test_far_outliers_are_escape_coded():
    gmm = GaussianMixtureConditional(2, max_support=16)
    y, s, m, w = _params(K=2)
    y = y.clone()
    y[0, 0, 0, 0] = 500.0
    y[1, 1, 1, 1] = -700.0
    y_hat = gmm.decompress(gmm.compress(y, s, m, w), s, m, w)
    assert torch.equal(y_hat, torch.round(y))


def test_k1_equals_plain_gaussian():
    gmm = GaussianMixtureConditional(1)
    gc = GaussianConditional(None)
    y, s, m, w = _params(K=1)
    y_hat = torch.round(y)
    ours = gmm.likelihood(y_hat, s, m, w)
    ref = gc._likelihood(y_hat, s[:, 0], means=m[:, 0])
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-7)


def test_real_bits_close_to_estimate():
    gmm = GaussianMixtureConditional(3)
    y, s, m, w = _params(B=1, C=32, H=16, W=16)
    bits = sum(len(b) for b in gmm.compress(y, s, m, w)) * 8
    est = (-torch.log2(gmm(y, s, m, w, training=False)[1])).sum().item()
    assert abs(bits / est - 1) < 0.02, (bits, est)


def test_wrong_parameter_shape_and_string_count():
    gmm = GaussianMixtureConditional(3)
    y, s, m, w = _params()
    with pytest.raises(ValueError, match="shape"):
        gmm.compress(y, s[:, :2], m, w)
    with pytest.raises(BitstreamError):
        gmm.decompress([b"x"], s, m, w)


def test_entropy_models_compute_in_float32_under_autocast():
    """Under bf16 autocast (mixed-precision training) every entropy model still
    returns float32 likelihoods equal to the float32 computation on the same
    (bf16-rounded) inputs: the rate term never sees bf16 arithmetic."""
    from image_codecs.entropy import EntropyBottleneck

    torch.manual_seed(0)
    y = (torch.randn(2, 8, 6, 6) * 4).bfloat16()
    scales = (torch.rand(2, 8, 6, 6) * 3 + 0.2).bfloat16()
    means = torch.randn(2, 8, 6, 6).bfloat16()
    K = 3
    mix = [(torch.rand(2, K, 8, 6, 6) * 3 + 0.2), torch.randn(2, K, 8, 6, 6),
           torch.randn(2, K, 8, 6, 6)]  # fmt: skip
    eb, gc, gm = (
        EntropyBottleneck(8),
        GaussianConditional(None),
        GaussianMixtureConditional(K),
    )
    for m in (eb, gc, gm):
        m.eval()  # rounding, not noise: both runs see the same values
    runs = []
    for amp in (True, False):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            out = [
                eb(y)[1],
                gc(y, scales, means)[1],
                gm(y, *[p.bfloat16() for p in mix])[1],
            ]
        runs.append(out)
    for a, b in zip(*runs):
        assert a.dtype == torch.float32
        assert torch.equal(a, b)
    # The float32 path is not bf16 arithmetic in disguise.
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = gc._standardized_cumulative(y.float().bfloat16() / 7)
    assert low.dtype == torch.bfloat16
