"""The models being trained, and the per-step objective of each stage.

:class:`PFrameStep` and :class:`ImageStep` wrap the model and compute the loss
inside ``forward``: that is the module :class:`DistributedDataParallel` wraps,
so its gradient hooks see the whole step.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn as nn
from compressai.models import CompressionModel

from dvc_common import InputError, ModelMismatchError, fixed_threads
from image_codecs import codec_class

from ..checkpoint import is_constant, is_derived
from ..losses import bpp, distortion, ms_ssim, mse

#: Keys the image codecs get from their context, not from a spec.
_CONTEXT_KEYS = ("in_channels", "num_qualities")


# -- configs -----------------------------------------------------------------------
def _spec(spec: Mapping[str, Any], tiny: bool) -> dict[str, Any]:
    spec = dict(spec)
    if "name" not in spec:
        raise InputError(f"a codec spec needs a name: {spec}")
    for k in _CONTEXT_KEYS:
        spec.pop(k, None)
    if tiny:
        return {"name": spec["name"], **codec_class(spec["name"]).tiny_config}
    return spec


def video_config(codec: Mapping[str, Any], tiny: bool = False) -> dict[str, Any]:
    """``VideoCodec`` keyword arguments from the ``codec`` config group.

    With ``tiny`` every codec takes its class's ``tiny_config`` sizes and the
    MC net 8 channels (smoke tests).
    """
    codec = copy.deepcopy(dict(codec))
    pf = dict(codec.get("pframe") or {})
    for k in ("motion_codec", "residual_codec"):
        if k not in pf:
            raise InputError(f"codec.pframe.{k} is not set")
        pf[k] = _spec(pf[k], tiny)
    if tiny:
        pf["mc_channels"] = 8
    if pf.get("flow") is not None:
        pf["flow"] = dict(pf["flow"])
    if "intra_codec" not in codec:
        raise InputError("codec.intra_codec is not set")
    return {
        "intra_codec": _spec(codec["intra_codec"], tiny),
        "pframe": pf,
        "num_qualities": int(codec.get("num_qualities", 1)),
    }


def image_config(
    spec: Mapping[str, Any], num_qualities: int, tiny: bool = False
) -> dict:
    """``build_codec`` keyword arguments of an RGB image codec."""
    return {**_spec(spec, tiny), "in_channels": 3, "num_qualities": int(num_qualities)}


def build_video(config: Mapping[str, Any]) -> nn.Module:
    from ..video_codec import (
        VideoCodec,
    )  # imports flows: only when a video model is built

    return VideoCodec(**copy.deepcopy(dict(config)))


def saved_video_config(model: nn.Module) -> dict[str, Any]:
    """The config stored in a video checkpoint.

    A learned flow's trained weights are in the state dict, so the stored flow
    spec asks for no pre-trained weights (``weights: None``): the checkpoint
    then rebuilds on a machine without the original weight file.
    """
    config = copy.deepcopy(model.config)
    flow = config["pframe"].get("flow")
    pf_flow = getattr(model.pframe, "flow", None)
    if (
        flow is not None
        and isinstance(pf_flow, nn.Module)
        and any(True for _ in pf_flow.parameters())
    ):
        flow["weights"] = None
    return config


def saved_image_config(codec: nn.Module) -> dict[str, Any]:
    return {"name": codec.registry_name, **codec.build_kwargs}


#: Video-model parts an RGB image checkpoint can stand in for, and their prefix
#: in the video model's state dict.
SWAPPABLE = {"intra": "intra.", "residual": "pframe.residual_codec."}


def with_image_codec(
    config: Mapping[str, Any],
    state: Mapping[str, torch.Tensor] | None,
    part: str,
    image: Mapping[str, Any],
) -> tuple[dict[str, Any], dict[str, torch.Tensor] | None]:
    """A video model's config and weights with one codec taken from an image model.

    Args:
        config: the video model's config.
        state: its state dict, or None (config only).
        part: ``"intra"`` or ``"residual"``.
        image: a loaded ``"image"`` checkpoint (config and state dict).

    Raises:
        InputError: an unknown ``part``.
        ModelMismatchError: the image model is not RGB or has another number
            of rate points than the video model.
    """
    if part not in SWAPPABLE:
        raise InputError(f"can replace {sorted(SWAPPABLE)}, not {part!r}")
    ic = dict(image["config"])
    if int(ic.get("num_qualities", 1)) != int(config["num_qualities"]):
        raise ModelMismatchError(
            f"the {part} codec's image model has {ic.get('num_qualities', 1)} rate "
            f"points, the video model {config['num_qualities']}"
        )
    if int(ic.get("in_channels", 3)) != 3:
        raise ModelMismatchError(f"the {part} codec's image model is not RGB")
    spec = {k: v for k, v in ic.items() if k not in _CONTEXT_KEYS}
    config = copy.deepcopy(dict(config))
    if part == "intra":
        config["intra_codec"] = spec
    else:
        config["pframe"] = {**config["pframe"], "residual_codec": spec}
    if state is None:
        return config, None
    prefix = SWAPPABLE[part]
    new_state = {k: v for k, v in state.items() if not k.startswith(prefix)}
    new_state.update({prefix + k: v for k, v in image["state_dict"].items()})
    return config, new_state


def image_codec_of(
    config: Mapping[str, Any], state: Mapping[str, torch.Tensor], part: str
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The image-model config and weights of one codec of a video model.

    The inverse of :func:`with_image_codec`: a video model's intra codec, taken
    out as an ``"image"`` checkpoint, can be trained further as an image codec
    (``experiment=image init.image=...``) and put back with ``export intra=``.

    Raises:
        InputError: an unknown ``part``.
    """
    if part not in SWAPPABLE:
        raise InputError(f"can take out {sorted(SWAPPABLE)}, not {part!r}")
    spec = (
        config["intra_codec"] if part == "intra" else config["pframe"]["residual_codec"]
    )
    prefix = SWAPPABLE[part]
    image_state = {
        k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)
    }
    return image_config(spec, int(config["num_qualities"])), image_state


