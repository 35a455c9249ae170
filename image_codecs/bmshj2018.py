"""Scale hyperprior (Ballé et al., ICLR 2018) on the shared entropy layers."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from .base import ImageCodec, QualityArg, expect_streams, latent_hw, register_codec
from .entropy import EntropyBottleneck, GaussianConditional, get_scale_table
from .layers import analysis_transform, conv, deconv, synthesis_transform


@register_codec("bmshj2018-hyperprior")
class ScaleHyperprior(ImageCodec):
    """Scale hyperprior codec.

    J. Ballé, D. Minnen, S. Singh, S. J. Hwang, N. Johnston, "Variational image
    compression with a scale hyperprior", ICLR 2018.

    .. code-block:: none

              ┌───┐  y  ┌────┐ y*g ┌───┐  z  ┌───┐ z_hat        ┌───┐
        x ──►─┤g_a├──►──┤gain├──►─┬─┤h_a├──►──┤ Q ├──►── EB ──►──┤h_s├──┐
              └───┘     └────┘    │ └───┘     └───┘              └───┘  │
                                ┌─┴─┐                            scales│
                                │ Q ├──►── GC (scales) ◄──────────────┘
                                └─┬─┘
              ┌───┐     ┌──────┐  │ y_hat
      x_hat ◄─┤g_s├──◄──┤1/gain├◄─┘
              └───┘     └──────┘

        EB = entropy bottleneck, GC = Gaussian conditional, gain = the
        per-quality gain vector (identity when num_qualities = 1).

    Args:
        in_channels: 3 (frames, residuals) or 2 (flow).
        N: channels of the transforms and of z.
        M: latent channels.
        num_qualities: rate points in one model.
    """

    downsampling_factor = 64

    def __init__(
        self, in_channels: int = 3, N: int = 128, M: int = 192, num_qualities: int = 1
    ) -> None:
        super().__init__(in_channels=in_channels, M=M, num_qualities=num_qualities)
        self.N, self.M = N, M
        self.g_a = analysis_transform(in_channels, N, M)
        self.g_s = synthesis_transform(M, N, in_channels)
        self.h_a, self.h_s = self._hyper_transforms(N, M)
        self.entropy_bottleneck = EntropyBottleneck(N)
        self.gaussian_conditional = GaussianConditional(None)

    def _hyper_transforms(self, N: int, M: int) -> tuple[nn.Module, nn.Module]:
        h_a = nn.Sequential(
            conv(M, N, stride=1, kernel_size=3),
            nn.ReLU(inplace=True),
            conv(N, N),
            nn.ReLU(inplace=True),
            conv(N, N),
        )
        h_s = nn.Sequential(
            deconv(N, N),
            nn.ReLU(inplace=True),
            deconv(N, N),
            nn.ReLU(inplace=True),
            conv(N, M, stride=1, kernel_size=3),
            # Softplus, not the paper's ReLU: ReLU's exact zeros put scales at
            # the lower bound where y is not zero, and those escape-coded values
            # made real bytes drift 6% from the estimate in short training runs.
            nn.Softplus(),
        )
        return h_a, h_s

    # Subclasses change how y is modelled given the hyperprior output.
    def _hyper_input(self, y: torch.Tensor) -> torch.Tensor:
        return torch.abs(y)

    def _params(self, hyper: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        return hyper, None  # scales, means

    def update(self, scale_table=None, force: bool = False, update_quantiles=False):
        if scale_table is None:
            scale_table = get_scale_table()
        return super().update(
            scale_table, force=force, update_quantiles=update_quantiles
        )

    def forward(self, x: torch.Tensor, quality: QualityArg = None) -> dict[str, Any]:
        y = self.scale_latent(self.g_a(x), quality)
        z = self.h_a(self._hyper_input(y))
        z_hat, z_lik = self.entropy_bottleneck(z)
        scales, means = self._params(self.h_s(z_hat))
        y_hat, y_lik = self.gaussian_conditional(y, scales, means=means)
        x_hat = self.g_s(self.unscale_latent(y_hat, quality))
        return {"x_hat": x_hat, "likelihoods": {"y": y_lik, "z": z_lik}}

    def compress(self, x: torch.Tensor, quality: QualityArg = None) -> dict[str, Any]:
        self.check_input(x)
        y = self.scale_latent(self.g_a(x), quality)
        z = self.h_a(self._hyper_input(y))
        z_strings = self.entropy_bottleneck.compress(z)
        z_hat = self.entropy_bottleneck.decompress(z_strings, z.shape[-2:])
        scales, means = self._params(self.h_s(z_hat))
        indexes = self.gaussian_conditional.build_indexes(scales)
        y_strings = self.gaussian_conditional.compress(y, indexes, means=means)
        y_hat = self.gaussian_conditional.quantize(y, "dequantize", means)
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
        z_hat = self.entropy_bottleneck.decompress(z_strings, latent_hw(shape))
        scales, means = self._params(self.h_s(z_hat))
        indexes = self.gaussian_conditional.build_indexes(scales)
        y_hat = self.gaussian_conditional.decompress(
            y_strings, indexes, z_hat.dtype, means=means
        )
        x_hat = self.g_s(self.unscale_latent(y_hat, quality))
        return {"x_hat": x_hat}
