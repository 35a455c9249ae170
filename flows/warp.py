"""Backward warping with a dense flow."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def backward_warp(x: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Sample ``x`` at ``p + flow(p)`` for every pixel ``p`` (bilinear).

    Args:
        x: ``B x C x H x W`` (any float dtype, any device).
        flow: ``B x 2 x H x W`` in pixels; channel 0 is x (horizontal), 1 is y.

    Returns:
        ``B x C x H x W``; samples outside the frame take the border value.

    The sampling grid is built on every call from the flow's own device and
    dtype, so there is no cached global grid to go stale.
    """
    if flow.ndim != 4 or flow.shape[1] != 2 or flow.shape[-2:] != x.shape[-2:]:
        raise ValueError(
            f"flow must be B x 2 x {x.shape[-2]} x {x.shape[-1]}, got {tuple(flow.shape)}"
        )
    B, _, H, W = flow.shape
    ys = torch.arange(H, device=flow.device, dtype=flow.dtype)
    xs = torch.arange(W, device=flow.device, dtype=flow.dtype)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    px = gx + flow[:, 0]
    py = gy + flow[:, 1]
    # align_corners=True: -1 and +1 are the centres of the corner pixels.
    nx = 2.0 * px / max(W - 1, 1) - 1.0
    ny = 2.0 * py / max(H - 1, 1) - 1.0
    grid = torch.stack([nx, ny], dim=-1)
    return F.grid_sample(
        x, grid.to(x.dtype), mode="bilinear", padding_mode="border", align_corners=True
    )