def load_weights(model: nn.Module, state_dict: Mapping[str, torch.Tensor]) -> None:
    """Load a state dict, resizing the entropy coders' CDF buffers first.

    CompressAI's ``load_state_dict`` does the resizing for every entropy model
    below the module it is called on; called through a plain ``nn.Module``
    (a ``VideoCodec``) it would not run, so it is applied to the whole tree.

    Raises:
        ModelMismatchError: keys or shapes do not match the model.
    """
    # Checkpoints leave out the coders' CDF tables (update() rebuilds them from
    # the weights), so they are dropped here and rebuilt after loading. The
    # constructor's constants are kept too: an early float16 export stored the
    # likelihood floor as 0 (docs/training.md), and training from it would
    # inherit an unbounded rate.
    state = {
        k: v for k, v in state_dict.items() if not (is_derived(k) or is_constant(k))
    }
    try:
        missing, unexpected = nn.Module.load_state_dict(model, state, strict=False)
    except RuntimeError as e:
        raise ModelMismatchError(f"checkpoint does not fit the model: {e}") from None
    missing = [k for k in missing if not (is_derived(k) or is_constant(k))]
    if missing or unexpected:
        raise ModelMismatchError(
            f"checkpoint does not fit the model: missing {missing[:4]}, "
            f"unexpected {unexpected[:4]}"
        )
    with fixed_threads(1):
        for m in model.modules():
            if isinstance(m, CompressionModel):
                m.update(force=True)


def export_weights(model: nn.Module) -> dict[str, torch.Tensor]:
    """State dict with up-to-date entropy-coder tables (``update(force=True)``).

    ``update`` only rewrites the coders' CDF buffers, which the training
    forward does not read, so calling it on the live model leaves training
    unchanged.
    """
    for m in model.modules():
        if isinstance(m, CompressionModel):
            m.update(force=True)
    # contiguous: a model trained in channels_last stores the usual layout.
    return {
        k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()
    }


def trainable_flow(model: nn.Module) -> bool:
    flow = getattr(model.pframe, "flow", None)
    return isinstance(flow, nn.Module) and any(True for _ in flow.parameters())


def video_modules(model: nn.Module) -> dict[str, nn.Module | None]:
    pf = model.pframe
    flow = pf.flow if isinstance(getattr(pf, "flow", None), nn.Module) else None
    return {
        "flow": flow,
        "motion_codec": pf.motion_codec,
        "mc_net": pf.mc_net,
        "residual_codec": pf.residual_codec,
        "intra": model.intra,
    }


