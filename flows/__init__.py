"""Optical flow for the P-frame codec: estimators, warping, correlation.

Convention, used everywhere in the project: ``flow = estimator(cur, ref)`` is a
backward flow in pixels (channel 0 = x, channel 1 = y) such that
``backward_warp(ref, flow) ~= cur``. Estimators are discovered and registered
on the first registry look-up (:func:`build_flow`, :func:`list_flows`).
"""

from .base import FlowEstimator, build_flow, default_weights, list_flows, register_flow
from .warp import backward_warp

__all__ = [
    "FlowEstimator",
    "backward_warp",
    "build_flow",
    "default_weights",
    "list_flows",
    "register_flow",
]
