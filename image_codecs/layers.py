"""Layers shared by the image codecs.

GDN and the masked convolution come from CompressAI; the rest is ours. Codec
specific blocks (attention, ACNN, graph attention, transformer blocks) are added
here so that one codec can reuse another's building blocks.
"""

from __future__ import annotations

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
