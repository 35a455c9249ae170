"""The entropy layers every image codec shares.

This module is the one place that imports CompressAI's entropy machinery
(``EntropyBottleneck``, ``GaussianConditional``, the rANS coder). Codecs import
these names from here, so the motion, residual and intra codecs of the video
pipeline all code their latents with the same layers.

It also holds :class:`GaussianMixtureConditional`, our own mixture-of-Gaussians
conditional. CompressAI ships one, but it fails at batch 2, returns side data
outside the strings, edits its inputs in place and builds per-element CDFs in
Python lists (about 3 s to decode a 192x32x48 latent). Ours builds all CDFs as
tensors, deduplicates identical ones before they cross into the C++ coder, keeps
everything the decoder needs inside the string, and leaves its inputs alone.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from compressai.ans import BufferedRansEncoder, RansDecoder, RansEncoder
from compressai.entropy_models import EntropyBottleneck as _EntropyBottleneck
from compressai.entropy_models import GaussianConditional as _GaussianConditional
from compressai.models.utils import update_registered_buffers
from compressai.ops import LowerBound

from dvc_common import BitstreamError

__all__ = [
    "BufferedRansEncoder",
    "EntropyBottleneck",
    "GaussianConditional",
    "GaussianMixtureConditional",
    "RansDecoder",
    "RansEncoder",
    "get_scale_table",
    "ste_round",
    "update_registered_buffers",
]

#: Precision of the quantised CDFs; CompressAI's rANS coder is built for 16.
PRECISION = 16


def float32_region(*tensors: torch.Tensor):
    """``(autocast off, tensors as float32)`` for code that must stay float32.

    Mixed-precision training (``precision: bf16``) runs the transforms under
    ``torch.autocast``; the likelihoods feed the rate term through ``-log2``,
    where bf16's 8-bit mantissa would misstate small probabilities (a
    likelihood of 1e-3 is off by up to 0.4 %, its bits by far more in sum), so
    every entropy model computes in float32 whatever its caller runs in.
    """
    device = tensors[0].device.type if tensors else "cpu"
    ctx = torch.autocast(device_type=device, enabled=False)
    return ctx, tuple(
        t.float() if isinstance(t, torch.Tensor) and t.is_floating_point() else t
        for t in tensors
    )


class EntropyBottleneck(_EntropyBottleneck):
    """CompressAI's factorized prior, computed in float32 under autocast."""

    def forward(
        self, x: torch.Tensor, training: bool | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        ctx, (x,) = float32_region(x)
        with ctx:
            return super().forward(x, training)


class GaussianConditional(_GaussianConditional):
    """CompressAI's Gaussian conditional, computed in float32 under autocast."""

    def forward(
        self,
        inputs: torch.Tensor,
        scales: torch.Tensor,
        means: torch.Tensor | None = None,
        training: bool | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        ctx, (inputs, scales, means) = float32_region(inputs, scales, means)
        with ctx:
            return super().forward(inputs, scales, means, training)

    def _likelihood(
        self,
        inputs: torch.Tensor,
        scales: torch.Tensor,
        means: torch.Tensor | None = None,
    ) -> torch.Tensor:
        ctx, (inputs, scales, means) = float32_region(inputs, scales, means)
        with ctx:
            return super()._likelihood(inputs, scales, means)

    def quantize(
        self, inputs: torch.Tensor, mode: str, means: torch.Tensor | None = None
    ) -> torch.Tensor:
        # bf16 holds integers exactly only up to 256: rounding must see float32.
        ctx, (inputs, means) = float32_region(inputs, means)
        with ctx:
            return super().quantize(inputs, mode, means)


def get_scale_table(
    min_scale: float = 0.11, max_scale: float = 256.0, levels: int = 160
) -> torch.Tensor:
    """Log-spaced scale table for :class:`GaussianConditional` (CompressAI's)."""
    return torch.exp(torch.linspace(math.log(min_scale), math.log(max_scale), levels))


def ste_round(x: torch.Tensor) -> torch.Tensor:
    """Round with a straight-through gradient."""
    return (torch.round(x) - x).detach() + x


_HASH_COEFFS: torch.Tensor | None = None


def _hash_coeffs(n: int) -> torch.Tensor:
    """Fixed odd 64-bit multipliers for row hashing (same in every process)."""
    global _HASH_COEFFS
    if _HASH_COEFFS is None or _HASH_COEFFS.numel() < n:
        g = torch.Generator().manual_seed(0x5EED)
        size = max(n, 1024)
        c = torch.randint(-(2**62), 2**62, (size,), generator=g, dtype=torch.long)
        _HASH_COEFFS = c | 1
    return _HASH_COEFFS[:n]


def _std_cdf(x: torch.Tensor) -> torch.Tensor:
    # erfc keeps precision in the far tails, where 1 - erf would cancel.
    return 0.5 * torch.erfc(-x * (2**-0.5))


class GaussianMixtureConditional(nn.Module):
    """Conditional entropy model: a mixture of K Gaussians per latent element.

    Used by EDIC (Liu et al., "A Unified End-to-End Framework for Efficient Deep
    Image Compression") and by Cheng et al. (CVPR 2020). The quantised latent is
    ``round(y)``; its probability mass is ``sum_k w_k * [Phi((v + 1/2 - mu_k) /
    s_k) - Phi((v - 1/2 - mu_k) / s_k)]``.

    Parameters are given as tensors of shape ``B x K x C x H x W``: ``scales`` and
    ``means`` per component, ``weight_logits`` unnormalised (softmax over K is
    taken here). With K=1 this is exactly a Gaussian conditional with means.

    Args:
        num_components: K.
        scale_bound: lower bound on the scales.
        likelihood_bound: lower bound on likelihoods in training (avoids log 0).
        tail_sigmas: the coded support of an element covers every component's
            mean +- ``tail_sigmas`` scales; values outside it are escape-coded by
            the rANS coder (exact, just more bits).
        max_support: cap on the symbols per element, for memory.
    """

    def __init__(
        self,
        num_components: int = 3,
        scale_bound: float = 0.11,
        likelihood_bound: float = 1e-9,
        tail_sigmas: float = 6.0,
        max_support: int = 512,
    ) -> None:
        super().__init__()
        if num_components < 1:
            raise ValueError("num_components must be >= 1")
        self.K = int(num_components)
        self.lower_bound_scale = LowerBound(scale_bound)
        self.likelihood_bound = float(likelihood_bound)
        self.tail_sigmas = float(tail_sigmas)
        self.max_support = int(max_support)

    # -- training -----------------------------------------------------------
    def _check(self, y: torch.Tensor, *params: torch.Tensor) -> None:
        want = (y.shape[0], self.K, *y.shape[1:])
        for p in params:
            if tuple(p.shape) != want:
                raise ValueError(
                    f"mixture parameters must have shape {want}, got {tuple(p.shape)}"
                )

    def likelihood(
        self,
        y_hat: torch.Tensor,
        scales: torch.Tensor,
        means: torch.Tensor,
        weight_logits: torch.Tensor,
    ) -> torch.Tensor:
        """Probability mass of the integer-valued (or noisy) ``y_hat``."""
        self._check(y_hat, scales, means, weight_logits)
        ctx, (y_hat, scales, means, weight_logits) = float32_region(
            y_hat, scales, means, weight_logits
        )
        with ctx:
            w = F.softmax(weight_logits, dim=1)
            s = self.lower_bound_scale(scales)
            v = y_hat.unsqueeze(1) - means
            # Symmetric form (|v|) as CompressAI's GaussianConditional: stable tails.
            v = v.abs()
            p = _std_cdf((0.5 - v) / s) - _std_cdf((-0.5 - v) / s)
            return (w * p).sum(dim=1)

    def forward(
        self,
        y: torch.Tensor,
        scales: torch.Tensor,
        means: torch.Tensor,
        weight_logits: torch.Tensor,
        training: bool | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Quantise ``y`` (noise in training, rounding otherwise).

        Returns:
            ``(y_hat, likelihoods)``, both shaped like ``y``.
        """
        if training is None:
            training = self.training
        y = y.float()
        if training:
            y_hat = y + torch.empty_like(y).uniform_(-0.5, 0.5)
        else:
            y_hat = torch.round(y)
        lik = self.likelihood(y_hat, scales, means, weight_logits)
        return y_hat, lik.clamp_min(self.likelihood_bound)

    # -- coding -------------------------------------------------------------
    @torch.no_grad()
    def _tables(
        self, scales: torch.Tensor, means: torch.Tensor, weight_logits: torch.Tensor
    ) -> tuple[torch.Tensor, list[list[int]], list[int], list[int]]:
        """Quantised CDFs of one batch element's N latent elements.

        Computed on the CPU from the same parameters on both sides, under the
        caller's fixed thread count (see :func:`dvc_common.fixed_threads`).

        Returns:
            ``(indexes[N], cdfs, cdf_lengths, offsets)`` for the rANS coder, with
            identical CDFs shared between elements.
        """
        K = self.K
        s = self.lower_bound_scale(scales).reshape(K, -1).float().cpu()
        m = means.reshape(K, -1).float().cpu()
        w = F.softmax(weight_logits.reshape(K, -1).float().cpu(), dim=0)
        n = s.shape[1]
        lo = torch.floor((m - self.tail_sigmas * s).min(dim=0).values)
        hi = torch.ceil((m + self.tail_sigmas * s).max(dim=0).values)
        # Cap the support around the weighted mean; the rest is escape-coded.
        centre = torch.round((w * m).sum(dim=0))
        half = self.max_support // 2
        lo = torch.maximum(lo, centre - half)
        hi = torch.minimum(hi, centre + half)
        length = (hi - lo + 1).long()  # symbols per element, >= 1
        lo = lo.long()

        width = int(length.max()) + 2  # CDF entries incl. the escape symbol
        rows: list[torch.Tensor] = []
        keys: list[torch.Tensor] = []
        # Blocks of elements bound the (components x elements x support) temporary.
        block = max(1, (1 << 21) // width)
        ar = torch.arange(width)
        for a in range(0, n, block):
            b = min(n, a + block)
            L = int(length[a:b].max())
            # Bin edges v - 1/2 for v = lo .. lo + L; one CDF call per edge.
            edges = (lo[a:b, None] + ar[None, : L + 1]).to(s.dtype) - 0.5
            c = _std_cdf((edges[None] - m[:, a:b, None]) / s[:, a:b, None])
            pmf = (w[:, a:b, None] * (c[..., 1:] - c[..., :-1])).sum(dim=0)
            pmf = pmf * (ar[None, :L] < length[a:b, None])
            tail = (1.0 - pmf.sum(dim=1, keepdim=True)).clamp_min(0.0)
            # The overflow (escape) symbol sits right after the last valid one.
            pmf = torch.cat([pmf, torch.zeros_like(tail)], dim=1)
            pmf.scatter_(1, length[a:b, None], tail)
            nsym = length[a:b] + 1  # including the escape symbol
            # Every symbol gets at least one count so any value stays codable.
            budget = ((1 << PRECISION) - nsym).to(pmf.dtype)
            freq = torch.floor(pmf * budget[:, None]).long() + 1
            freq = freq * (ar[None, : L + 1] < nsym[:, None])
            short = (1 << PRECISION) - freq.sum(dim=1)
            freq.scatter_add_(1, pmf.argmax(dim=1, keepdim=True), short[:, None])
            cdf = F.pad(freq.cumsum(dim=1), (1, width - L - 2), value=0)
            rows.append(cdf.int())
            keys.append(torch.stack([length[a:b], lo[a:b]], dim=1).int())
        table = torch.cat([torch.cat(keys), torch.cat(rows)], dim=1)
        # Deduplicate by a 64-bit hash of each row (sorting whole rows costs
        # more than building them). Both sides compute the same hashes, so even
        # a collision only makes two elements share one CDF, identically in the
        # encoder and the decoder: never a decoding error.
        h = (table.long() * _hash_coeffs(table.shape[1])[None]).sum(dim=1)
        uh, inverse = torch.unique(h, return_inverse=True)
        first = torch.full((uh.numel(),), n, dtype=torch.long)
        first.scatter_reduce_(0, inverse, torch.arange(n), reduce="amin")
        rep = table[first]
        # Group the representatives by length so each group crosses into
        # Python trimmed, with one tolist() per distinct length.
        order = torch.argsort(rep[:, 0], stable=True)
        rep = rep[order]
        slot = torch.empty_like(order)
        slot[order] = torch.arange(order.numel())
        inverse = slot[inverse]
        lengths = (rep[:, 0] + 2).tolist()
        offsets = rep[:, 1].tolist()
        cdfs: list[list[int]] = []
        group_len, counts = torch.unique_consecutive(rep[:, 0], return_counts=True)
        start = 0
        for ln, cnt in zip(group_len.tolist(), counts.tolist()):
            cdfs.extend(rep[start : start + cnt, 2 : ln + 4].tolist())
            start += cnt
        return inverse.int(), cdfs, lengths, offsets

    def compress(
        self,
        y: torch.Tensor,
        scales: torch.Tensor,
        means: torch.Tensor,
        weight_logits: torch.Tensor,
    ) -> list[bytes]:
        """Entropy-code ``round(y)``; one string per batch element."""
        self._check(y, scales, means, weight_logits)
        symbols = torch.round(y).long().reshape(y.shape[0], -1).cpu()
        strings = []
        for i in range(y.shape[0]):
            idx, cdfs, lengths, offsets = self._tables(
                scales[i], means[i], weight_logits[i]
            )
            enc = RansEncoder()
            strings.append(
                enc.encode_with_indexes(
                    symbols[i].int().tolist(), idx.tolist(), cdfs, lengths, offsets
                )
            )
        return strings

    def decompress(
        self,
        strings: list[bytes],
        scales: torch.Tensor,
        means: torch.Tensor,
        weight_logits: torch.Tensor,
    ) -> torch.Tensor:
        """Decode the strings of :meth:`compress` given the same parameters.

        Returns:
            ``y_hat`` of shape ``B x C x H x W`` (``scales.shape`` without K).
        """
        if len(strings) != scales.shape[0]:
            raise BitstreamError(
                f"{len(strings)} mixture strings for a batch of {scales.shape[0]}"
            )
        shape = (scales.shape[0], *scales.shape[2:])
        out = torch.empty(shape, dtype=torch.float32)
        dec = RansDecoder()
        for i, string in enumerate(strings):
            idx, cdfs, lengths, offsets = self._tables(
                scales[i], means[i], weight_logits[i]
            )
            values = dec.decode_with_indexes(
                string, idx.tolist(), cdfs, lengths, offsets
            )
            out[i] = torch.tensor(values, dtype=torch.float32).reshape(shape[1:])
        return out.to(scales.device)
