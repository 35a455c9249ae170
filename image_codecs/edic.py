"""EDIC: channel attention, a Gaussian-mixture hyperprior, decoder-side enhancement.

Our implementation from the paper's description (its public code holds only the
older hyperprior baseline): J. Liu, G. Lu, Z. Hu, D. Xu, "A Unified End-to-End
Framework for Efficient Deep Image Compression", arXiv:2002.03370, 2020. See
:class:`EDIC`.

Only the paper's abstract and a summary are available to us, not its layer
tables, so these are our choices: where the channel-attention blocks sit (1/4,
1/8 and 1/16 resolution in both transforms), the RCAN-style block itself, the
hyper decoder's widths (mbt2018-mean's, widened to 3*K*M outputs) and the
enhancement module's size (3 residual blocks of 32 channels at full
resolution). On a CPU that module is not cheap: at 768x512 it took about 0.6x
the synthesis transform's time (measured, one thread).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from dvc_common import fixed_threads

from .base import ImageCodec, QualityArg, expect_streams, latent_hw, register_codec
from .entropy import EntropyBottleneck, GaussianMixtureConditional
from .layers import GDN, ChannelAttentionBlock, ResidualBlock, conv, deconv

__all__ = ["EDIC", "EnhancementModule"]


class EnhancementModule(nn.Module):
    """Decoder-side enhancement: a residual CNN on the decoded image.

    ``x_hat + tail(blocks(head(x_hat)))``: it adds the high-frequency detail the
    synthesis transform lost, at the decoder only, so it costs no bits.

    Args:
        channels: image channels C (3, or 2 for flow).
        features: width of the residual blocks.
        num_blocks: residual blocks.

    Shapes: ``B x C x H x W`` in, same out.
    """

    def __init__(self, channels: int, features: int = 32, num_blocks: int = 3) -> None:
        super().__init__()
        if num_blocks < 1 or features < 1:
            raise ValueError("the enhancement module needs >= 1 block and feature")
        self.head = nn.Conv2d(channels, features, 3, padding=1)
        self.blocks = nn.Sequential(
            *(ResidualBlock(features) for _ in range(num_blocks))
        )
        self.tail = nn.Conv2d(features, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.head(x)
        return x + self.tail(self.blocks(f) + f)


@register_codec("edic")
class EDIC(ImageCodec):
    """Efficient Deep Image Compression (EDIC), without any autoregressive context.

    J. Liu, G. Lu, Z. Hu, D. Xu, "A Unified End-to-End Framework for Efficient
    Deep Image Compression", arXiv:2002.03370, 2020.

    .. code-block:: none

              ┌─────────┐ y*g ┌───┐  z  ┌───┐ z_hat       ┌───┐ 3*K*M channels:
        x ──►─┤g_a + CA ├──►┬─┤h_a├──►──┤ Q ├──►── EB ──►─┤h_s├──┐ w_k, mu_k, s_k
              └─────────┘   │ └───┘     └───┘             └───┘  │
                          ┌─┴─┐                                  │
                          │ Q ├──►── GMM (K Gaussians) ◄─────────┘
                          └─┬─┘
              ┌─────────┐   │ y_hat / g
         ┌─◄──┤g_s + CA ├─◄─┘
         │    └─────────┘
         │    ┌─────────────┐
         └─►──┤ enhancement ├──►── x_hat
              └─────────────┘

        g_a: conv5x5/2, GDN, conv5x5/2, GDN, CA, conv5x5/2, GDN, CA,
             conv5x5/2 (-> M), CA                        (x16 down)
        g_s: CA, deconv/2, IGDN, CA, deconv/2, IGDN, CA, deconv/2, IGDN,
             deconv/2 (-> C)                             (x16 up)
        CA = residual channel-attention block (conv, ReLU, conv, squeeze-
        excite gate, skip), at 1/4, 1/8 and 1/16 resolution.
        EB = entropy bottleneck; GMM = Gaussian-mixture conditional,
        p(y_hat | z_hat) = sum_k w_k N(mu_k, s_k^2) convolved with U(-1/2, 1/2);
        gain = the per-quality gain vector (identity when num_qualities = 1).

    All mixture parameters come from the hyperprior alone, so y is decoded in
    one parallel pass (the paper's point: about 150x faster decoding than
    Minnen et al.'s autoregressive model). Rate R = H(y_hat) + H(z_hat) is in
    ``forward``'s likelihoods; the distortion term is the trainer's choice.

    Ablation switches (each changes the output and the parameter count):
    ``channel_attention=False`` drops every CA block, ``mixture_components=1``
    is a plain mean-scale Gaussian, ``enhancement=False`` drops the
    enhancement module.

    Args:
        in_channels: 3 (frames, residuals) or 2 (flow).
        N: channels of the transforms and of z.
        M: latent channels.
        num_qualities: rate points in one model.
        mixture_components: K, Gaussians per latent element.
        channel_attention: use the CA blocks in g_a and g_s.
        enhancement: use the decoder-side enhancement module.
        enhancement_features: width of the enhancement module.
        enhancement_blocks: residual blocks in it.
        attention_reduction: squeeze-excite bottleneck ratio.
    """

    downsampling_factor = 64
    tiny_config = {"N": 16, "M": 24, "enhancement_features": 8, "enhancement_blocks": 1}

    def __init__(
        self,
        in_channels: int = 3,
        N: int = 192,
        M: int = 192,
        num_qualities: int = 1,
        mixture_components: int = 3,
        channel_attention: bool = True,
        enhancement: bool = True,
        enhancement_features: int = 32,
        enhancement_blocks: int = 3,
        attention_reduction: int = 16,
    ) -> None:
        super().__init__(in_channels=in_channels, M=M, num_qualities=num_qualities)
        if mixture_components < 1:
            raise ValueError(
                f"mixture_components must be >= 1, got {mixture_components}"
            )
        self.N, self.M, self.K = N, M, int(mixture_components)
        self.channel_attention = bool(channel_attention)
        self.enhancement = bool(enhancement)

        def ca(ch: int) -> nn.Module:
            # Identity when switched off keeps every other parameter's name, so
            # ablated and full models share state-dict keys.
            if not self.channel_attention:
                return nn.Identity()
            return ChannelAttentionBlock(ch, attention_reduction)

        self.g_a = nn.Sequential(
            conv(in_channels, N),
            GDN(N),
            conv(N, N),
            GDN(N),
            ca(N),
            conv(N, N),
            GDN(N),
            ca(N),
            conv(N, M),
            ca(M),
        )
        self.g_s = nn.Sequential(
            ca(M),
            deconv(M, N),
            GDN(N, inverse=True),
            ca(N),
            deconv(N, N),
            GDN(N, inverse=True),
            ca(N),
            deconv(N, N),
            GDN(N, inverse=True),
            deconv(N, in_channels),
        )
        self.enhance = (
            EnhancementModule(in_channels, enhancement_features, enhancement_blocks)
            if self.enhancement
            else nn.Identity()
        )
        self.h_a = nn.Sequential(
            conv(M, N, stride=1, kernel_size=3),
            nn.LeakyReLU(inplace=True),
            conv(N, N),
            nn.LeakyReLU(inplace=True),
            conv(N, N),
        )
        self.entropy_bottleneck = EntropyBottleneck(N)
        # Built last: the mixture size then changes no other module's init.
        self.h_s = nn.Sequential(
            deconv(N, M),
            nn.LeakyReLU(inplace=True),
            deconv(M, M * 3 // 2),
            nn.LeakyReLU(inplace=True),
            conv(M * 3 // 2, 3 * self.K * M, stride=1, kernel_size=3),
        )
        self.gaussian_mixture = GaussianMixtureConditional(self.K)

    # -- pieces -------------------------------------------------------------------
    def mixture_params(
        self, z_hat: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The mixture parameters of y from the decoded hyper latent.

        Args:
            z_hat: ``B x N x h x w``.

        Returns:
            ``(scales, means, weight_logits)``, each ``B x K x M x 4h x 4w``
            (scales before the lower bound, weights before the softmax over K).
        """
        p = self.h_s(z_hat)
        B, _, H, W = p.shape
        p = p.reshape(B, 3, self.K, self.M, H, W)
        weight_logits, means, scales = p.unbind(1)
        return scales, means, weight_logits

    def _synthesis(self, y_hat: torch.Tensor, quality: QualityArg) -> torch.Tensor:
        return self.enhance(self.g_s(self.unscale_latent(y_hat, quality)))

    # -- the contract -------------------------------------------------------------
    def forward(self, x: torch.Tensor, quality: QualityArg = None) -> dict[str, Any]:
        y = self.scale_latent(self.g_a(x), quality)
        z = self.h_a(y)
        z_hat, z_lik = self.entropy_bottleneck(z)
        y_hat, y_lik = self.gaussian_mixture(y, *self.mixture_params(z_hat))
        x_hat = self._synthesis(y_hat, quality)
        return {"x_hat": x_hat, "likelihoods": {"y": y_lik, "z": z_lik}}

    def compress(self, x: torch.Tensor, quality: QualityArg = None) -> dict[str, Any]:
        self.check_input(x)
        y = self.scale_latent(self.g_a(x), quality)
        z = self.h_a(y)
        z_strings = self.entropy_bottleneck.compress(z)
        z_hat = self.entropy_bottleneck.decompress(z_strings, z.shape[-2:])
        # The mixture CDFs depend on every bit of h_s's output, so it runs
        # under one fixed thread count on both sides, whatever the caller's.
        with fixed_threads():
            params = self.mixture_params(z_hat)
            y_strings = self.gaussian_mixture.compress(y, *params)
        y_hat = torch.round(y)
        return {
            "strings": [y_strings, z_strings],
            "shape": list(z.shape[-2:]),
            "x_hat": self._synthesis(y_hat, quality),
        }

    def decompress(
        self, strings: list[list[bytes]], shape: Any, quality: QualityArg = None
    ) -> dict[str, torch.Tensor]:
        y_strings, z_strings = expect_streams(strings, 2)
        z_hat = self.entropy_bottleneck.decompress(z_strings, latent_hw(shape))
        with fixed_threads():
            params = self.mixture_params(z_hat)
            y_hat = self.gaussian_mixture.decompress(y_strings, *params)
        return {"x_hat": self._synthesis(y_hat.to(z_hat.dtype), quality)}
