"""Layers shared by the image codecs.

GDN and the masked convolution come from CompressAI; the rest is ours. Codec
specific blocks (attention, ACNN, graph attention, transformer blocks) are added
here so that one codec can reuse another's building blocks.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from compressai.layers import GDN, MaskedConv2d

__all__ = [
    "GDN",
    "MaskedConv2d",
    "conv",
    "deconv",
    "analysis_transform",
    "synthesis_transform",
]


def conv(in_ch: int, out_ch: int, kernel_size: int = 5, stride: int = 2) -> nn.Conv2d:
    """'Same' convolution, down-sampling by ``stride``."""
    return nn.Conv2d(in_ch, out_ch, kernel_size, stride, padding=kernel_size // 2)


def deconv(
    in_ch: int, out_ch: int, kernel_size: int = 5, stride: int = 2
) -> nn.ConvTranspose2d:
    """Transposed convolution, up-sampling by ``stride`` exactly."""
    return nn.ConvTranspose2d(
        in_ch,
        out_ch,
        kernel_size,
        stride,
        padding=kernel_size // 2,
        output_padding=stride - 1,
    )


def analysis_transform(in_ch: int, N: int, M: int) -> nn.Sequential:
    """Ballé et al.'s g_a: four stride-2 5x5 convs with GDN (x16 down)."""
    return nn.Sequential(
        conv(in_ch, N), GDN(N), conv(N, N), GDN(N), conv(N, N), GDN(N), conv(N, M)
    )


def synthesis_transform(M: int, N: int, out_ch: int) -> nn.Sequential:
    """Ballé et al.'s g_s: four stride-2 5x5 transposed convs with inverse GDN."""
    return nn.Sequential(
        deconv(M, N),
        GDN(N, inverse=True),
        deconv(N, N),
        GDN(N, inverse=True),
        deconv(N, N),
        GDN(N, inverse=True),
        deconv(N, out_ch),
    )


# -- appended for EDIC (channel attention, residual enhancement) ---------------


class SqueezeExcite(nn.Module):
    """Channel gate: global average pool, bottleneck MLP, sigmoid, rescale.

    Hu et al., "Squeeze-and-Excitation Networks" (CVPR 2018); the channel
    attention EDIC and RCAN use. Input and output ``B x C x H x W``.

    Args:
        channels: C.
        reduction: the MLP's hidden width is ``max(1, C // reduction)``.
    """

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        hidden = max(1, channels // reduction)
        self.fc = nn.Sequential(
            nn.Conv2d(channels, hidden, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, 1),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.fc(x.mean(dim=(2, 3), keepdim=True))


class ChannelAttentionBlock(nn.Module):
    """Residual channel-attention block: ``x + SE(conv(relu(conv(x))))``.

    Zhang et al., "Image Super-Resolution Using Very Deep Residual Channel
    Attention Networks" (ECCV 2018); shape-preserving, ``B x C x H x W``.

    Args:
        channels: C.
        reduction: SE bottleneck ratio.
    """

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 3, padding=1),
            SqueezeExcite(channels, reduction),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResidualBlock(nn.Module):
    """``x + conv(relu(conv(x)))`` with 3x3 convolutions (EDSR style, no norm)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 3, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


__all__ += ["ChannelAttentionBlock", "ResidualBlock", "SqueezeExcite"]
