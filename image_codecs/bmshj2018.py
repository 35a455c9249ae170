"""Scale hyperprior (Ballé et al., ICLR 2018) on the shared entropy layers."""

from __future__ import annotations

import functools
import math
from typing import Any

import torch
import torch.nn as nn

from .base import (
    ImageCodec,
    QualityArg,
    Refinement,
    expect_streams,
    latent_hw,
    register_codec,
)
from .entropy import EntropyBottleneck, GaussianConditional, get_scale_table, ste_round
from .layers import analysis_transform, conv, deconv, synthesis_transform


def _sga_round(v: torch.Tensor, tau: float, gen: torch.Generator) -> torch.Tensor:
    """A soft, stochastic rounding of ``v`` to floor or ceil (Gumbel-softmax
    over the two, logits ``-atanh(distance) / tau``): as tau falls to 0 it
    becomes rounding to the nearest integer."""
    lo = torch.floor(v)
    r = (v - lo).clamp(1e-4, 1.0 - 1e-4)
    logits = torch.stack([-torch.atanh(r), -torch.atanh(1.0 - r)], dim=-1) / tau
    u = torch.rand(logits.shape, generator=gen, device=v.device, dtype=v.dtype)
    gumbel = -torch.log(-torch.log(u.clamp_min(1e-10)))
    return lo + torch.softmax(logits + gumbel, dim=-1)[..., 1]


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
    refinable = True

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

    # -- encoder-side latent refinement ---------------------------------------------
    def _z_likelihood(self, z_hat: torch.Tensor) -> torch.Tensor:
        # CompressAI's forward rounds again, and rounding has no gradient.
        eb = self.entropy_bottleneck
        values = z_hat.transpose(0, 1).reshape(z_hat.shape[1], 1, -1)
        return eb.likelihood_lower_bound(eb._likelihood(values)[0])

    def _coding_cost(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        z: torch.Tensor,
        quality: QualityArg,
        lam: float,
        soft: Any = None,
        amp: bool = False,
    ) -> torch.Tensor:
        """``lam * MSE + bpp`` of coding latents ``(y, z)``, per batch element,
        with z rounded straight-through and y rounded by ``soft(y - means)`` (hard
        rounding when None), as the real coder would round them."""
        med = self.entropy_bottleneck._get_medians().reshape(1, -1, 1, 1)
        z_hat = ste_round(z - med) + med
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=amp):
            hyper = self.h_s(z_hat)
        scales, means = self._params(hyper.float())
        mu = means if means is not None else torch.zeros_like(y)
        y_hat = (soft or ste_round)(y - mu) + mu
        gc = self.gaussian_conditional
        y_lik = gc.likelihood_lower_bound(gc._likelihood(y_hat, scales, means))
        bits = -torch.log2(y_lik).flatten(1).sum(1)
        z_bits = -torch.log2(self._z_likelihood(z_hat))  # C x 1 x B*h*w
        z_bits = z_bits.reshape(z.shape[1], z.shape[0], -1).sum((0, 2))
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=amp):
            x_hat = self.g_s(self.unscale_latent(y_hat, quality))
        mse = ((x_hat.float() - x) ** 2).flatten(1).mean(1)
        return lam * mse + (bits + z_bits) / (x.shape[-2] * x.shape[-1])

    def refine_latents(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        z: torch.Tensor,
        quality: QualityArg,
        refine: Refinement,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Latents ``(y, z)`` of ``x`` that code it at a lower ``lam * MSE + bpp``
        than the analysis transforms' own, for the same decoder.

        The transforms are amortised: trained for all images, they leave a gap
        on each one that gradient descent on the latents of this image closes.
        Rounding is relaxed by stochastic Gumbel annealing (SGA: Y. Yang, R.
        Bamler, S. Mandt, "Improving Inference for Neural Image Compression",
        NeurIPS 2020), whose temperature falls towards hard rounding so the
        optimum found is one of rounded values; with plain straight-through
        rounding the cost rose again after a few steps. The result is kept per
        image only where its cost with hard rounding (the model's own rate) is
        lower than the transforms' latents'.
        """
        if refine.steps <= 0:
            return y, z
        gen = torch.Generator(device=y.device).manual_seed(refine.seed)
        amp = refine.use_amp(x.device)
        params = [p for p in self.parameters() if p.requires_grad]
        for p in params:
            p.requires_grad_(False)
        try:
            with torch.enable_grad():
                y0, z0 = y.detach().float(), z.detach().float()
                yv = y0.clone().requires_grad_(True)
                zv = z0.clone().requires_grad_(True)
                opt = torch.optim.Adam([yv, zv], lr=refine.lr)
                for i in range(refine.steps):
                    # Held at 0.5 for the first 30 % of the steps, then down to
                    # 0.5 * e^-3 = 0.025 at the end (the paper's schedule, per
                    # step count).
                    frac = max(0.0, i / refine.steps - 0.3)
                    tau = 0.5 * math.exp(-3.0 * frac / 0.7)
                    soft = functools.partial(_sga_round, tau=tau, gen=gen)
                    loss = self._coding_cost(
                        x, yv, zv, quality, refine.lam, soft=soft, amp=amp
                    ).sum()
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
            with torch.no_grad():
                before = self._coding_cost(x, y0, z0, quality, refine.lam)
                after = self._coding_cost(x, yv, zv, quality, refine.lam)
                keep = (after < before).view(-1, 1, 1, 1)
                y_out = torch.where(keep, yv.detach(), y0).to(y.dtype)
                z_out = torch.where(keep, zv.detach(), z0).to(z.dtype)
        finally:
            for p in params:
                p.requires_grad_(True)
        return y_out, z_out

    def compress(
        self,
        x: torch.Tensor,
        quality: QualityArg = None,
        refine: Refinement | None = None,
    ) -> dict[str, Any]:
        """Encode ``x``; with ``refine``, code latents refined for this image
        (:meth:`refine_latents`): the decoder and the format are unchanged."""
        self.check_input(x)
        y = self.scale_latent(self.g_a(x), quality)
        z = self.h_a(self._hyper_input(y))
        if refine is not None:
            y, z = self.refine_latents(x, y, z, quality, refine)
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
