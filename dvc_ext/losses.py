"""Rate-distortion objective: ``lambda * D + R`` with its lambda ladder.

Conventions (the ones DVC uses, G. Lu et al., CVPR 2019):

- frames are in [0, 1]; ``D`` is the mean squared error over pixels and
  channels of a [0, 1] image (``metric=mse``) or ``1 - MS-SSIM``
  (``metric=ms-ssim``);
- ``R`` is bits per pixel of the frame: ``-log2`` of the likelihoods of every
  latent and hyper-latent of every codec that coded it, summed, divided by
  ``H * W``;
- lambda per rate point, low to high rate: DVC's 256, 512, 1024, 2048 for MSE
  (and 8, 16, 32, 64 for MS-SSIM, as DVC's MS-SSIM models and DCVC use).
  CompressAI writes the same objective as ``lambda' * 255^2 * MSE + R``: DVC's
  256 is CompressAI's ``lambda' = 256 / 255^2 = 0.0039``, 2048 is 0.0315.

Every function returns one value per batch element (``Tensor[B]``), so a batch
can mix rate points.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from compressai.entropy_models import EntropyBottleneck

from dvc_common import InputError

METRICS = ("mse", "ms-ssim")
#: (lowest, highest) lambda of the default ladder, per distortion metric.
LAMBDA_RANGE = {"mse": (256.0, 2048.0), "ms-ssim": (8.0, 64.0)}
#: MS-SSIM level weights (Wang, Simoncelli, Bovik, Asilomar 2003).
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def lambda_ladder(
    metric: str, num_qualities: int, lambdas: Sequence[float] | None = None
) -> list[float]:
    """Lambda of each quality index (0 = lowest rate).

    Without explicit ``lambdas`` the ladder is geometric between the ends of
    :data:`LAMBDA_RANGE` (for four rate points exactly DVC's 256..2048); a
    single-rate model gets the geometric mean of the range.

    Raises:
        InputError: unknown metric, or ``lambdas`` of the wrong length or sign.
    """
    if metric not in METRICS:
        raise InputError(
            f"loss.metric must be one of {', '.join(METRICS)}, got {metric!r}"
        )
    if lambdas is not None:
        out = [float(v) for v in lambdas]
        if len(out) != num_qualities:
            raise InputError(
                f"loss.lambdas has {len(out)} values; the model has "
                f"num_qualities={num_qualities}"
            )
        if any(v <= 0 for v in out):
            raise InputError(f"loss.lambdas must be positive, got {out}")
        return out
    lo, hi = LAMBDA_RANGE[metric]
    if num_qualities == 1:
        return [round(math.sqrt(lo * hi), 6)]
    q = num_qualities - 1
    return [round(lo * (hi / lo) ** (i / q), 6) for i in range(num_qualities)]


def mse(x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Mean squared error per batch element of ``B x C x H x W`` tensors."""
    # float32 whatever the inputs: a bf16 x_hat from a mixed-precision forward
    # meets a float32 target here.
    return F.mse_loss(x_hat.float(), x.float(), reduction="none").flatten(1).mean(1)


def psnr(mse_value: torch.Tensor, peak: float = 1.0) -> torch.Tensor:
    """PSNR in dB from an MSE of images with the given peak value."""
    return 10.0 * torch.log10(peak**2 / mse_value.clamp_min(1e-10))


def _gaussian(size: int, sigma: float, like: torch.Tensor) -> torch.Tensor:
    t = torch.arange(size, dtype=like.dtype, device=like.device) - (size - 1) / 2
    g = torch.exp(-(t**2) / (2 * sigma**2))
    return g / g.sum()


def _ssim_cs(
    x: torch.Tensor, y: torch.Tensor, g: torch.Tensor, data_range: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """SSIM and contrast-structure per ``(batch, channel)`` ("valid" windows)."""
    c = x.shape[1]
    kh = g.view(1, 1, -1, 1).repeat(c, 1, 1, 1)
    kw = g.view(1, 1, 1, -1).repeat(c, 1, 1, 1)

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.conv2d(t, kh, groups=c), kw, groups=c)

    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mx, my = blur(x), blur(y)
    sxx = blur(x * x) - mx * mx
    syy = blur(y * y) - my * my
    sxy = blur(x * y) - mx * my
    cs = (2 * sxy + c2) / (sxx + syy + c2)
    ssim = ((2 * mx * my + c1) / (mx * mx + my * my + c1)) * cs
    return ssim.flatten(2).mean(2), cs.flatten(2).mean(2)


def ms_ssim(
    x_hat: torch.Tensor,
    x: torch.Tensor,
    data_range: float = 1.0,
    levels: int | None = None,
    win_size: int = 11,
) -> torch.Tensor:
    """Multi-scale SSIM per batch element (Wang et al., 2003), differentiable.

    The standard five levels need frames of at least 176 pixels a side (the
    11-tap window at 1/16 scale); training crops are often smaller, so by
    default as many levels are used as fit (``min(H, W) / 2^(L-1) >= 11``) and
    the weights of the levels kept are renormalised to sum to 1. With five
    levels it equals ``pytorch_msssim.ms_ssim`` (tested).

    Args:
        x_hat, x: ``B x C x H x W`` in ``[0, data_range]``.
        levels: scales to use (1..5); None = as many as fit.
    """
    side = min(x.shape[-2:])
    fit = 1
    while fit < len(MS_SSIM_WEIGHTS) and side // 2**fit >= win_size:
        fit += 1
    levels = fit if levels is None else int(levels)
    if not 1 <= levels <= fit:
        raise ValueError(
            f"{levels} MS-SSIM levels do not fit {tuple(x.shape[-2:])} images"
        )
    w = torch.tensor(MS_SSIM_WEIGHTS[:levels], dtype=x.dtype, device=x.device)
    w = w / w.sum()
    g = _gaussian(win_size, 1.5, x)
    values = []
    a, b = x_hat, x
    for i in range(levels):
        ssim, cs = _ssim_cs(a, b, g, data_range)
        if i < levels - 1:
            values.append(cs)
            pad = (a.shape[-2] % 2, a.shape[-1] % 2)
            a, b = F.avg_pool2d(a, 2, padding=pad), F.avg_pool2d(b, 2, padding=pad)
    values.append(ssim)
    # Clamped away from 0: x ** w with w < 1 has an infinite slope at 0.
    stack = torch.stack(values).clamp_min(1e-6)
    return torch.prod(stack ** w.view(-1, 1, 1), dim=0).mean(1)


def distortion(
    x_hat: torch.Tensor, x: torch.Tensor, metric: str = "mse"
) -> torch.Tensor:
    """``D`` per batch element: MSE, or ``1 - MS-SSIM``, of [0, 1] frames.

    Always computed in float32, autocast or not: a mean of small squared
    differences (and MS-SSIM's blurred moments) would lose most of their
    digits in bf16.
    """
    if metric not in METRICS:
        raise InputError(
            f"loss.metric must be one of {', '.join(METRICS)}, got {metric!r}"
        )
    with torch.autocast(device_type=x.device.type, enabled=False):
        x_hat, x = x_hat.float(), x.float()
        if metric == "mse":
            return mse(x_hat, x)
        return 1.0 - ms_ssim(x_hat, x)


def bits(likelihoods: Mapping[str, torch.Tensor], prefix: str = "") -> torch.Tensor:
    """Bits per batch element: ``-log2`` of every likelihood whose key starts
    with ``prefix``, summed."""
    total = None
    for name, lik in likelihoods.items():
        if name.startswith(prefix):
            b = (-torch.log2(lik)).flatten(1).sum(1)
            total = b if total is None else total + b
    if total is None:
        raise KeyError(f"no likelihoods named {prefix}*: {sorted(likelihoods)}")
    return total


def bpp(
    likelihoods: Mapping[str, torch.Tensor], num_pixels: int, prefix: str = ""
) -> torch.Tensor:
    """Bits per pixel per batch element (``num_pixels`` = H * W of the frame)."""
    return bits(likelihoods, prefix) / float(num_pixels)


def aux_loss(module: nn.Module) -> torch.Tensor:
    """CompressAI's auxiliary loss over every entropy bottleneck in ``module``.

    It fits the bottlenecks' ``quantiles`` (what ``update()`` turns into the
    coder's CDF ranges); it is minimised by its own optimizer, as in CompressAI.
    """
    losses = [m.loss() for m in module.modules() if isinstance(m, EntropyBottleneck)]
    if not losses:
        return torch.zeros(())
    return torch.stack([torch.as_tensor(v).reshape(()) for v in losses]).sum()
