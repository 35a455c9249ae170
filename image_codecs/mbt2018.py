"""Joint autoregressive + hyperprior model (Minnen et al., NeurIPS 2018).

The decode-speed reference of the EDIC paper: its context model makes decoding
sequential over latent positions.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from .base import QualityArg, expect_streams, latent_hw, register_codec
from .entropy import BufferedRansEncoder, RansDecoder
from .layers import MaskedConv2d
from .mbt2018_mean import MeanScaleHyperprior


@register_codec("mbt2018")
class JointAutoregressiveHierarchicalPriors(MeanScaleHyperprior):
    """Mean-scale hyperprior plus a 5x5 masked-convolution context model.

    D. Minnen, J. Ballé, G. D. Toderici, "Joint Autoregressive and Hierarchical
    Priors for Learned Image Compression", NeurIPS 2018.

    .. code-block:: none

              ┌───┐  y*g  ┌───┐ z ┌───┐ z_hat       ┌───┐ psi
        x ──►─┤g_a├──►─┬──┤h_a├─►─┤ Q ├──►── EB ─►──┤h_s├──►──┐
              └───┘    │  └───┘   └───┘             └───┘     │
                     ┌─┴─┐        ┌─────────────┐   phi  ┌────┴───┐
                     │ Q ├──►─────┤ context 5x5 ├──►─────┤ params ├─► scales,
                     └─┬─┘ y_hat  │ (masked)    │        └────────┘   means
                       │          └─────────────┘                       │
                       └──────────►── GC ◄──────────────────────────────┘
              ┌───┐    │ y_hat / g
      x_hat ◄─┤g_s├──◄─┘
              └───┘

    Coding runs in raster order over latent positions: each position's scales
    and means depend on the already decoded positions above and to the left.

    Args: as :class:`~image_codecs.bmshj2018.ScaleHyperprior`.
    """

    KERNEL = 5
    # Its rate runs through the serial context model: the refinement inherited
    # from the hyperprior would ignore it, so the encoder does not offer it.
    refinable = False

    def __init__(
        self, in_channels: int = 3, N: int = 192, M: int = 192, num_qualities: int = 1
    ) -> None:
        super().__init__(in_channels=in_channels, N=N, M=M, num_qualities=num_qualities)
        self.context_prediction = MaskedConv2d(
            M, 2 * M, kernel_size=self.KERNEL, padding=self.KERNEL // 2, stride=1
        )
        self.entropy_parameters = nn.Sequential(
            nn.Conv2d(M * 4, M * 10 // 3, 1),
            nn.LeakyReLU(inplace=True),
            nn.Conv2d(M * 10 // 3, M * 8 // 3, 1),
            nn.LeakyReLU(inplace=True),
            nn.Conv2d(M * 8 // 3, M * 2, 1),
        )

    def forward(self, x: torch.Tensor, quality: QualityArg = None) -> dict[str, Any]:
        y = self.scale_latent(self.g_a(x), quality)
        z = self.h_a(y)
        z_hat, z_lik = self.entropy_bottleneck(z)
        psi = self.h_s(z_hat)
        y_hat = self.gaussian_conditional.quantize(
            y, "noise" if self.training else "dequantize"
        )
        phi = self.context_prediction(y_hat)
        scales, means = self.entropy_parameters(torch.cat([psi, phi], 1)).chunk(2, 1)
        _, y_lik = self.gaussian_conditional(y, scales, means=means)
        x_hat = self.g_s(self.unscale_latent(y_hat, quality))
        return {"x_hat": x_hat, "likelihoods": {"y": y_lik, "z": z_lik}}

    def _position_params(
        self, y_pad: torch.Tensor, psi: torch.Tensor, h: int, w: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Scales and means (B x M) at latent position (h, w).

        Encoder and decoder both call this on a buffer holding only the positions
        decoded so far (zeros elsewhere), so they compute identical parameters.
        """
        k = self.KERNEL
        crop = y_pad[:, :, h : h + k, w : w + k]
        mcp = self.context_prediction
        phi = F.conv2d(crop, mcp.weight * mcp.mask, mcp.bias)
        p = self.entropy_parameters(
            torch.cat([psi[:, :, h : h + 1, w : w + 1], phi], 1)
        )
        scales, means = p[:, :, 0, 0].chunk(2, 1)
        return scales, means

    def _tables(self) -> tuple[list, list, list]:
        gc = self.gaussian_conditional
        return gc.quantized_cdf.tolist(), gc.cdf_length.tolist(), gc.offset.tolist()

    def compress(self, x: torch.Tensor, quality: QualityArg = None) -> dict[str, Any]:
        self.check_input(x)
        y = self.scale_latent(self.g_a(x), quality)
        z = self.h_a(y)
        z_strings = self.entropy_bottleneck.compress(z)
        z_hat = self.entropy_bottleneck.decompress(z_strings, z.shape[-2:])
        psi = self.h_s(z_hat)
        B, M, H, W = y.shape
        pad = self.KERNEL // 2
        cdf, lengths, offsets = self._tables()
        y_pad = F.pad(torch.zeros_like(y), (pad, pad, pad, pad))
        encoders = [BufferedRansEncoder() for _ in range(B)]
        gc = self.gaussian_conditional
        for h in range(H):
            for w in range(W):
                scales, means = self._position_params(y_pad, psi, h, w)
                idx = gc.build_indexes(scales)
                sym = gc.quantize(y[:, :, h, w], "symbols", means)
                y_pad[:, :, h + pad, w + pad] = gc.dequantize(sym, means)
                for b in range(B):
                    encoders[b].encode_with_indexes(
                        sym[b].tolist(), idx[b].tolist(), cdf, lengths, offsets
                    )
        y_strings = [e.flush() for e in encoders]
        y_hat = y_pad[:, :, pad : pad + H, pad : pad + W]
        x_hat = self.g_s(self.unscale_latent(y_hat, quality))
        return {
            "strings": [y_strings, z_strings],
            "shape": list(z.shape[-2:]),
            "x_hat": x_hat,
        }

    def decompress(
        self, strings: list[list[bytes]], shape: Any, quality: QualityArg = None
    ) -> dict[str, torch.Tensor]:
        y_strings, z_strings = expect_streams(strings, 2)
        zh, zw = latent_hw(shape)
        z_hat = self.entropy_bottleneck.decompress(z_strings, (zh, zw))
        psi = self.h_s(z_hat)
        B, H, W = len(y_strings), zh * 4, zw * 4
        pad = self.KERNEL // 2
        cdf, lengths, offsets = self._tables()
        y_pad = torch.zeros(B, self.M, H + 2 * pad, W + 2 * pad, device=z_hat.device)
        decoders = []
        for s in y_strings:
            d = RansDecoder()
            d.set_stream(s)
            decoders.append(d)
        gc = self.gaussian_conditional
        for h in range(H):
            for w in range(W):
                scales, means = self._position_params(y_pad, psi, h, w)
                idx = gc.build_indexes(scales)
                sym = torch.stack(
                    [
                        torch.tensor(
                            decoders[b].decode_stream(
                                idx[b].tolist(), cdf, lengths, offsets
                            ),
                            dtype=torch.float32,
                        )
                        for b in range(B)
                    ]
                ).to(means.device)
                y_pad[:, :, h + pad, w + pad] = gc.dequantize(sym, means)
        y_hat = y_pad[:, :, pad : pad + H, pad : pad + W]
        x_hat = self.g_s(self.unscale_latent(y_hat, quality))
        return {"x_hat": x_hat}
