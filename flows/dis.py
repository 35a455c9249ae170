"""OpenCV's DIS optical flow as a (non-differentiable, encoder-side) estimator."""

from __future__ import annotations

import cv2
import numpy as np
import torch

from .base import FlowEstimator, register_flow

#: name -> (OpenCV preset, setter overrides). ``fine`` is ``medium`` refined
#: down to full resolution: ``medium`` stops at half resolution, which on
#: flat content left whole images 0.6 px off a pure translation
#: (flows/translation_set.py); at full resolution the error is ~0.001 px, for
#: 4x the time (3.5x at 1080p).
PRESETS = {
    "ultrafast": (cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST, {}),
    "fast": (cv2.DISOPTICAL_FLOW_PRESET_FAST, {}),
    "medium": (cv2.DISOPTICAL_FLOW_PRESET_MEDIUM, {}),
    "fine": (cv2.DISOPTICAL_FLOW_PRESET_MEDIUM, {"FinestScale": 0}),
}


@register_flow("dis")
class DISFlow(FlowEstimator):
    """Dense Inverse Search flow (OpenCV).

    T. Kroeger, R. Timofte, D. Dai, L. Van Gool, "Fast Optical Flow using Dense
    Inverse Search", ECCV 2016. Computed on grey 8-bit frames, one pair at a
    time on the CPU. It has no gradient, so it serves encoders only (the decoder
    never runs a flow); a model trained with a learned flow can encode with it.

    Args:
        preset: ``ultrafast``, ``fast``, ``medium`` or ``fine``.
    """

    differentiable = False

    def __init__(self, preset: str = "fine") -> None:
        super().__init__()
        if preset not in PRESETS:
            raise ValueError(
                f"unknown DIS preset {preset!r}; choices: {sorted(PRESETS)}"
            )
        self.preset = preset

    @staticmethod
    def _grey(x: torch.Tensor) -> np.ndarray:
        rgb = (x.detach().float().clamp(0, 1) * 255 + 0.5).to(torch.uint8)
        rgb = rgb.permute(1, 2, 0).cpu().numpy()
        return cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)

    @torch.no_grad()
    def _estimate(self, cur: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        preset, overrides = PRESETS[self.preset]
        dis = cv2.DISOpticalFlow_create(preset)
        for key, value in overrides.items():
            getattr(dis, "set" + key)(value)
        out = []
        for c, r in zip(cur, ref):
            # calc(I0, I1) gives f with I0(p) ~ I1(p + f(p)): I0 = cur, I1 = ref
            # is exactly our backward flow (cur sampled from ref).
            f = dis.calc(self._grey(c), self._grey(r), None)
            out.append(torch.from_numpy(f).permute(2, 0, 1))
        return torch.stack(out).to(device=cur.device, dtype=cur.dtype)
