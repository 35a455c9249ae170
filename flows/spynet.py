"""SpyNet: the coarse-to-fine spatial-pyramid flow network that DVC uses."""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ._guide import guided_flow
from .base import FlowEstimator, register_flow
from .warp import backward_warp

_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)


def _gradients(grey: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Central differences (x, y) of a ``B x 1 x H x W`` image, replicate borders."""
    g = F.pad(grey, (1, 1, 1, 1), mode="replicate")
    return (
        0.5 * (g[..., 1:-1, 2:] - g[..., 1:-1, :-2]),
        0.5 * (g[..., 2:, 1:-1] - g[..., :-2, 1:-1]),
    )


def _box_mean(x: torch.Tensor, window: int) -> torch.Tensor:
    """Mean over a ``window`` x ``window`` box around each pixel, same size."""
    half = window // 2
    return F.avg_pool2d(F.pad(x, (half,) * 4, mode="replicate"), window, 1)


def lucas_kanade_step(
    cur: torch.Tensor, warped: torch.Tensor, window: int, damping: float = 1e-3
) -> torch.Tensor:
    """One Lucas-Kanade step between a frame and the warped reference.

    Solves ``sum_w grad grad^T r = sum_w grad (cur - warped)`` per pixel over a
    ``window`` x ``window`` box (grey levels of the two inputs, central
    differences of their mean, Tikhonov ``damping``), so that
    ``warped(p + r) ~ cur(p)``: the residual flow in the backward convention.

    Returns:
        ``B x 3 x H x W``: the step ``r`` (px, clamped to +-3) and
        ``log(det + 1e-8) / 10``, how well the window constrains it.
    """
    g_cur, g_warp = cur.mean(1, keepdim=True), warped.mean(1, keepdim=True)
    ix, iy = _gradients(0.5 * (g_cur + g_warp))
    it = g_cur - g_warp
    terms = torch.cat([ix * it, iy * it, ix * ix, iy * iy, ix * iy], dim=1)
    bx, by, a, d, b = _box_mean(terms, window).unbind(1)
    a, d = a + damping, d + damping
    det = a * d - b * b  # > 0: a d >= b^2 by Cauchy-Schwarz, plus the damping
    step = torch.stack([d * bx - b * by, a * by - b * bx], dim=1) / det[:, None]
    return torch.cat([step.clamp(-3.0, 3.0), torch.log(det[:, None] + 1e-8) / 10], 1)


def _gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur, replicate borders (the pad may exceed the size)."""
    r = max(1, int(3 * sigma + 0.5))
    taps = torch.arange(-r, r + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-(taps**2) / (2 * sigma**2))
    k = k / k.sum()
    c = x.shape[1]
    x = F.pad(x, (r, r, 0, 0), mode="replicate")
    x = F.conv2d(x, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    x = F.pad(x, (0, 0, r, r), mode="replicate")
    return F.conv2d(x, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def flow_confidence(image: torch.Tensor, tau: float, window: int = 5) -> torch.Tensor:
    """How well a frame's own texture pins the flow down, per pixel, in [0, 1).

    The smaller eigenvalue ``m`` of the grey level's structure tensor over a
    ``window`` x ``window`` box, as ``m / (m + tau)``: near 0 where the box is
    flat or holds a single edge (the aperture problem: only the flow across the
    edge is observable), near 1 where it has texture in two directions.
    """
    ix, iy = _gradients(image.mean(1, keepdim=True))
    a, d, b = _box_mean(torch.cat([ix * ix, iy * iy, ix * iy], dim=1), window).unbind(1)
    m = (0.5 * (a + d) - torch.sqrt(0.25 * (a - d) ** 2 + b * b + 1e-12)).clamp_min(0)
    return (m / (m + tau))[:, None]


def confidence_fill(
    flow: torch.Tensor, confidence: torch.Tensor, sigma: float
) -> torch.Tensor:
    """Blend the flow, in proportion to ``1 - confidence``, towards the
    confidence-weighted Gaussian average (normalised convolution, ``sigma`` in
    grid cells) of its surroundings.

    Where no confident pixel lies within reach (3 sigma) the average falls back
    to the flow itself: nothing is known there that the net did not say.
    """
    eps = 1e-6
    # One blur of [flow * c, c]: the weighted sum and its weights together.
    blurred = _gaussian_blur(torch.cat([flow * confidence, confidence], 1), sigma)
    around = (blurred[:, :-1] + eps * flow) / (blurred[:, -1:] + eps)
    return confidence * flow + (1 - confidence) * around


def fill_settings(
    fill_sigma: float | tuple[float, ...], fill_tau: float, n: int
) -> tuple[tuple[float, ...], float]:
    """``(one sigma per level, tau)`` of a confidence fill, checked.

    Raises:
        ValueError: not ``n`` finite sigmas >= 0 (one value stands for all), a
            tau that is not finite and > 0, or a bool for either.
    """
    if isinstance(fill_sigma, bool) or isinstance(fill_tau, bool):
        raise ValueError("fill_sigma and fill_tau are numbers, not flags")
    if isinstance(fill_sigma, (int, float)):
        fill_sigma = (fill_sigma,) * n
    sig = tuple(float(v) for v in fill_sigma)
    finite = all(math.isfinite(v) for v in (*sig, float(fill_tau)))
    if len(sig) != n or not finite or min(sig) < 0 or fill_tau <= 0:
        raise ValueError(
            f"fill_sigma must be one finite value >= 0 per level ({n}) "
            f"and fill_tau finite and > 0, got {fill_sigma}, {fill_tau}"
        )
    return sig, float(fill_tau)


class _LevelNet(nn.Module):
    """One pyramid level: ``[cur, warped ref, flow, LK step]`` (8 or 11 ch) ->
    residual flow."""

    def __init__(self, widths: tuple[int, ...], kernel: int, inputs: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        chans = (inputs, *widths)
        for cin, cout in zip(chans[:-1], chans[1:]):
            conv = nn.Conv2d(cin, cout, kernel, padding=kernel // 2)
            # He init: PyTorch's default shrinks activations layer by layer,
            # which slows the first steps of a from-scratch training a lot.
            nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
            nn.init.zeros_(conv.bias)
            layers += [conv, nn.ReLU()]
        layers.append(nn.Conv2d(chans[-1], 2, kernel, padding=kernel // 2))
        self.net = nn.Sequential(*layers)
        # Start from "no correction": an untrained level leaves the flow alone.
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


@register_flow("spynet")
class SpyNet(FlowEstimator):
    """Spatial pyramid network for optical flow.

    A. Ranjan, M. J. Black, "Optical Flow Estimation using a Spatial Pyramid
    Network", CVPR 2017; the motion estimator of G. Lu et al., "DVC: An
    End-to-end Deep Video Compression Framework", CVPR 2019.

    ```
    cur, ref ─► normalise ─► avg-pool pyramid (levels L-1 .. 0, stride 2^k)
    v_{L} = 0
    for k = L-1 .. 0:                        (coarse to fine)
        u   = 2 * upsample(v_{k+1})          (flow in level-k pixels)
        r~  = backward_warp(ref_k, u)
        v_k = u + G_k([cur_k, r~, u, LK(cur_k, r~)])   (G_k: 5-conv net -> 2 ch)
        v_k = fill(v_k, confidence(cur_k))   (where fill_sigma[k] > 0)
        (repeated iters[k] times: u = v_k, re-warp, correct again)
    return v_0                               (B x 2 x H x W, px)
    ```

    Compact variant (ours): 5x5 instead of 7x7 kernels and widths
    (24, 48, 24, 12) instead of (32, 64, 32, 16) in each level's 5-conv net,
    about a fifth of the original's parameters per level; 5 levels as in the
    paper (coarsest stride 16, so a 16 px motion is 1 px there). Each level
    predicts a residual on top of the up-sampled flow, as in the paper.

    Lucas-Kanade input (ours, ``lk_window > 0``): each level net also gets one
    Lucas-Kanade step between ``cur_k`` and the warped reference and its
    log-determinant (3 more input channels; :func:`lucas_kanade_step`). A conv
    net without a cost volume has to learn multiplicative matching from scratch;
    on our CPU budget it did not (the plain net's coarsest level, trained alone
    for 1,400 steps, still output zero flow; with these channels its EPE on
    translations of ``astronaut`` fell from 9.3 px (zero flow) to 3.4 px in 500
    steps). The net still decides the flow: the step
    is an input, not added to the output.

    Confidence fill (ours, ``fill_sigma``): after each pass of a level with
    ``fill_sigma[k] > 0``, where ``cur_k``'s structure tensor is nearly
    singular (flat, or a single edge: :func:`flow_confidence`) the flow is
    blended towards the confidence-weighted Gaussian average of its surroundings
    (:func:`confidence_fill`), the job a variational method's smoothness term
    does. Average pooling flattens fine texture (wood grain, say) at the coarse
    levels, whose nets then read zero motion there, and the finer levels cannot
    correct a 12 px error; without the fill that was most of the error of our
    trained levels on such content (docs/training.md). It has no parameters and
    is off by default (a checkpoint records its settings).

    Training (``flows.train``): level by level as in the paper (``--level K``:
    train level K with the coarser ones fixed, then the next finer one), or all
    levels at once with a multi-scale loss and, early on, the perturbed ground
    truth as each level's input flow (``--teacher``).

    Args:
        levels: pyramid levels; inputs are padded to a multiple of 2^(levels-1).
        widths: hidden channels of each level's conv net.
        kernel: conv kernel size.
        lk_window: box size of the Lucas-Kanade input; 0 leaves it out (the
            paper's 8-channel input).
        iters: passes of each level's net (one count for all levels, or one
            per level, finest first): each pass re-warps the reference with the
            flow so far and adds the net's correction, a learned Gauss-Newton
            iteration. 1 is the paper's single pass. Extra passes are cheap at
            the coarse levels (a stride-16 level costs 1/256 of the finest).
        fill_sigma: the confidence fill's Gaussian sigma in cells of each level
            (one value for all, or one per level, finest first); 0 turns it off.
            It reaches 3 sigma.
        fill_tau: the structure-tensor eigenvalue (of the normalised grey
            level) at which the confidence is one half.
    """

    output_stride = 1

    def __init__(
        self,
        levels: int = 5,
        widths: tuple[int, ...] = (24, 48, 24, 12),
        kernel: int = 5,
        lk_window: int = 5,
        iters: int | tuple[int, ...] = 1,
        fill_sigma: float | tuple[float, ...] = 0.0,
        fill_tau: float = 10.0,
    ) -> None:
        super().__init__()
        if levels < 1:
            raise ValueError(f"levels must be >= 1, got {levels}")
        iters = (iters,) * levels if isinstance(iters, int) else tuple(iters)
        if len(iters) != levels or min(iters) < 1:
            raise ValueError(
                f"iters must be one count >= 1 per level ({levels}), got {iters}"
            )
        self.fill_sigma, self.fill_tau = fill_settings(fill_sigma, fill_tau, levels)
        self.levels = levels
        self.iters = iters
        self.pad_multiple = 2 ** (levels - 1)
        self.lk_window = lk_window
        inputs = 8 + (3 if lk_window > 0 else 0)
        self.nets = nn.ModuleList(
            _LevelNet(tuple(widths), kernel, inputs) for _ in range(levels)
        )
        self.register_buffer("mean", torch.tensor(_MEAN).view(1, 3, 1, 1), False)
        self.register_buffer("std", torch.tensor(_STD).view(1, 3, 1, 1), False)

    def flow_pyramid(
        self,
        cur: torch.Tensor,
        ref: torch.Tensor,
        guide: torch.Tensor | None = None,
        jitter: float = 0.0,
        until: int = 0,
    ) -> list[tuple[torch.Tensor, int]]:
        """Flows of every level, coarse to fine, for multi-scale training.

        Args:
            cur, ref: ``B x 3 x H x W`` in [0, 1], H and W multiples of
                ``pad_multiple``.
            guide: optional ``B x 2 x H x W`` flow (px) for teacher forcing,
                as in SpyNet's level-by-level training: the flow entering each
                finer level is the guide pooled to that level, plus a smooth
                random offset of up to ``jitter`` level pixels, instead of the
                coarser level's estimate. Every level then learns its residual
                task from the first step.

        Returns:
            ``[(flow_k, stride_k), ...]``: ``flow_k`` is ``B x 2 x H/s x W/s``
            in pixels of that level (``s = stride_k``); the last one is the
            full-resolution output.
        """
        cur = (cur - self.mean) / self.std
        ref = (ref - self.mean) / self.std
        curs, refs = [cur], [ref]
        for _ in range(self.levels - 1):
            curs.append(F.avg_pool2d(curs[-1], 2))
            refs.append(F.avg_pool2d(refs[-1], 2))
        b, _, h, w = curs[-1].shape
        flow = cur.new_zeros(b, 2, h, w)
        out = []
        for k in reversed(range(until, self.levels)):
            if flow.shape[-2:] != curs[k].shape[-2:]:
                if guide is not None:
                    flow = guided_flow(guide, 2**k, jitter)
                else:
                    flow = 2.0 * F.interpolate(
                        flow,
                        size=curs[k].shape[-2:],
                        mode="bilinear",
                        align_corners=False,
                    )
            sigma = self.fill_sigma[k]
            if sigma > 0:
                # A weight, not an estimate: no gradient into the frames through
                # it (the square root's gradient blows up at flat boxes).
                conf = flow_confidence(curs[k].detach(), self.fill_tau)
            for _ in range(self.iters[k]):
                warped = backward_warp(refs[k], flow)
                x = [curs[k], warped, flow]
                if self.lk_window > 0:
                    x.append(lucas_kanade_step(curs[k], warped, self.lk_window))
                flow = flow + self.nets[k](torch.cat(x, dim=1))
                if sigma > 0:
                    flow = confidence_fill(flow, conf, sigma)
            out.append((flow, 2**k))
        return out

    def _estimate(self, cur: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        return self.flow_pyramid(cur, ref)[-1][0]
