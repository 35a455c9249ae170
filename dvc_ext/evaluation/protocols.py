"""Evaluation protocols: how a test sequence becomes the frames a codec codes.

Published numbers use two conventions, and a BD-rate is only meaningful between
results of the same one:

``dvc`` (G. Lu et al., "DVC: An End-to-end Deep Video Compression Framework",
CVPR 2019, and most learned codecs after it):
    8-bit 4:2:0 Y'CbCr to RGB with BT.601 limited range (nearest chroma
    up-sampling, what FFmpeg / OpenCV do when DVC made its PNG frames), frames
    cropped at the top-left to a multiple of 64 (416x240 -> 384x192, 1920x1080
    -> 1920x1024), GOP 10 on HEVC and 12 on UVG, the first 100 (HEVC) or 120
    (UVG) frames; quality is RGB PSNR and MS-SSIM at the cropped size.

``dcvc`` (J. Li, B. Li, Y. Lu, "Deep Contextual Video Compression", NeurIPS
2021, and DCVC-TCM/HEM/DC/FM):
    no crop: frames are padded (by the codec) and measured at the original
    size; intra period 32 (or -1: only the first frame), the first 96 frames;
    RGB from BT.709 full range (the DCVC code's conversion); quality is YUV
    4:2:0 PSNR weighted (6Y + U + V) / 8 and RGB PSNR.

Frames are always 8-bit: the RGB reference is the conversion of the source
planes rounded to 8-bit codes (as the published PNG frames are), and a decoded
RGB frame is rounded to 8 bits before it is measured (as any decoder that writes
a file does).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dvc_common import InputError

from .. import color
from ..io import open_video
from .sequences import FoundSequence

GEOMETRIES = ("crop", "pad")


@dataclass(frozen=True)
class Protocol:
    """An evaluation protocol (see the module docstring).

    Attributes:
        name: ``"dvc"`` or ``"dcvc"`` (or a user's own).
        geometry: ``"crop"`` to a multiple of :attr:`multiple` (top-left), or
            ``"pad"`` (the codec pads; metrics at the original size).
        multiple: the crop multiple.
        frames: frames per sequence by family (``"uvg"``, ``"hevc"``,
            ``"default"``).
        intra_period: I-frame period by family; ``-1``: the first frame only.
        matrix, full_range, chroma_upsampling: the Y'CbCr -> RGB conversion.
        bd_metric: the quality metric of the BD-rate table.
        metrics: the quality metrics reported (``psnr_rgb``, ``ms_ssim_rgb``,
            ``psnr_y``, ``psnr_u``, ``psnr_v``, ``psnr_yuv``).
    """

    name: str
    geometry: str = "crop"
    multiple: int = 64
    frames: Mapping[str, int] = field(default_factory=lambda: {"default": 100})
    intra_period: Mapping[str, int] = field(default_factory=lambda: {"default": 10})
    matrix: str = "bt601"
    full_range: bool = False
    chroma_upsampling: str = "nearest"
    bd_metric: str = "psnr_rgb"
    metrics: tuple[str, ...] = ("psnr_rgb", "ms_ssim_rgb", "psnr_yuv")

    def __post_init__(self) -> None:
        if self.geometry not in GEOMETRIES:
            raise InputError(
                f"protocol {self.name}: geometry must be one of {GEOMETRIES}, "
                f"got {self.geometry!r}"
            )
        if self.geometry == "crop" and self.multiple < 1:
            raise InputError(f"protocol {self.name}: multiple must be >= 1")
        color.describe(self.matrix, self.full_range, self.chroma_upsampling)
        if self.bd_metric not in self.metrics:
            raise InputError(
                f"protocol {self.name}: bd_metric {self.bd_metric!r} is not among "
                f"its metrics {list(self.metrics)}"
            )

    def _by_family(self, table: Mapping[str, int], family: str) -> int:
        if family in table:
            return int(table[family])
        if "default" in table:
            return int(table["default"])
        raise InputError(
            f"protocol {self.name} has no value for {family!r} and no default"
        )

    def num_frames(self, family: str) -> int:
        """Frames the protocol codes on a sequence of ``family``."""
        return self._by_family(self.frames, family)

    def gop(self, family: str) -> int:
        """Intra period on ``family``; ``-1``: only the first frame is intra."""
        return self._by_family(self.intra_period, family)

    def coded_size(self, width: int, height: int) -> tuple[int, int]:
        """``(width, height)`` of the frames that are coded and measured."""
        if self.geometry == "pad":
            return width, height
        w = width // self.multiple * self.multiple
        h = height // self.multiple * self.multiple
        if w == 0 or h == 0:
            raise InputError(
                f"protocol {self.name}: {width}x{height} is smaller than the crop "
                f"multiple {self.multiple}"
            )
        return w, h

    def conversion(self) -> str:
        """One line stating the colour conversion and the frame geometry."""
        conv = color.describe(self.matrix, self.full_range, self.chroma_upsampling)
        if self.geometry == "crop":
            geo = f"top-left crop to a multiple of {self.multiple}"
        else:
            geo = "no crop (the codec pads; metrics at the original size)"
        return f"{conv} -> RGB, rounded to 8-bit; {geo}"

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["frames"], d["intra_period"] = dict(self.frames), dict(self.intra_period)
        d["metrics"] = list(self.metrics)
        d["conversion"] = self.conversion()
        return d


#: The two published protocols (``configs/protocol/*.yaml`` mirror these).
PROTOCOLS: dict[str, Protocol] = {
    "dvc": Protocol(
        "dvc", "crop", 64, {"uvg": 120, "hevc": 100, "default": 100},
        {"uvg": 12, "hevc": 10, "default": 10}, "bt601", False, "nearest",
        "psnr_rgb", ("psnr_rgb", "ms_ssim_rgb", "psnr_y", "psnr_u", "psnr_v",
                     "psnr_yuv"),
    ),
    "dcvc": Protocol(
        "dcvc", "pad", 64, {"default": 96}, {"default": 32}, "bt709", True,
        "nearest", "psnr_yuv", ("psnr_yuv", "psnr_y", "psnr_u", "psnr_v",
                                "psnr_rgb", "ms_ssim_rgb"),
    ),
}  # fmt: skip


def build_protocol(cfg: Mapping[str, Any] | str) -> Protocol:
    """A :class:`Protocol` from a config mapping (``configs/protocol/*.yaml``)
    or a registered name.

    Raises:
        InputError: an unknown name or key, or an invalid value.
    """
    if isinstance(cfg, str):
        if cfg not in PROTOCOLS:
            raise InputError(
                f"unknown protocol {cfg!r}; choices: {', '.join(PROTOCOLS)}"
            )
        return PROTOCOLS[cfg]
    d = dict(cfg)
    known = set(Protocol.__dataclass_fields__)
    unknown = sorted(set(d) - known - {"description"})
    if unknown:
        raise InputError(
            f"unknown protocol setting(s) {unknown}; known: {sorted(known)}"
        )
    d.pop("description", None)
    for key in ("frames", "intra_period"):
        if key in d and not isinstance(d[key], Mapping):
            d[key] = {"default": int(d[key])}
        elif key in d:
            d[key] = {str(k): int(v) for k, v in dict(d[key]).items()}
    if "metrics" in d:
        d["metrics"] = tuple(d["metrics"])
    if "name" not in d:
        raise InputError("a protocol config needs a name")
    return Protocol(**d)


# -- source frames ---------------------------------------------------------------------


@dataclass
class SourceFrame:
    """One frame of a clip as the protocol sees it.

    Attributes:
        index: frame number.
        planes: ``(Y, U, V)`` uint8 planes (``H x W``, ``H/2 x W/2``) after the
            crop; ``None`` for an RGB source (images).
        rgb: ``3 x H x W`` float RGB, 8-bit values (``code / 255``).
    """

    index: int
    planes: tuple[np.ndarray, np.ndarray, np.ndarray] | None
    rgb: torch.Tensor


def crop_planes(
    planes: tuple[np.ndarray, np.ndarray, np.ndarray], width: int, height: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Top-left crop of 4:2:0 planes to ``width x height`` (even sizes, so the
    chroma samples stay aligned and the crop is exact)."""
    if width % 2 or height % 2:
        raise InputError(f"a 4:2:0 crop needs an even size, got {width}x{height}")
    y, u, v = planes
    return (
        np.ascontiguousarray(y[:height, :width]),
        np.ascontiguousarray(u[: height // 2, : width // 2]),
        np.ascontiguousarray(v[: height // 2, : width // 2]),
    )


def to_8bit(x: torch.Tensor) -> torch.Tensor:
    """Round float values in [0, 1] to 8-bit codes, as float ``code / 255``."""
    return (x.float() * 255.0).round_().clamp_(0, 255).div_(255.0)


class Clip:
    """A sequence (or one image) prepared by a protocol.

    Args:
        path: the source file (raw YUV, Y4M, or an image).
        protocol: the protocol.
        family: ``"uvg"`` / ``"hevc"`` (selects frames and GOP), ``"image"``.
        frames: cap on the frame count (smoke runs); ``None``: the protocol's.
        name, cls: labels of the results.
    """

    def __init__(
        self,
        path: str | Path,
        protocol: Protocol,
        family: str,
        frames: int | None = None,
        name: str | None = None,
        cls: str = "",
    ) -> None:
        self.path = Path(path)
        self.protocol = protocol
        self.family = family
        self.name = name or self.path.stem
        self.cls = cls
        self.reader = open_video(self.path, **self._reader_opts())
        info = self.reader.info
        self.yuv_source = info.matrix is not None
        self.source_width, self.source_height = info.width, info.height
        self.fps = info.fps
        if family == "image":
            want, self.gop = 1, 1
        else:
            want, self.gop = protocol.num_frames(family), protocol.gop(family)
        if frames is not None:
            if int(frames) < 1:
                raise InputError(f"frames must be >= 1, got {frames}")
            want = min(want, int(frames))
        available = info.num_frames if info.num_frames is not None else want
        self.num_frames = min(want, available)
        #: True when the file holds fewer frames than the protocol asks for.
        self.short = available < want
        if self.num_frames < 1:
            raise InputError(f"{self.path} has no frames")
        if self.yuv_source:
            self.width, self.height = protocol.coded_size(info.width, info.height)
        else:
            # RGB sources (images) are coded whole whatever the protocol.
            self.width, self.height = info.width, info.height

    @classmethod
    def from_found(
        cls, found: FoundSequence, protocol: Protocol, frames: int | None = None
    ) -> Clip:
        return cls(
            found.path, protocol, found.spec.family, frames, found.name, found.cls
        )

    def _reader_opts(self) -> dict[str, Any]:
        p = self.protocol
        if self.path.suffix.lower() not in (".yuv", ".y4m"):
            return {}
        return {
            "matrix": p.matrix,
            "full_range": p.full_range,
            "chroma_upsampling": p.chroma_upsampling,
        }

    @property
    def cropped(self) -> bool:
        return (self.width, self.height) != (self.source_width, self.source_height)

    def frames(self) -> Iterator[SourceFrame]:
        """The protocol's frames, one at a time (8-bit RGB and 4:2:0 planes)."""
        p = self.protocol
        for f in self.reader.frames(0, self.num_frames):
            if f.yuv_u8 is None:
                yield SourceFrame(f.index, None, to_8bit(f.rgb))
                continue
            planes = crop_planes(f.yuv_u8, self.width, self.height)
            rgb = color.yuv420_to_rgb(
                *(color.from_u8(q)[None] for q in planes),
                p.matrix, p.full_range, p.chroma_upsampling,
            )  # fmt: skip
            yield SourceFrame(f.index, planes, to_8bit(rgb))

    def codec_input(self, workdir: str | Path) -> tuple[Path, dict[str, Any]]:
        """A file a codec can read that holds exactly the protocol's frames,
        and the reader options that give the protocol's conversion.

        Without a crop it is the source itself; with one, the cropped planes
        are written once as raw 8-bit 4:2:0 into ``workdir`` (exact: no
        conversion is involved).
        """
        opts = self._reader_opts()
        if not self.cropped:
            return self.path, opts
        out = Path(workdir) / (
            f"{self.name}_{self.width}x{self.height}_{self.num_frames}frames.yuv"
        )
        if not out.exists():
            tmp = out.parent / f".{out.name}.{secrets.token_hex(4)}.tmp"
            try:
                with open(tmp, "wb") as fh:
                    for sf in self.frames():
                        for plane in sf.planes:
                            fh.write(plane.tobytes())
                os.replace(tmp, out)
            finally:
                tmp.unlink(missing_ok=True)
        opts.update(width=self.width, height=self.height, fps=self.fps)
        return out, opts

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "class": self.cls,
            "path": str(self.path),
            "source_size": [self.source_width, self.source_height],
            "coded_size": [self.width, self.height],
            "frames": self.num_frames,
            "fewer_frames_than_protocol": self.short,
            "intra_period": self.gop,
            "fps": float(self.fps) if self.fps else None,
        }
