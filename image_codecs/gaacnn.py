"""GAACNN: graph attention and asymmetric convolutions (Tang et al., TCSVT 2023)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn

from .base import register_codec
from .gaacnn_layers import (
    ACNNBlock,
    AddConstant,
    ChannelSpatialAttention,
    GraphAttention,
)
from .layers import GDN, conv, deconv
from .mbt2018_mean import MeanScaleHyperprior


@register_codec("gaacnn")
class GAACNN(MeanScaleHyperprior):
    """Mean-scale hyperprior codec with ACNN blocks, self-attention and GAT.

    Z. Tang, H. Wang, X. Yi, Y. Zhang, S. Kwong, C.-C. J. Kuo, "Joint Graph
    Attention and Asymmetric Convolutional Neural Network for Deep Image
    Compression", IEEE Transactions on Circuits and Systems for Video Technology
    33(1), pp. 421-433, 2023. Our own implementation from the paper's
    description.

    .. code-block:: none

        g_a:  x ─► -c ─► conv↓2 ─ GDN ─ ACNN ─► conv↓2 ─ GDN ─ ACNN ─► conv↓2 ─ GDN
                 ─ ACNN ─► conv↓2 ─ ACNN ─► SA ─► y            (x16 down, M ch)
        h_a:  y*g ─► GAT ─► conv3 ─ LReLU ─ ACNN ─► conv↓2 ─ LReLU ─ ACNN
                 ─► conv↓2 ─► z                                (x4 down, N ch)
        h_s:  z_hat ─► deconv↑2 ─ LReLU ─ ACNN ─► deconv↑2 ─ LReLU ─ ACNN ─► GAT
                 ─► conv3 ─► (scales, means)                   (2M ch)
        g_s:  y_hat/g ─► ACNN ─► deconv↑2 ─ IGDN ─ ACNN ─► deconv↑2 ─ IGDN ─ ACNN
                 ─► deconv↑2 ─ IGDN ─ ACNN ─► deconv↑2 ─► +c ─► x_hat

                  ┌───┐ y*g  ┌───┐  z  ┌───┐ z_hat       ┌───┐
            x ──►─┤g_a├──►─┬─┤h_a├──►──┤ Q ├──►── EB ──►─┤h_s├──┐
                  └───┘    │ └───┘     └───┘             └───┘  │ scales,
                         ┌─┴─┐                                  │ means
                         │ Q ├──►── GC (scales, means) ◄────────┘
                         └─┬─┘
                  ┌───┐    │ y_hat
        x_hat ◄───┤g_s├──◄─┘
                  └───┘

        ACNN = x + ReLU(conv3x1 + conv3x3 + conv1x3)(x); SA = channel + spatial
        self-attention, learned linear weighting; GAT = graph attention over the
        latent positions (3x3 window + 8-point rings at dilations 3, 9, 27);
        EB = entropy bottleneck; GC = Gaussian conditional; g = the per-quality
        gain vector (identity when num_qualities = 1); c = ``input_offset``.

    Four ACNN blocks in g_a and in g_s, two in h_a and in h_s, as in the paper.
    The GAT sits at the latent resolution in both hyper transforms: first in h_a
    (on y itself) and last before the parameter conv in h_s, so the entropy
    parameters of a latent element depend on latents up to 27 positions away in
    one graph layer, where the hyper convolutions see about 10. The paper does
    not fix the graph; a fixed multi-scale grid graph keeps encoder and decoder
    identical by construction and costs O(positions) memory (see
    :class:`~image_codecs.gaacnn_layers.GraphAttention`). Coding a 1920x1080
    frame (padded to 1920x1088) with the default sizes (N=128, M=192), compress
    then decompress in one process, peaked at 2.1 GB resident memory (0.9 GB of
    it torch and the model before coding; ``/usr/bin/time -v``, torch 2.14 CPU,
    2 threads; the round trip was exact); the full-resolution activations of
    g_a and g_s are most of it, the GAT layers add about 80 MB. Mean-scale
    Gaussian conditional as in
    :class:`~image_codecs.mbt2018_mean.MeanScaleHyperprior`, whose forward,
    compress and decompress this class reuses. The paper's headline models are
    MS-SSIM optimised: train with ``dvc_ext.losses`` ``metric=ms-ssim``; the
    model itself is the same for both objectives.

    **Initialisation** (what makes short runs train; measured, see
    tests/test_codec_rate.py): images enter g_a centred (``x - c``, and g_s adds
    ``c`` back), so the decoder need not first learn the mean grey level, which
    at Adam's step size of 1e-3 per step takes hundreds of steps; g_a's last
    convolution starts at ``latent_init_gain`` times PyTorch's default scale, so
    the untrained latent is of the order of the quantisation step (standard
    deviation 0.6 to 1.1 on a natural image with the tiny config, 0.4 to 0.5
    with the default sizes, seeds 0-2; the default scale gives 0.1 to 0.2 and
    0.07 to 0.08, all rounded to zero) and the decoder gets a signal through
    the quantisation noise from the first step; the attention and GAT blocks
    start near the identity (see their classes). Together these took the three
    rate points of tests/test_codec_rate.py, after its 120 steps, from MSE
    0.048 / 0.054 / 0.050 (no ordering) to 0.029 / 0.027 / 0.026.

    Args:
        in_channels: 3 (frames, residuals) or 2 (flow).
        N: channels of the transforms and of z.
        M: latent channels.
        num_qualities: rate points in one model.
        acnn: ACNN blocks; False uses plain residual 3x3 blocks (ablation).
        attention: the self-attention after g_a (ablation switch).
        gat: the graph attention layers in h_a and h_s (ablation switch).
        gat_heads: attention heads of each GAT layer.
        gat_dilations: ring distances (latent positions) of the GAT graph.
        input_offset: c, subtracted from the input and added to the output;
            None = 0.5 for 3 channels (images in [0, 1]), 0 otherwise (flow).
            Residual codecs may pass 0.
        latent_init_gain: initial scale of g_a's last convolution.
    """

    downsampling_factor = 64

    def __init__(
        self,
        in_channels: int = 3,
        N: int = 128,
        M: int = 192,
        num_qualities: int = 1,
        acnn: bool = True,
        attention: bool = True,
        gat: bool = True,
        gat_heads: int = 4,
        gat_dilations: Sequence[int] = (3, 9, 27),
        input_offset: float | None = None,
        latent_init_gain: float = 6.0,
    ) -> None:
        super().__init__(in_channels=in_channels, N=N, M=M, num_qualities=num_qualities)
        self.acnn, self.attention, self.gat = bool(acnn), bool(attention), bool(gat)
        gat_kw = {"heads": gat_heads, "dilations": tuple(int(d) for d in gat_dilations)}

        def block(c: int) -> ACNNBlock:
            return ACNNBlock(c, asymmetric=self.acnn)

        def opt(on: bool, module: nn.Module) -> nn.Module:
            # Identity keeps every other module's index, so an ablated model
            # loads the full model's state dict (strict=False) for comparison.
            return module if on else nn.Identity()

        # The parent's transforms are replaced (its entropy layers are kept).
        if input_offset is None:
            input_offset = 0.5 if in_channels == 3 else 0.0
        self.input_offset = float(input_offset)
        self.g_a = nn.Sequential(
            AddConstant(-self.input_offset),
            conv(in_channels, N), GDN(N), block(N),
            conv(N, N), GDN(N), block(N),
            conv(N, N), GDN(N), block(N),
            conv(N, M), block(M),
            opt(self.attention, ChannelSpatialAttention(M)),
        )  # fmt: skip
        last = self.g_a[10]
        with torch.no_grad():
            last.weight.mul_(latent_init_gain)
            last.bias.mul_(latent_init_gain)
        self.g_s = nn.Sequential(
            block(M),
            deconv(M, N), GDN(N, inverse=True), block(N),
            deconv(N, N), GDN(N, inverse=True), block(N),
            deconv(N, N), GDN(N, inverse=True), block(N),
            deconv(N, in_channels),
            AddConstant(self.input_offset),
        )  # fmt: skip
        P = M * 3 // 2
        self.h_a = nn.Sequential(
            opt(self.gat, GraphAttention(M, **gat_kw)),
            conv(M, N, stride=1, kernel_size=3), nn.LeakyReLU(inplace=True), block(N),
            conv(N, N), nn.LeakyReLU(inplace=True), block(N),
            conv(N, N),
        )  # fmt: skip
        self.h_s = nn.Sequential(
            deconv(N, M), nn.LeakyReLU(inplace=True), block(M),
            deconv(M, P), nn.LeakyReLU(inplace=True), block(P),
            opt(self.gat, GraphAttention(P, **gat_kw)),
            conv(P, M * 2, stride=1, kernel_size=3),
        )  # fmt: skip
