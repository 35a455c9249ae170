"""What the readers yield and report: :class:`Frame`, :class:`VideoInfo`."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

from .. import color

#: Largest frame side accepted from a file header or name (8K UHD is 7680).
MAX_SIDE = 16384


@dataclass(frozen=True)
class VideoInfo:
    """What is known about an input before decoding it.

    Attributes:
        path: the file or folder.
        kind: ``"yuv"``, ``"y4m"``, ``"container"`` (anything PyAV reads) or
            ``"images"`` (a PNG folder or one image).
        width, height: frame size in pixels.
        fps: frames per second, ``None`` when the input does not say.
        num_frames: frame count, ``None`` when it is only known after decoding.
        matrix, full_range: the Y'CbCr -> RGB conversion applied (``None`` for
            RGB sources).
        conversion: a one-line statement of how RGB frames are obtained, for
            logs and result files.
    """

    path: Path
    kind: str
    width: int
    height: int
    fps: Fraction | None
    num_frames: int | None
    matrix: str | None = None
    full_range: bool | None = None
    conversion: str = "RGB source, no conversion"


class Frame:
    """One decoded frame. RGB is computed from the YUV planes on first access.

    Args:
        index: position in the input (0-based).
        rgb: ``3 x H x W`` float RGB in [0, 1], for RGB sources.
        yuv_u8: ``(Y, U, V)`` uint8 planes (``H x W``, ``ceil(H/2) x ceil(W/2)``
            twice), for 8-bit 4:2:0 sources.
        matrix, full_range, chroma_upsampling: how ``yuv_u8`` becomes RGB
            (see :mod:`dvc_ext.color`).
    """

    __slots__ = ("index", "_rgb", "yuv_u8", "matrix", "full_range", "chroma_upsampling")

    def __init__(
        self,
        index: int,
        rgb: torch.Tensor | None = None,
        yuv_u8: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
        matrix: str = "bt601",
        full_range: bool = False,
        chroma_upsampling: str = "nearest",
    ) -> None:
        if rgb is None and yuv_u8 is None:
            raise ValueError("a Frame needs rgb or yuv_u8")
        self.index = index
        self._rgb = rgb
        self.yuv_u8 = yuv_u8
        self.matrix = matrix
        self.full_range = full_range
        self.chroma_upsampling = chroma_upsampling

    @property
    def rgb(self) -> torch.Tensor:
        """``3 x H x W`` float RGB in [0, 1]."""
        if self._rgb is None:
            y, u, v = self.yuv
            self._rgb = color.yuv420_to_rgb(
                y, u, v, self.matrix, self.full_range, self.chroma_upsampling
            )
        return self._rgb

    @property
    def yuv(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
        """``(Y 1xHxW, U 1xHcxWc, V 1xHcxWc)`` float code / 255 of a 4:2:0
        source, or ``None`` for an RGB source."""
        if self.yuv_u8 is None:
            return None
        y, u, v = (color.from_u8(p)[None] for p in self.yuv_u8)
        return y, u, v

    @property
    def height(self) -> int:
        return int(
            self.yuv_u8[0].shape[0] if self._rgb is None else self._rgb.shape[-2]
        )

    @property
    def width(self) -> int:
        return int(
            self.yuv_u8[0].shape[1] if self._rgb is None else self._rgb.shape[-1]
        )

    def __repr__(self) -> str:
        src = "yuv420" if self.yuv_u8 is not None else "rgb"
        return f"Frame(index={self.index}, {self.width}x{self.height}, {src})"


class VideoReader:
    """Base of the readers: a description of an input, iterated lazily.

    Each call of :meth:`frames` opens the input afresh and reads one frame at a
    time, so a long 1080p sequence is never held whole; iterating the reader
    itself yields the RGB tensors.
    """

    info: VideoInfo

    def frames(self, start: int = 0, count: int | None = None) -> Iterator[Frame]:
        """Yield frames ``start .. start + count - 1`` (to the end if ``None``)."""
        raise NotImplementedError

    def __iter__(self) -> Iterator[torch.Tensor]:
        """Yield ``3 x H x W`` float RGB tensors in [0, 1]."""
        for f in self.frames():
            yield f.rgb

    def __repr__(self) -> str:
        i = self.info
        return (
            f"{type(self).__name__}({str(i.path)!r}, {i.width}x{i.height}, "
            f"fps={i.fps}, frames={i.num_frames})"
        )


def chroma_size(width: int, height: int) -> tuple[int, int]:
    """``(width, height)`` of a 4:2:0 chroma plane: ``ceil`` of half (CTC, FFmpeg)."""
    return (width + 1) // 2, (height + 1) // 2


def yuv420_frame_bytes(width: int, height: int) -> int:
    """Bytes of one 8-bit 4:2:0 frame (planar Y, U, V)."""
    cw, ch = chroma_size(width, height)
    return width * height + 2 * cw * ch


def split_yuv420(
    buf: bytes | bytearray, width: int, height: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The Y, U, V planes (uint8) of one planar 8-bit 4:2:0 frame.

    The planes are views of ``buf`` (writable when ``buf`` is a bytearray), so a
    frame costs its bytes once.
    """
    cw, ch = chroma_size(width, height)
    a = np.frombuffer(buf, dtype=np.uint8)
    n = width * height
    y = a[:n].reshape(height, width)
    u = a[n : n + cw * ch].reshape(ch, cw)
    v = a[n + cw * ch : n + 2 * cw * ch].reshape(ch, cw)
    return y, u, v
