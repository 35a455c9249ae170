"""The flow-estimator contract and its registry (mirrors the image codecs')."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from dvc_common import InputError, Registry, pad_to_multiple, unpad

_FLOWS: Registry[type[FlowEstimator]] = Registry("flow")
_NOT_FLOWS = {"base", "warp", "correlation", "synthetic", "train"}
_discovered = False


def _discover() -> None:
    """Import every flow module of the package once, so they register."""
    global _discovered
    if _discovered:
        return
    _discovered = True
    import importlib
    import pkgutil

    package = __name__.rpartition(".")[0]
    for info in pkgutil.iter_modules(importlib.import_module(package).__path__):
        if info.name not in _NOT_FLOWS and not info.name.startswith("_"):
            importlib.import_module(f"{package}.{info.name}")


def register_flow(name: str):
    """Class decorator: ``@register_flow("spynet")``."""
    return _FLOWS.register(name)


def list_flows() -> list[str]:
    _discover()
    return _FLOWS.names()


def default_weights(name: str) -> Path:
    """Our shipped checkpoint of flow ``name`` (package data)."""
    return Path(str(resources.files("flows") / "weights" / f"{name}.pth"))


def build_flow(
    name: str,
    weights: str | Path | None = None,
    grown: dict[str, str] | None = None,
    **kwargs: Any,
) -> FlowEstimator:
    """Build the flow registered as ``name``.

    Args:
        weights: None (random init, or nothing to load for classical flows),
            ``"default"`` (our trained checkpoint shipped in the package), or the
            path of a checkpoint. Never downloaded. A checkpoint of
            :mod:`flows.train` records its architecture (``config.model``), which
            ``kwargs`` default to, so it loads without repeating them.
        grown: modules ``kwargs`` add to the checkpoint's model (see
            :func:`load_flow_weights`).
    """
    _discover()
    checkpoint = None
    if weights is not None:
        path = default_weights(name) if weights == "default" else Path(weights)
        state, config = _read_checkpoint(path)
        trained_as = config.get("flow", name)
        if trained_as != name:
            raise InputError(f"{path} holds {trained_as!r} weights, not {name!r}")
        kwargs = {**config.get("model", {}), **kwargs}
        checkpoint = path, state, config
    flow = _FLOWS.build(name, **kwargs)
    flow.registry_name = name
    if checkpoint is not None:
        _load_state(flow, *checkpoint, grown=grown)
    return flow


#: Constructor settings that a checkpoint records beside its weights.
_ARCHITECTURE_KEYS = (
    "levels", "lk_window", "iters", "fill_sigma", "fill_tau", "context"
)  # fmt: skip


def flow_architecture(flow: nn.Module) -> dict:
    """The settings of ``flow`` a checkpoint records (tuples as lists, as a
    checkpoint or a yaml file gives them back)."""
    return {
        k: list(v) if isinstance(v, tuple) else v
        for k, v in vars(flow).items()
        if k in _ARCHITECTURE_KEYS
    }


def _read_checkpoint(path: Path) -> tuple[dict, dict]:
    """``(state_dict, config)`` of a checkpoint of ``flows.train`` (or a bare
    state dict, whose config is empty)."""
    if not path.is_file():
        raise InputError(f"flow weights not found: {path}")
    blob = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(blob, dict):
        raise InputError(f"{path} is not a flow checkpoint (no state dict)")
    if "state_dict" in blob:
        return blob["state_dict"], dict(blob.get("config") or {})
    return blob, {}


def load_flow_weights(
    flow: nn.Module, path: str | Path, grown: dict[str, str] | None = None
) -> None:
    """Load a checkpoint of ``flows.train`` (or a bare state dict) into ``flow``.

    Args:
        grown: ``{architecture key: parameter-name prefix}`` of modules that
            ``flow`` adds to the checkpoint's model (PWC-Net's ``context`` net,
            ``context_net.``): those keys may differ and those parameters may be
            missing, keeping their initialisation (fine-tuning a grown model).
    """
    path = Path(path)
    _load_state(flow, path, *_read_checkpoint(path), grown=grown)


def _load_state(
    flow: nn.Module, path: Path, state: dict, config: dict, grown: dict | None = None
) -> None:
    grown = grown or {}
    # Settings without parameters (SpyNet's iters) would load silently into the
    # wrong architecture, so the recorded ones are compared first.
    have = flow_architecture(flow)
    for key, want in config.get("model", {}).items():
        if key not in grown and have.get(key) != want:
            raise InputError(
                f"{path} records {key}={want} (its weights go with it), "
                f"this model has {key}={have.get(key)}"
            )
    state = {k: v.float() for k, v in state.items()}
    if grown:
        prefixes = tuple(grown.values())
        own = flow.state_dict()
        missing = [k for k in own if k not in state]
        bad = [k for k in missing if not k.startswith(prefixes)]
        if bad:
            raise InputError(f"{path} does not fit this model: missing {bad[:5]}")
        state = {**{k: own[k] for k in missing}, **state}
    try:
        flow.load_state_dict(state)
    except RuntimeError as err:
        raise InputError(f"{path} does not fit this model: {err}") from None


class FlowEstimator(nn.Module):
    """Base class of the flow estimators.

    ``forward(cur, ref)`` takes two ``B x 3 x H x W`` RGB frames in [0, 1] of any
    size and returns the backward flow ``B x 2 x H x W`` in pixels at input
    resolution: channel 0 horizontal (x), channel 1 vertical (y), such that
    ``backward_warp(ref, flow) ~= cur`` (each pixel of the current frame says
    where it comes from in the reference).

    Subclasses implement ``_estimate`` on inputs padded to ``pad_multiple``.
    """

    #: Spatial stride of the estimator's finest output before up-sampling.
    output_stride: int = 1
    #: Inputs are padded to a multiple of this inside ``forward``.
    pad_multiple: int = 1
    #: False for classical estimators: no gradient, encoder-side only.
    differentiable: bool = True
    registry_name: str = ""

    def _estimate(self, cur: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, cur: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        if cur.shape != ref.shape or cur.ndim != 4 or cur.shape[1] != 3:
            raise ValueError(
                f"cur and ref must both be B x 3 x H x W, got {tuple(cur.shape)} "
                f"and {tuple(ref.shape)}"
            )
        cur_p, pads = pad_to_multiple(cur, self.pad_multiple)
        ref_p, _ = pad_to_multiple(ref, self.pad_multiple)
        return unpad(self._estimate(cur_p, ref_p), pads)
