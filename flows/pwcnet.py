"""PWC-Net (compact): pyramid features, warping, cost volume, flow decoders."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ._guide import guided_flow
from .base import FlowEstimator, register_flow
from .correlation import correlation
from .spynet import confidence_fill, fill_settings, flow_confidence
from .warp import backward_warp

_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)


def _conv(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    conv = nn.Conv2d(cin, cout, 3, stride=stride, padding=dilation, dilation=dilation)
    # He init: PyTorch's default shrinks activations layer by layer, which
    # slows the first steps of a from-scratch training a lot.
    nn.init.kaiming_normal_(conv.weight, a=0.1, nonlinearity="leaky_relu")
    nn.init.zeros_(conv.bias)
    return nn.Sequential(conv, nn.LeakyReLU(0.1))


class _Decoder(nn.Module):
    """``[cost volume, cur features, flow]`` -> residual flow (2 ch)."""

    def __init__(self, cin: int, widths: tuple[int, ...]) -> None:
        super().__init__()
        chans = (cin, *widths)
        self.net = nn.Sequential(
            *(_conv(a, b) for a, b in zip(chans[:-1], chans[1:])),
            nn.Conv2d(chans[-1], 2, 3, padding=1),
        )
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class _Context(nn.Module):
    """PWC-Net's context network: dilated convolutions refining the last flow.

    Dilations 1, 2, 4, 8, 16, 1 give a receptive field of 67 cells (268 px at
    stride 4), so a flat region (sky, a wall) whose own cost volume is
    ambiguous takes its flow from the textured content around it. The last
    layer starts at zero: a model grown from weights without it starts as
    that model.
    """

    DILATIONS = (1, 2, 4, 8, 16, 1)

    def __init__(self, cin: int, width: int) -> None:
        super().__init__()
        layers = []
        for d in self.DILATIONS:
            layers.append(_conv(cin, width, dilation=d))
            cin = width
        self.net = nn.Sequential(*layers, nn.Conv2d(width, 2, 3, padding=1))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


@register_flow("pwcnet")
class PWCNet(FlowEstimator):
    """PWC-Net: CNNs for optical flow using Pyramid, Warping and Cost volume.

    D. Sun, X. Yang, M.-Y. Liu, J. Kautz, "PWC-Net: CNNs for Optical Flow Using
    Pyramid, Warping, and Cost Volume", CVPR 2018.

    ```
    cur, ref ─► shared feature pyramid (strides 2, 4, 8, 16) ─► c_l, r_l
    v = 0 at stride 16
    for l = 16, 8, 4, 4:                        (coarse to fine; 4 twice)
        u   = 2 * upsample(v)                   (flow in level-l pixels)
        r~  = backward_warp(r_l, u)             (warp ref features to cur)
        cv  = correlation(c_l, r~, d=4)         (cosine, 81 channels)
        v   = u + D_l([cv, c_l, u])             (D_l: conv flow decoder)
    flow = 4 * upsample(v)                      (B x 2 x H x W, px)
    ```

    Compact variant (ours): a 4-stage feature pyramid (16/32/48/64 channels,
    two 3x3 convs per stage) instead of 6 stages (16 .. 196); decoders at
    strides 16, 8 and 4 (the last level run twice with its own decoder, which
    refines the sub-pixel part) instead of five levels; plain conv decoders of
    widths (64, 48, 32) predicting a residual instead of DenseNet decoders
    predicting the flow; the context (dilated refinement) network is optional
    (``context`` channels, 0 = none) and takes the last cost volume, the
    current frame's features and the flow. The cost
    volume correlates channel-normalised features (cosine, in [-1, 1]): its
    scale does not depend on how large the features happen to be, which
    speeds up early training. Search range: 4 feature pixels per level, i.e.
    64 px at stride 16.

    Confidence fill (ours, as in :class:`flows.spynet.SpyNet`): after decoding
    step ``k`` with ``fill_sigma[k] > 0``, where the current frame (average-
    pooled to that stride) is flat or holds a single edge, the flow is blended
    towards the confidence-weighted average of its surroundings
    (:func:`flows.spynet.confidence_fill`). At stride 16 alone, with sigma 8
    cells and tau 0.3, it lowers the error of the shipped weights on flat skies
    without costing real motion (docs/training.md, "PWC-Net's confidence
    fill"); at the finer steps it over-smooths motion boundaries.

    Args:
        widths: feature channels of the pyramid stages (strides 2, 4, 8, 16).
        decoder: hidden widths of each flow decoder.
        max_displacement: correlation search radius (feature pixels).
        context: width of the context network after the last decoder (0: none).
        fill_sigma: the fill's Gaussian sigma in cells of each decoding step
            (strides 16, 8, 4, 4; one value for all); 0 turns it off.
        fill_tau: the structure-tensor eigenvalue (of the normalised grey
            level) at which the confidence is one half.
    """

    output_stride = 4
    _LEVELS = (3, 2, 1, 1)  # feature stage used by each decoding step

    def __init__(
        self,
        widths: tuple[int, ...] = (16, 32, 48, 64),
        decoder: tuple[int, ...] = (64, 48, 32),
        max_displacement: int = 4,
        context: int = 0,
        fill_sigma: float | tuple[float, ...] = 0.0,
        fill_tau: float = 10.0,
    ) -> None:
        super().__init__()
        self.fill_sigma, self.fill_tau = fill_settings(
            fill_sigma, fill_tau, len(self._LEVELS)
        )
        if len(widths) != 4:
            raise ValueError(f"widths needs 4 entries (strides 2..16), got {widths}")
        self.max_displacement = max_displacement
        self.pad_multiple = 16
        chans = (3, *widths)
        self.features = nn.ModuleList(
            nn.Sequential(_conv(a, b, stride=2), _conv(b, b))
            for a, b in zip(chans[:-1], chans[1:])
        )
        n_cv = (2 * max_displacement + 1) ** 2
        self.decoders = nn.ModuleList(
            _Decoder(n_cv + widths[i] + 2, tuple(decoder)) for i in self._LEVELS
        )
        self.context = int(context)
        if self.context < 0:
            raise ValueError(f"context must be >= 0, got {context}")
        self.context_net = (
            _Context(n_cv + widths[self._LEVELS[-1]] + 2, self.context)
            if self.context
            else None
        )
        self.register_buffer("mean", torch.tensor(_MEAN).view(1, 3, 1, 1), False)
        self.register_buffer("std", torch.tensor(_STD).view(1, 3, 1, 1), False)

    def _pyramid(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = (x - self.mean) / self.std
        feats = []
        for stage in self.features:
            x = stage(x)
            feats.append(x)
        return feats  # strides 2, 4, 8, 16

    def flow_pyramid(
        self,
        cur: torch.Tensor,
        ref: torch.Tensor,
        guide: torch.Tensor | None = None,
        jitter: float = 0.0,
    ) -> list[tuple[torch.Tensor, int]]:
        """Flows of every decoding step, coarse to fine, for multi-scale training.

        Args:
            cur, ref: ``B x 3 x H x W`` in [0, 1], H and W multiples of 16.
            guide, jitter: teacher forcing for training (see
                :meth:`flows.spynet.SpyNet.flow_pyramid`): the flow entering
                the finer levels is the perturbed guide, not the estimate.

        Returns:
            ``[(flow, stride), ...]`` for strides 16, 8, 4, 4 (and 4 once more
            after the context network, when there is one; flow in pixels
            of that level, ``B x 2 x H/s x W/s``) and finally the
            full-resolution flow (stride 1) that :meth:`forward` returns.
        """
        fc = self._pyramid(cur)
        fr = self._pyramid(ref)
        normed = (
            ((cur - self.mean) / self.std).detach() if any(self.fill_sigma) else None
        )
        out = []
        flow = None
        for k, (decoder, i) in enumerate(zip(self.decoders, self._LEVELS)):
            c = fc[i]
            stride = 2 ** (i + 1)
            if flow is None:
                flow = c.new_zeros(c.shape[0], 2, *c.shape[-2:])
            elif guide is not None and k < len(self._LEVELS) - 1:
                flow = guided_flow(guide, stride, jitter)
            elif flow.shape[-2:] != c.shape[-2:]:
                flow = 2.0 * F.interpolate(
                    flow, size=c.shape[-2:], mode="bilinear", align_corners=False
                )
            warped = backward_warp(fr[i], flow)
            cv = (
                correlation(
                    F.normalize(c, dim=1),
                    F.normalize(warped, dim=1),
                    self.max_displacement,
                )
                * c.shape[1]
            )
            flow = flow + decoder(torch.cat([cv, c, flow], dim=1))
            if self.fill_sigma[k] > 0:
                # A weight, not an estimate: no gradient into the frame.
                conf = flow_confidence(F.avg_pool2d(normed, stride), self.fill_tau)
                flow = confidence_fill(flow, conf, self.fill_sigma[k])
            out.append((flow, stride))
        if self.context_net is not None:
            flow = flow + self.context_net(torch.cat([cv, c, flow], dim=1))
            out.append((flow, stride))
        full = 4.0 * F.interpolate(
            flow, size=cur.shape[-2:], mode="bilinear", align_corners=False
        )
        out.append((full, 1))
        return out

    def _estimate(self, cur: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        return self.flow_pyramid(cur, ref)[-1][0]
