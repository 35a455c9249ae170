"""Mean-scale hyperprior (Minnen et al., NeurIPS 2018) on the shared layers."""

from __future__ import annotations

import torch
import torch.nn as nn

from .base import register_codec
from .bmshj2018 import ScaleHyperprior
from .layers import conv, deconv


@register_codec("mbt2018-mean")
class MeanScaleHyperprior(ScaleHyperprior):
    """Scale hyperprior with Gaussian means predicted by the hyper decoder.

    D. Minnen, J. Ballé, G. D. Toderici, "Joint Autoregressive and Hierarchical
    Priors for Learned Image Compression", NeurIPS 2018 (the model without the
    context model).

    .. code-block:: none

              ┌───┐  y*g  ┌───┐  z  ┌───┐ z_hat        ┌───┐
        x ──►─┤g_a├──►─┬──┤h_a├──►──┤ Q ├──►── EB ──►──┤h_s├──┐
              └───┘    │  └───┘     └───┘              └───┘  │ scales,
                     ┌─┴─┐                                    │ means
                     │ Q ├──►── GC (scales, means) ◄──────────┘
                     └─┬─┘
              ┌───┐    │ y_hat / g
      x_hat ◄─┤g_s├──◄─┘
              └───┘

    Args: as :class:`~image_codecs.bmshj2018.ScaleHyperprior`.
    """

    def _hyper_transforms(self, N: int, M: int) -> tuple[nn.Module, nn.Module]:
        h_a = nn.Sequential(
            conv(M, N, stride=1, kernel_size=3),
            nn.LeakyReLU(inplace=True),
            conv(N, N),
            nn.LeakyReLU(inplace=True),
            conv(N, N),
        )
        h_s = nn.Sequential(
            deconv(N, M),
            nn.LeakyReLU(inplace=True),
            deconv(M, M * 3 // 2),
            nn.LeakyReLU(inplace=True),
            conv(M * 3 // 2, M * 2, stride=1, kernel_size=3),
        )
        return h_a, h_s

    def _hyper_input(self, y: torch.Tensor) -> torch.Tensor:
        return y

    def _params(self, hyper: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        scales, means = hyper.chunk(2, 1)
        return scales, means
