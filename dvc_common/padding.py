"""Pad image tensors to a multiple of a stride and crop them back."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def pad_amounts(h: int, w: int, multiple: int) -> tuple[int, int, int, int]:
    """(left, right, top, bottom) padding that brings h x w to a multiple.

    The padding is split between both sides, as CompressAI's examples do, so the
    image content stays centred in the receptive fields.
    """
    if multiple < 1:
        raise ValueError(f"multiple must be >= 1, got {multiple}")
    new_h = (h + multiple - 1) // multiple * multiple
    new_w = (w + multiple - 1) // multiple * multiple
    left = (new_w - w) // 2
    top = (new_h - h) // 2
    return left, new_w - w - left, top, new_h - h - top


def pad_to_multiple(
    x: torch.Tensor, multiple: int, mode: str = "replicate"
) -> tuple[torch.Tensor, tuple[int, int, int, int]]:
    """Pad a ``B x C x H x W`` tensor so H and W are multiples of ``multiple``.

    Replicate padding by default: zero borders cost bits in a residual codec.

    Returns:
        The padded tensor and the ``(left, right, top, bottom)`` amounts that
        :func:`unpad` takes.
    """
    pads = pad_amounts(x.shape[-2], x.shape[-1], multiple)
    if not any(pads):
        return x, pads
    if mode == "replicate" and (x.shape[-2] < 2 or x.shape[-1] < 2):
        mode = "constant"
    return F.pad(x, pads, mode=mode), pads


def unpad(x: torch.Tensor, pads: tuple[int, int, int, int]) -> torch.Tensor:
    """Crop the padding added by :func:`pad_to_multiple`."""
    left, right, top, bottom = pads
    h, w = x.shape[-2], x.shape[-1]
    return x[..., top : h - bottom, left : w - right]
