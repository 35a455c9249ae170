"""Teacher forcing for the pyramid flows (training only)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def guided_flow(guide: torch.Tensor, stride: int, jitter: float) -> torch.Tensor:
    """A ground-truth flow brought to one pyramid level, randomly perturbed.

    Args:
        guide: ``B x 2 x H x W`` flow in full-resolution pixels.
        stride: the level's stride ``s`` (H and W are multiples of it).
        jitter: largest offset added, in level pixels: a per-sample constant
            plus a smooth random field, so the level learns to correct
            residuals of that size.

    Returns:
        ``B x 2 x H/s x W/s`` flow in level pixels (no gradient).
    """
    flow = guide.detach()
    if stride > 1:
        flow = F.avg_pool2d(flow, stride) / stride
    if jitter > 0:
        b, _, h, w = flow.shape
        const = (torch.rand(b, 2, 1, 1, device=flow.device) * 2 - 1) * jitter
        coarse = torch.randn(b, 2, 3, 3, device=flow.device) * (0.3 * jitter)
        field = F.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)
        flow = flow + (const + field).to(flow.dtype)
    return flow
