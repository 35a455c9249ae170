"""The DVC P-frame codec: flow, motion coding, compensation, residual coding."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
import torch.nn as nn

from dvc_common import BitstreamError
from flows import backward_warp, build_flow
from image_codecs import build_codec
from image_codecs.base import Refinement
from image_codecs.payload import pack_compressed, unpack_compressed

from .mc_net import MotionCompensationNet

#: Prediction modes of a P-frame, as the mode byte of a ``FRAME_PM`` record
#: stores them. ``mc``: DVC's (the MC net's output); ``warp``: the warped
#: reference as it is; ``ref``: the decoded reference itself, no motion coded.
PRED_MODES = {"mc": 0, "warp": 1, "ref": 2}
PRED_MC, PRED_WARP, PRED_REF = PRED_MODES["mc"], PRED_MODES["warp"], PRED_MODES["ref"]


def pred_mode_ids(names: Iterable[str]) -> tuple[int, ...]:
    """Mode names (repeats dropped, order kept) -> their :data:`PRED_MODES` ids.

    Raises:
        ValueError: an empty list or an unknown name.
    """
    names = list(dict.fromkeys(names))
    if not names or any(m not in PRED_MODES for m in names):
        raise ValueError(
            f"prediction modes must be among {list(PRED_MODES)}, got {names}"
        )
    return tuple(PRED_MODES[m] for m in names)


class PFrameCodec(nn.Module):
    """One P-frame of DVC, with any registered image codecs plugged in.

    G. Lu, W. Ouyang, D. Xu, X. Zhang, C. Cai, Z. Gao, "DVC: An End-to-end Deep
    Video Compression Framework", CVPR 2019.

    .. code-block:: none

        x_t, x_ref ──► flow (encoder only) ──► v ──► motion codec ──► v_hat
                                                                        │
        x_ref ──► backward_warp(x_ref, v_hat) ──► MC net(x_ref, ., v_hat) ──► x_pred
        x_t - x_pred ──► residual codec ──► r_hat
        x_hat = clamp(x_pred + r_hat, 0, 1)  ──► the next reference

    The prediction and reconstruction steps (:meth:`_predict`,
    :meth:`_reconstruct`) are the same code in training, encoding (closed loop:
    from decoded values) and decoding. The reference is passed in and the
    reconstruction returned: no frame buffer hides in the module. A codec built
    with ``flow=None`` (what the decoder builds) has no flow network at all.

    Args:
        motion_codec: ``{"name": ..., **kwargs}`` of a registered image codec
            (built with ``in_channels=2``).
        residual_codec: the same for the residual (``in_channels=3``).
        flow: ``{"name": ..., "weights": ...}`` of a registered flow, or None.
        mc_channels: width of the motion-compensation net.
        num_qualities: rate points, shared by both codecs.

    Shapes:
        frames ``B x 3 x H x W`` in [0, 1], with H and W multiples of
        :attr:`multiple` (pad with :func:`dvc_common.pad_to_multiple`).
    """

    def __init__(
        self,
        motion_codec: dict[str, Any],
        residual_codec: dict[str, Any],
        flow: dict[str, Any] | None = None,
        mc_channels: int = 64,
        num_qualities: int = 1,
    ) -> None:
        super().__init__()
        self.motion_codec = _build(motion_codec, 2, num_qualities)
        self.residual_codec = _build(residual_codec, 3, num_qualities)
        self.mc_net = MotionCompensationNet(mc_channels)
        if flow is not None and flow.get("name") == "dis":
            # The codec's encoder flow stays DIS "medium" unless a config says
            # otherwise: every model so far was trained and measured with it,
            # and the estimator's own default ("fine", 4x the time) coded the
            # held-out validation set no better (+0.4 % BD-rate, docs/training.md).
            flow = {"preset": "medium", **flow}
        self.flow = build_flow(**flow) if flow is not None else None
        self.num_qualities = num_qualities
        self.multiple = math.lcm(
            self.motion_codec.downsampling_factor,
            self.residual_codec.downsampling_factor,
            MotionCompensationNet.multiple,
        )

    def decoder_modules(self) -> dict[str, nn.Module]:
        """The modules a decoder runs (what the file fingerprint covers)."""
        return {
            "motion_codec": self.motion_codec,
            "residual_codec": self.residual_codec,
            "mc_net": self.mc_net,
        }

    # -- the shared path --------------------------------------------------------
    def _predict(
        self, x_ref: torch.Tensor, v_hat: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x_pred, x_warp)`` from the decoded reference and decoded flow."""
        x_warp = backward_warp(x_ref, v_hat)
        return self.mc_net(x_ref, x_warp, v_hat), x_warp

    @staticmethod
    def _reconstruct(x_pred: torch.Tensor, r_hat: torch.Tensor) -> torch.Tensor:
        return (x_pred + r_hat).clamp(0.0, 1.0)

    def _predict_mode(
        self, x_ref: torch.Tensor, v_hat: torch.Tensor | None, mode: int
    ) -> torch.Tensor:
        if mode == PRED_REF:
            return x_ref
        if mode == PRED_WARP:
            return backward_warp(x_ref, v_hat)
        return self._predict(x_ref, v_hat)[0]

    def estimate_flow(self, x_cur: torch.Tensor, x_ref: torch.Tensor) -> torch.Tensor:
        if self.flow is None:
            raise RuntimeError("this PFrameCodec was built without a flow (decoder)")
        return self.flow(x_cur, x_ref)

    # -- training -----------------------------------------------------------------
    def forward(
        self, x_cur: torch.Tensor, x_ref: torch.Tensor, quality: Any = None
    ) -> dict[str, Any]:
        """Training pass with noisy quantisation.

        Returns:
            ``x_hat`` (not clamped, so gradients pass), ``x_pred``, ``x_warp``,
            ``flow`` and ``likelihoods`` keyed ``motion_*`` / ``residual_*``.
        """
        v = self.estimate_flow(x_cur, x_ref)
        m = self.motion_codec(v, quality=quality)
        x_pred, x_warp = self._predict(x_ref, m["x_hat"])
        r = self.residual_codec(x_cur - x_pred, quality=quality)
        lik = {f"motion_{k}": v for k, v in m["likelihoods"].items()}
        lik.update({f"residual_{k}": v for k, v in r["likelihoods"].items()})
        return {
            "x_hat": x_pred + r["x_hat"],
            "x_pred": x_pred,
            "x_warp": x_warp,
            "flow": v,
            "likelihoods": lik,
        }

    # -- coding -------------------------------------------------------------------
    @torch.no_grad()
    def compress(
        self,
        x_cur: torch.Tensor,
        x_ref: torch.Tensor,
        quality: int | None = None,
        modes: tuple[int, ...] = (PRED_MC,),
        lam: float | None = None,
        refine: Refinement | None = None,
    ) -> dict[str, Any]:
        """Encode one frame (batch 1) against the decoded reference.

        Args:
            modes: the prediction modes (:data:`PRED_MODES` values) to try.
                With more than one, each is coded for real and the one with
                the least ``lam * MSE + bits per pixel`` is kept: an encoder's
                mode decision, as a classical encoder's between inter and skip.
                The MC net is trained for the mean-squared error of its
                prediction (plus what the residual codec makes of it); on
                still content that smooths detail the residual codec then pays
                to restore, where the reference itself, or the plain warp, is
                cheaper (docs/bitstream.md, "Prediction modes").
            lam: the rate point's lambda (the training objective's); needed
                when ``modes`` has more than one entry.
            refine: refine the residual codec's latents for this frame
                (:meth:`~image_codecs.bmshj2018.ScaleHyperprior.refine_latents`),
                where the residual codec can: only for the mode chosen, which
                is chosen without it (refining every candidate would multiply
                the cost by the number of modes).

        Returns:
            ``{"mode": int, "motion": bytes (empty for PRED_REF), "residual":
            bytes, "x_hat": B x 3 x H x W}``; ``x_hat`` is what
            :meth:`decompress` will return, bit for bit.
        """
        modes = tuple(modes)
        if not modes or any(m not in PRED_MODES.values() for m in modes):
            raise ValueError(
                f"prediction modes must be among {PRED_MODES}, got {modes}"
            )
        if len(modes) > 1 and lam is None:
            raise ValueError("choosing between prediction modes needs lam")
        if lam is None and refine is not None:
            lam = refine.lam
        motion, v_hat = b"", None
        if any(m != PRED_REF for m in modes):
            v = self.estimate_flow(x_cur, x_ref)
            m = self.motion_codec.compress(v, quality=quality)
            motion, v_hat = pack_compressed(m), m["x_hat"]
        best = None
        for mode in modes:
            x_pred = self._predict_mode(x_ref, v_hat, mode)
            r = self.residual_codec.compress(x_cur - x_pred, quality=quality)
            out = {
                "mode": mode,
                "motion": b"" if mode == PRED_REF else motion,
                "residual": pack_compressed(r),
                "x_hat": self._reconstruct(x_pred, r["x_hat"]),
            }
            if len(modes) == 1 and refine is None:
                return out
            cost = self._cost(out, x_cur, lam)
            if best is None or cost < best[0]:
                best = (cost, out, x_pred)
        cost, out, x_pred = best
        if refine is not None and self.residual_codec.refinable:
            r = self.residual_codec.compress(
                x_cur - x_pred, quality=quality, refine=refine
            )
            tuned = dict(
                out,
                residual=pack_compressed(r),
                x_hat=self._reconstruct(x_pred, r["x_hat"]),
            )
            if self._cost(tuned, x_cur, lam) < cost:
                out = tuned
        return out

    @staticmethod
    def _cost(out: dict[str, Any], x_cur: torch.Tensor, lam: float) -> float:
        nbytes = len(out["motion"]) + len(out["residual"])
        return rd_cost(out["x_hat"], x_cur, nbytes, lam)

    @torch.no_grad()
    def decompress(
        self,
        motion: bytes,
        residual: bytes,
        x_ref: torch.Tensor,
        quality: int | None = None,
        mode: int = PRED_MC,
    ) -> torch.Tensor:
        """Decode one frame from its two payloads and the decoded reference.

        ``mode`` is the prediction mode (:data:`PRED_MODES`); under
        ``PRED_REF`` the motion payload must be empty.
        """
        if mode not in PRED_MODES.values():
            raise BitstreamError(f"unknown prediction mode {mode}")
        if (mode == PRED_REF) != (len(motion) == 0):
            raise BitstreamError(
                "a motion payload with prediction mode 'ref'"
                if motion
                else "prediction mode needs a motion payload, the frame has none"
            )
        v_hat = None
        if mode != PRED_REF:
            strings, shape = unpack_compressed(motion)
            v_hat = self.motion_codec.decompress(strings, shape, quality=quality)[
                "x_hat"
            ]
            if v_hat.shape[-2:] != x_ref.shape[-2:]:
                raise BitstreamError(
                    f"motion payload decodes to {tuple(v_hat.shape[-2:])}, "
                    f"the frame is {tuple(x_ref.shape[-2:])}"
                )
        x_pred = self._predict_mode(x_ref, v_hat, mode)
        strings, shape = unpack_compressed(residual)
        r_hat = self.residual_codec.decompress(strings, shape, quality=quality)["x_hat"]
        if r_hat.shape != x_pred.shape:
            raise BitstreamError("residual payload does not match the frame size")
        return self._reconstruct(x_pred, r_hat)


def rd_cost(x_hat: torch.Tensor, x: torch.Tensor, nbytes: int, lam: float) -> float:
    """``lam * MSE + bpp`` of a coded frame: ``nbytes`` real bytes, ``x_hat``
    what the decoder returns (the encoder's decisions between codings)."""
    bits = 8 * nbytes
    return lam * float(((x_hat - x) ** 2).mean()) + bits / (x.shape[-2] * x.shape[-1])


def _build(spec: dict[str, Any], in_channels: int, num_qualities: int):
    spec = dict(spec)
    name = spec.pop("name")
    return build_codec(
        name, in_channels=in_channels, num_qualities=num_qualities, **spec
    )