# -- the per-step objectives --------------------------------------------------------
class PFrameStep(nn.Module):
    """One training step of the P-frame model (and optionally its intra codec).

    ``frames`` ``B x N x 3 x H x W`` in [0, 1] (frame 0 the reference; ``N > 2``:
    a chain, frame ``t`` coded on the reconstruction of frame ``t - 1`` and
    the loss the mean over the ``N - 1`` P-frames). The stage
    (:meth:`configure`) decides what runs and what the loss is:

    .. code-block:: none

        ref ──► intra (if train_intra or ref=intra) ──► ref_p = x_hat_I (no grad)
        flow(cur, ref_p) ─► motion codec ─► v_hat ─► warp + MC ─► x_pred
        motion:  L = lambda * D(x_warp | x_pred) + R_motion
        else:    x_hat = x_pred + residual_codec(cur - x_pred)
                 L = lambda * D(x_hat, cur) + R_motion + R_residual
                     [+ pred_weight * lambda * D(x_pred, cur)]
        train_intra: L = (L + lambda * D(x_hat_I, ref) + R_intra) / 2

    This mirrors :meth:`dvc_ext.pframe.PFrameCodec.forward` step by step (same
    sub-modules, same order) so a stage can skip the parts it does not train.
    """

    def __init__(self, video: nn.Module, metric: str = "mse",
                 motion_targets: tuple[str, ...] = ("warp", "pred"),
                 pred_weight: float = 0.0) -> None:  # fmt: skip
        super().__init__()
        self.video = video
        self.metric = metric
        if not pred_weight >= 0.0:
            raise InputError(f"loss.pred_weight must be >= 0, got {pred_weight}")
        self.pred_weight = float(pred_weight)
        bad = [t for t in motion_targets if t not in ("warp", "pred")]
        if bad or not motion_targets:
            raise InputError(
                f"loss.motion_targets must be a subset of [warp, pred], got {motion_targets}"
            )
        self.motion_targets = tuple(motion_targets)
        self.stage, self.ref_mode = "joint", "raw"
        self.train_intra = self.train_flow = False
        #: Layout of the frames given to the model (the trainer sets
        #: ``torch.channels_last`` when it converted the model to it).
        self.memory_format = torch.contiguous_format

    def configure(
        self, stage: str, ref_mode: str, train_intra: bool, train_flow: bool
    ) -> None:
        self.stage, self.ref_mode = stage, ref_mode
        self.train_intra, self.train_flow = train_intra, train_flow

    def forward(self, frames: torch.Tensor, quality: torch.Tensor | None,
                lam: torch.Tensor) -> dict[str, torch.Tensor]:  # fmt: skip
        mf = self.memory_format
        n = frames.shape[1]
        if n < 2:
            raise InputError(f"a P-frame step needs >= 2 frames per sample, got {n}")
        ref = frames[:, 0].contiguous(memory_format=mf)
        hw = ref.shape[-2] * ref.shape[-1]
        m: dict[str, torch.Tensor] = {}
        loss_i = None
        if self.train_intra or self.ref_mode == "intra":
            intra = self.video.intra
            if self.train_intra:
                i = intra(ref, quality=quality)
            else:  # a frozen intra codes the reference as the decoder would
                was = intra.training
                intra.eval()
                with torch.no_grad():
                    i = intra(ref, quality=quality)
                intra.train(was)
            m["bpp_intra"] = bpp(i["likelihoods"], hw)
            m["mse_intra"] = mse(i["x_hat"].clamp(0, 1), ref)
            if self.train_intra:
                loss_i = lam * distortion(i["x_hat"], ref, self.metric) + m["bpp_intra"]
            if self.ref_mode == "intra":
                ref = i["x_hat"].detach().clamp(0.0, 1.0)
        # A chain (n > 2) codes frame t on the reconstruction of frame t - 1, as
        # the decoder does inside a GOP, and the gradient runs through the
        # chain: a frame's reconstruction is trained for the frames it
        # predicts (cascaded training, as DCVC-HEM/DCVC-DC fine-tune). The
        # motion stage has no reconstruction: its P-frames use the raw frames.
        steps = []
        for t in range(1, n):
            cur = frames[:, t].contiguous(memory_format=mf)
            if t > 1 and self.stage == "motion":
                ref = frames[:, t - 1].contiguous(memory_format=mf)
            out, x_hat = self._code(ref, cur, quality, lam, hw)
            steps.append(out)
            if x_hat is not None:
                ref = x_hat.clamp(0.0, 1.0)
        for k in steps[0]:
            m[k] = sum(o[k] for o in steps) / len(steps)
        loss = m.pop("objective")
        if loss_i is not None:
            m["loss"] = (m["loss"] + loss_i) / 2
            loss = (loss + loss_i) / 2
        return {
            "loss": loss.mean(),
            "per_sample": {k: v.detach() for k, v in m.items()},
        }

    def _code(self, ref: torch.Tensor, cur: torch.Tensor,
              quality: torch.Tensor | None, lam: torch.Tensor,
              hw: int) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:  # fmt: skip
        """One P-frame's metrics (``objective``: what is minimised) and
        reconstruction (None in the motion stage)."""
        m: dict[str, torch.Tensor] = {}
        pf = self.video.pframe
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.train_flow):
            v = pf.estimate_flow(cur, ref)
        mo = pf.motion_codec(v, quality=quality)
        x_pred, x_warp = pf._predict(ref, mo["x_hat"])
        m["bpp_motion"] = bpp(mo["likelihoods"], hw)
        m["mse_warp"] = mse(x_warp, cur)
        m["mse_pred"] = mse(x_pred.clamp(0, 1), cur)
        x_hat = None
        if self.stage == "motion":
            preds = {"warp": x_warp, "pred": x_pred}
            d = sum(distortion(preds[t], cur, self.metric) for t in self.motion_targets)
            d = d / len(self.motion_targets)
            m["bpp"] = m["bpp_motion"]
            m["mse"] = m["mse_pred"]
        else:
            r = pf.residual_codec(cur - x_pred, quality=quality)
            x_hat = x_pred + r["x_hat"]
            d = distortion(x_hat, cur, self.metric)
            m["bpp_residual"] = bpp(r["likelihoods"], hw)
            m["bpp"] = m["bpp_motion"] + m["bpp_residual"]
            m["mse"] = mse(x_hat.clamp(0, 1), cur)
        if self.metric == "ms-ssim":
            m["ms_ssim"] = 1.0 - d.detach()
        elif not self.training and x_hat is not None:
            m["ms_ssim"] = ms_ssim(x_hat.detach().clamp(0, 1), cur)
        m["loss"] = lam * d + m["bpp"]
        m["objective"] = m["loss"]
        if self.pred_weight and x_hat is not None:
            # x_hat = x_pred + codec(cur - x_pred): the distortion's gradient
            # to x_pred nearly cancels, so in the joint stage the MC net drifts
            # (its prediction fell from the warp's 27 dB to 22-23 dB while the
            # residual's bits did not drop). A small pull keeps it a prediction.
            # Logged "loss" stays DVC's objective, comparable across runs.
            m["objective"] = m["loss"] + self.pred_weight * lam * distortion(
                x_pred, cur, self.metric
            )
        return m, x_hat


