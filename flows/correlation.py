"""Correlation (cost volume) between two feature maps.

One function, one signature: :func:`correlation`. By default it runs in pure
PyTorch (any device, any float dtype, autograd); where the optional extension
``spatial_correlation_sampler`` (the ``cuda`` extra) imports, it is used for
CUDA tensors, giving the same numbers faster.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

try:  # optional compiled kernel (pip install dvc-ext[cuda])
    from spatial_correlation_sampler import spatial_correlation_sample as _ext_sample
except Exception:  # noqa: BLE001 - any failure to import means "not available"
    _ext_sample = None

BACKENDS = ("auto", "torch", "extension")


def extension_available() -> bool:
    """True when ``spatial_correlation_sampler`` imported."""
    return _ext_sample is not None


def _torch_correlation(f1: torch.Tensor, f2: torch.Tensor, d: int) -> torch.Tensor:
    b, c, h, w = f1.shape
    f2p = F.pad(f2, (d, d, d, d))
    # A loop over the (2d+1)^2 displacements keeps memory at one output map per
    # displacement (an unfold would hold C x (2d+1)^2 x H x W at once).
    out = [
        (f1 * f2p[:, :, dy : dy + h, dx : dx + w]).mean(dim=1)
        for dy in range(2 * d + 1)
        for dx in range(2 * d + 1)
    ]
    return torch.stack(out, dim=1)


def correlation(
    f1: torch.Tensor, f2: torch.Tensor, max_displacement: int, backend: str = "auto"
) -> torch.Tensor:
    """Cost volume of ``f1`` against displaced ``f2``.

    ``out[b, (dy + d) * (2d + 1) + (dx + d), y, x] =
    mean_c f1[b, c, y, x] * f2[b, c, y + dy, x + dx]`` for ``|dx|, |dy| <= d``;
    positions outside ``f2`` count as zero.

    Args:
        f1: ``B x C x H x W`` features of the frame the flow is defined on.
        f2: ``B x C x H x W`` features of the other frame (same shape).
        max_displacement: ``d`` in feature pixels.
        backend: ``"auto"`` (extension for CUDA tensors when installed, else
            PyTorch), ``"torch"`` or ``"extension"``.

    Returns:
        ``B x (2d+1)^2 x H x W``, same dtype and device as ``f1``.
    """
    if f1.shape != f2.shape or f1.ndim != 4:
        raise ValueError(
            f"f1 and f2 must be equal B x C x H x W, got {tuple(f1.shape)} "
            f"and {tuple(f2.shape)}"
        )
    if max_displacement < 0:
        raise ValueError(f"max_displacement must be >= 0, got {max_displacement}")
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    use_ext = backend == "extension" or (
        backend == "auto" and _ext_sample is not None and f1.is_cuda
    )
    if not use_ext:
        return _torch_correlation(f1, f2, max_displacement)
    if _ext_sample is None:
        raise RuntimeError(
            "spatial_correlation_sampler is not installed (pip install dvc-ext[cuda])"
        )
    b, c, h, w = f1.shape
    p = 2 * max_displacement + 1
    out = _ext_sample(
        f1.contiguous(), f2.contiguous(), kernel_size=1, patch_size=p, stride=1
    )
    # The extension sums over channels; divide to match the mean above.
    return out.reshape(b, p * p, h, w) / c
