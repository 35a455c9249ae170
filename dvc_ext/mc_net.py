"""DVC's motion-compensation refinement network."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class _ResBlock(nn.Module):
    def __init__(self, ch: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(ch, ch, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(ch, ch, 3, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class MotionCompensationNet(nn.Module):
    """Refines the warped reference into the prediction of the current frame.

    G. Lu, W. Ouyang, D. Xu, X. Zhang, C. Cai, Z. Gao, "DVC: An End-to-end Deep
    Video Compression Framework", CVPR 2019, section 3.2 (motion compensation):
    the reference, the warped reference and the decoded flow go in; a U-shaped
    stack of residual blocks at three scales refines them.

    .. code-block:: none

        [x_ref | warp(x_ref, v) | v] ─► conv ─► RB ─┬─► pool ─► RB ─┬─► pool ─► RB RB
                                                    │               │            │
                         warp + conv(RB(.)) ◄── + ◄─┴── up ◄── RB ◄─ + ◄── up ◄──┘

    We predict a correction added to the warped frame rather than the frame
    itself, so an untrained net starts as plain warping.

    Args:
        channels: feature width (DVC uses 64).

    Shapes:
        ref, warped: ``B x 3 x H x W`` in [0, 1]; flow: ``B x 2 x H x W`` in
        pixels; H and W multiples of 4. Output ``B x 3 x H x W``.
    """

    multiple = 4

    def __init__(self, channels: int = 64) -> None:
        super().__init__()
        c = channels
        self.head = nn.Conv2d(8, c, 3, padding=1)
        self.enc0, self.enc1, self.enc2 = _ResBlock(c), _ResBlock(c), _ResBlock(c)
        self.mid = _ResBlock(c)
        self.dec1, self.dec0 = _ResBlock(c), _ResBlock(c)
        self.tail = nn.Sequential(
            nn.Conv2d(c, c, 3, padding=1), nn.ReLU(), nn.Conv2d(c, 3, 3, padding=1)
        )
        # Zero-initialised output layer: the untrained net returns the warp.
        nn.init.zeros_(self.tail[-1].weight)
        nn.init.zeros_(self.tail[-1].bias)

    def forward(
        self, ref: torch.Tensor, warped: torch.Tensor, flow: torch.Tensor
    ) -> torch.Tensor:
        # Flow in pixels can be tens of units; scale it near the frames' range.
        f0 = self.enc0(self.head(torch.cat([ref, warped, flow / 16.0], 1)))
        f1 = self.enc1(F.avg_pool2d(f0, 2))
        f2 = self.mid(self.enc2(F.avg_pool2d(f1, 2)))
        u1 = self.dec1(f1 + F.interpolate(f2, scale_factor=2.0, mode="nearest"))
        u0 = self.dec0(f0 + F.interpolate(u1, scale_factor=2.0, mode="nearest"))
        return warped + self.tail(u0)
