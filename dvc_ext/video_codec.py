"""The video codec: a GOP loop of I-frames (image codec) and DVC P-frames."""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn

from dvc_common import BitstreamError, pad_to_multiple, unpad
from image_codecs.base import Refinement
from image_codecs.payload import pack_compressed, unpack_compressed

from .bitstream import FRAME_I, FRAME_P, FRAME_PM, fingerprint
from .pframe import PRED_MC, PFrameCodec, _build, pred_mode_ids, rd_cost


@dataclass
class CodedFrame:
    """One coded frame: its type, quality index and sub-streams.

    I-frames carry ``[intra]``; P-frames ``[motion, residual]``, and
    P-frames with a prediction mode (``FRAME_PM``) ``[mode byte, motion
    (empty under mode "ref"), residual]``.
    """

    frame_type: int
    quality: int
    substreams: list[bytes]


class VideoCodec(nn.Module):
    """I-frames by a registered image codec, P-frames by :class:`PFrameCodec`.

    Frames are padded once to :attr:`multiple` and coded in the padded domain;
    the decoded reference of each frame is the next frame's reference, and every
    output is cropped back to the input size.

    Args:
        intra_codec: ``{"name": ..., **kwargs}`` of a registered image codec.
        pframe: keyword arguments of :class:`PFrameCodec` (its ``flow`` is
            dropped when ``for_decoding`` is set: a decoder never builds it).
        num_qualities: rate points of every codec inside.
        for_decoding: build only what a decoder runs.
    """

    def __init__(
        self,
        intra_codec: dict[str, Any],
        pframe: dict[str, Any],
        num_qualities: int = 1,
        for_decoding: bool = False,
    ) -> None:
        super().__init__()
        self.config = {
            "intra_codec": dict(intra_codec),
            "pframe": copy.deepcopy(dict(pframe)),
            "num_qualities": int(num_qualities),
        }
        pf = dict(pframe)
        if for_decoding:
            pf["flow"] = None
        self.intra = _build(intra_codec, 3, num_qualities)
        self.pframe = PFrameCodec(**pf, num_qualities=num_qualities)
        self.num_qualities = int(num_qualities)
        self.multiple = math.lcm(self.intra.downsampling_factor, self.pframe.multiple)

    # -- identity of the decoder ------------------------------------------------
    def decoder_config(self) -> dict[str, Any]:
        """The part of the config a decoder depends on (no encoder-side flow;
        of a classical intra codec, only what its decoder reads: its name)."""
        pf = {k: v for k, v in self.config["pframe"].items() if k != "flow"}
        intra = self.config["intra_codec"]
        keep = type(self.intra).decode_kwargs
        if keep is not None:
            intra = {k: v for k, v in intra.items() if k == "name" or k in keep}
        return {**self.config, "intra_codec": intra, "pframe": pf}

    def replace_intra(self, intra_codec: dict[str, Any]) -> None:
        """Code I-frames with another, classical codec (``{"name": "x265-intra"}``):
        it has no weights, so any P-frame model can take it as it is."""
        codec = _build(intra_codec, 3, self.num_qualities)
        if codec.learned:
            raise ValueError(
                f"{intra_codec['name']!r} is a learned codec: swap in its trained "
                "weights with `dvc-ext export ... intra=IMAGE.pth`"
            )
        self.intra = codec.to(next(self.pframe.parameters()).device)
        self.config["intra_codec"] = dict(intra_codec)
        self.multiple = math.lcm(self.intra.downsampling_factor, self.pframe.multiple)

    def decoder_state(self) -> dict[str, torch.Tensor]:
        state = {f"intra.{k}": v for k, v in self.intra.state_dict().items()}
        for name, mod in self.pframe.decoder_modules().items():
            state.update({f"pframe.{name}.{k}": v for k, v in mod.state_dict().items()})
        return state

    def fingerprint(self) -> bytes:
        """32 bytes identifying the decoder's config and weights.

        Two models with the same fingerprint decode a file to the same frames;
        the encoder-side flow estimator does not enter it.
        """
        return fingerprint(self.decoder_state(), self.decoder_config())

    def update(self, force: bool = False) -> bool:
        """Build the entropy coders' CDF tables (CompressAI's ``update``)."""
        updated = self.intra.update(force=force)
        updated |= self.pframe.motion_codec.update(force=force)
        updated |= self.pframe.residual_codec.update(force=force)
        return updated

    def adopt_intra(self, name: str) -> None:
        """Before decoding a file whose header names a classical intra codec
        other than ours: take it (it is built from its name alone)."""
        from image_codecs import codec_class

        if name == self.intra.registry_name:
            return
        try:
            learned = codec_class(name).learned
        except KeyError:
            return  # unknown: the fingerprint check refuses the file
        if not learned:
            self.replace_intra({"name": name})

    # -- coding -------------------------------------------------------------------
    def _check_quality(self, quality: int) -> int | None:
        if not 0 <= quality < self.num_qualities:
            raise ValueError(
                f"quality must be in 0..{self.num_qualities - 1}, got {quality}"
            )
        return quality if self.num_qualities > 1 else None

    @torch.no_grad()
    def encode(
        self,
        frames: Iterable[torch.Tensor],
        quality: int,
        intra_period: int,
        pred_modes: Iterable[str] = ("mc",),
        lam: float | None = None,
        refine_steps: int = 0,
    ) -> Iterator[tuple[CodedFrame, torch.Tensor]]:
        """Encode frames one by one (streaming).

        Args:
            frames: ``3 x H x W`` RGB tensors in [0, 1], all of one size.
            quality: rate point index.
            intra_period: an I-frame every this many frames; ``<= 0``: the first
                frame only.
            pred_modes: the P-frames' prediction modes to choose from (names of
                :data:`dvc_ext.pframe.PRED_MODES`); anything but ``("mc",)``
                writes ``FRAME_PM`` records where a mode other than ``mc`` wins,
                which a file must announce with ``FLAG_PRED_MODES``.
            lam: the rate point's lambda, for the mode decision and refinement.
            refine_steps: refine the latents of each I-frame and each P-frame's
                residual for that frame, this many gradient steps on ``lam *
                MSE + bpp`` (:class:`~image_codecs.base.Refinement`; 0: none).
                The decoder and the format do not change; encoding is slower.

        Yields:
            ``(coded_frame, x_hat, frame)``: ``x_hat`` (``3 x H x W``) is the
            decoder's reconstruction, bit for bit; ``frame`` the input frame.
        """
        q = self._check_quality(quality)
        modes = pred_mode_ids(pred_modes)
        refine = None
        if refine_steps:
            if lam is None:
                raise ValueError("refining latents needs the rate point's lam")
            refine = Refinement(steps=int(refine_steps), lam=float(lam))
        intra_refine = refine if self.intra.refinable else None
        ref = None
        device = next(self.parameters()).device
        for i, frame in enumerate(frames):
            x, pads = pad_to_multiple(frame[None].to(device), self.multiple)
            if ref is None or (intra_period > 0 and i % intra_period == 0):
                out = self.intra.compress(x, quality=q)
                payload = pack_compressed(out)
                if intra_refine is not None:
                    # Kept on its real bytes, as a P-frame's refined residual
                    # is: the refinement itself saw only the model's estimate.
                    tuned = self.intra.compress(x, quality=q, refine=intra_refine)
                    tuned_payload = pack_compressed(tuned)
                    if rd_cost(
                        tuned["x_hat"].clamp(0.0, 1.0), x, len(tuned_payload), lam
                    ) < rd_cost(out["x_hat"].clamp(0.0, 1.0), x, len(payload), lam):
                        out, payload = tuned, tuned_payload
                coded = CodedFrame(FRAME_I, quality, [payload])
                ref = out["x_hat"].clamp(0.0, 1.0)
            else:
                out = self.pframe.compress(
                    x, ref, quality=q, modes=modes, lam=lam, refine=refine
                )
                subs = [out["motion"], out["residual"]]
                if out["mode"] == PRED_MC:
                    coded = CodedFrame(FRAME_P, quality, subs)
                else:
                    coded = CodedFrame(FRAME_PM, quality, [bytes([out["mode"]]), *subs])
                ref = out["x_hat"]
            yield coded, unpad(ref, pads)[0], frame

    @torch.no_grad()
    def decode(
        self, coded: Iterable[CodedFrame], height: int, width: int
    ) -> Iterator[torch.Tensor]:
        """Decode coded frames to ``3 x height x width`` tensors in [0, 1]."""
        device = next(self.parameters()).device
        probe = torch.zeros(1, 1, height, width)
        _, pads = pad_to_multiple(probe, self.multiple)
        ref = None
        for k, cf in enumerate(coded):
            q = self._check_quality(cf.quality)
            if cf.frame_type == FRAME_I:
                (payload,) = _substreams(cf, 1, k)
                strings, shape = unpack_compressed(payload)
                x_hat = self.intra.decompress(strings, shape, quality=q)["x_hat"]
                ref = x_hat.clamp(0.0, 1.0)
            elif cf.frame_type == FRAME_P:
                if ref is None:
                    raise BitstreamError(f"frame {k} is a P-frame with no reference")
                motion, residual = _substreams(cf, 2, k)
                ref = self.pframe.decompress(motion, residual, ref, quality=q)
            elif cf.frame_type == FRAME_PM:
                if ref is None:
                    raise BitstreamError(f"frame {k} is a P-frame with no reference")
                mode, motion, residual = _substreams(cf, 3, k)
                if len(mode) != 1:
                    raise BitstreamError(
                        f"frame {k}: the prediction mode is {len(mode)} bytes, not 1"
                    )
                try:
                    ref = self.pframe.decompress(
                        motion, residual, ref, quality=q, mode=mode[0]
                    )
                except BitstreamError as e:
                    raise BitstreamError(f"frame {k}: {e}") from None
            else:
                raise BitstreamError(f"frame {k} has unknown type {cf.frame_type}")
            if ref.shape[-2:] != (
                height + pads[2] + pads[3],
                width + pads[0] + pads[1],
            ):
                raise BitstreamError(f"frame {k} decodes to the wrong size")
            yield unpad(ref.to(device), pads)[0]


def _substreams(cf: CodedFrame, n: int, k: int) -> list[bytes]:
    if len(cf.substreams) != n:
        raise BitstreamError(
            f"frame {k} has {len(cf.substreams)} sub-streams, expected {n}"
        )
    return cf.substreams