class ImageStep(nn.Module):
    """One training step of an image codec: ``lambda * D + R``.

    ``frames`` ``B x 1 x 3 x H x W`` in [0, 1].
    """

    def __init__(self, codec: nn.Module, metric: str = "mse") -> None:
        super().__init__()
        self.codec = codec
        self.metric = metric
        self.memory_format = torch.contiguous_format

    def forward(self, frames: torch.Tensor, quality: torch.Tensor | None,
                lam: torch.Tensor) -> dict[str, torch.Tensor]:  # fmt: skip
        x = frames[:, 0].contiguous(memory_format=self.memory_format)
        out = self.codec(x, quality=quality)
        rate = bpp(out["likelihoods"], x.shape[-2] * x.shape[-1])
        d = distortion(out["x_hat"], x, self.metric)
        loss = lam * d + rate
        m = {"loss": loss, "bpp": rate, "mse": mse(out["x_hat"].clamp(0, 1), x)}
        if self.metric == "ms-ssim":
            m["ms_ssim"] = 1.0 - d.detach()
        elif not self.training:
            m["ms_ssim"] = ms_ssim(out["x_hat"].detach().clamp(0, 1), x)
        return {
            "loss": loss.mean(),
            "per_sample": {k: v.detach() for k, v in m.items()},
        }
