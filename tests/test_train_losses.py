"""The rate-distortion objective, its lambda ladder and the stage schedule."""

from __future__ import annotations

import math

import pytest
import pytorch_msssim
import torch

from dvc_common import InputError
from dvc_ext.losses import (
    aux_loss,
    bits,
    bpp,
    distortion,
    lambda_ladder,
    ms_ssim,
    mse,
    psnr,
)
from dvc_ext.training.schedule import build_schedule, stage_at, total_steps
from image_codecs import build_codec


def test_lambda_ladder_is_dvcs():
    assert lambda_ladder("mse", 4) == [256.0, 512.0, 1024.0, 2048.0]
    assert lambda_ladder("ms-ssim", 4) == [8.0, 16.0, 32.0, 64.0]
    six = lambda_ladder("mse", 6)
    assert (
        six[0] == 256 and six[-1] == 2048 and all(b > a for a, b in zip(six, six[1:]))
    )
    assert lambda_ladder("mse", 1) == [pytest.approx(math.sqrt(256 * 2048))]
    assert lambda_ladder("mse", 2, [100, 200]) == [100.0, 200.0]
    with pytest.raises(InputError, match="num_qualities=4"):
        lambda_ladder("mse", 4, [1, 2])
    with pytest.raises(InputError, match="metric"):
        lambda_ladder("psnr", 4)


def test_ms_ssim_matches_reference_and_has_gradients():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 192, 200, generator=g)
    y = (x + 0.1 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    ref = pytorch_msssim.ms_ssim(y, x, data_range=1.0, size_average=False)
    assert torch.allclose(ms_ssim(y, x), ref, atol=1e-5)
    # Small training crops use the levels that fit; identical images score 1.
    small = x[..., :64, :64]
    assert torch.allclose(ms_ssim(small, small), torch.ones(2), atol=1e-5)
    z = small.clone().requires_grad_(True)
    (1 - ms_ssim(z, (small + 0.2).clamp(0, 1))).sum().backward()
    assert torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="levels"):
        ms_ssim(small, small, levels=5)


def test_distortion_and_rate_conventions():
    x = torch.zeros(2, 3, 8, 8)
    y = x + torch.tensor([0.1, 0.2]).view(2, 1, 1, 1)
    assert torch.allclose(mse(y, x), torch.tensor([0.01, 0.04]))
    assert torch.allclose(distortion(y, x, "mse"), torch.tensor([0.01, 0.04]))
    assert torch.allclose(psnr(torch.tensor([0.01])), torch.tensor([20.0]))
    lik = {
        "motion_y": torch.full((2, 4, 2, 2), 0.5),
        "residual_z": torch.full((2, 1, 1, 1), 0.25),
    }
    assert torch.equal(bits(lik), torch.tensor([18.0, 18.0]))
    assert torch.equal(bits(lik, "motion_"), torch.tensor([16.0, 16.0]))
    assert torch.equal(bpp(lik, 64), torch.tensor([18 / 64, 18 / 64]))
    # bpp agrees with the codecs' own rate estimate.
    codec = build_codec("bmshj2018-hyperprior", N=16, M=24, num_qualities=4)
    out = codec(torch.rand(2, 3, 64, 64), quality=torch.tensor([0, 3]))
    assert torch.allclose(bpp(out["likelihoods"], 64 * 64) * 64 * 64,
                          codec.rate_bits(out["likelihoods"]))  # fmt: skip
    assert torch.allclose(aux_loss(codec), codec.aux_loss())


def test_schedule_stages_and_lr():
    stages = {
        "motion": {"steps": 10, "ref": "raw"},
        "residual": {"steps": 0},
        "joint": {"steps": 20, "lr": 1e-3, "lr_drops": [0.5], "freeze": ["flow"]},
    }
    s = build_schedule(stages, "pframe", {"lr": 1e-4, "lr_gamma": 0.1}, "intra")
    assert [x.name for x in s] == ["motion", "joint"] and total_steps(s) == 30
    assert stage_at(s, 9).name == "motion" and stage_at(s, 10).name == "joint"
    assert s[0].lr_at(0) == 1e-4 and s[1].ref == "intra" and s[0].ref == "raw"
    assert s[1].lr_at(19) == 1e-3 and s[1].lr_at(20) == pytest.approx(1e-4)
    capped = build_schedule(stages, "pframe", {}, max_stage_steps=3)
    assert total_steps(capped) == 6
    with pytest.raises(InputError, match="not a task=image stage"):
        build_schedule(stages, "image", {})
    with pytest.raises(InputError, match="unknown"):
        build_schedule({"joint": {"steps": 1, "freeze": ["decoder"]}}, "pframe", {})
    with pytest.raises(InputError, match="no training stage"):
        build_schedule({"joint": {"steps": 0}}, "pframe", {})
