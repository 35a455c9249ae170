"""Readers for raw YUV, Y4M, PyAV containers and image folders; :func:`open_video`.

Every reader streams: it opens the input when iterated and holds one frame at a
time. Colour: 8-bit 4:2:0 sources (raw YUV, Y4M, and ``yuv420p`` streams in
containers) keep their planes (:attr:`Frame.yuv_u8`) and become RGB through
:mod:`dvc_ext.color` with the matrix and range stated in :class:`VideoInfo`;
other container pixel formats go through libswscale's RGB conversion.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

from dvc_common import InputError

from .. import color
from .frame import (
    MAX_SIDE,
    Frame,
    VideoInfo,
    VideoReader,
    chroma_size,
    split_yuv420,
    yuv420_frame_bytes,
)
from .naming import parse_yuv_name

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".tif", ".tiff")
Y4M_MAGIC = b"YUV4MPEG2 "
#: Y4M colour spaces read (all 8-bit 4:2:0; they differ only in chroma siting,
#: which the conversion ignores: it assumes centre siting).
Y4M_420 = ("420", "420jpeg", "420mpeg2", "420paldv")
_MAX_Y4M_LINE = 4096


def _check_size(path: Path, width: int, height: int) -> None:
    if not (1 <= width <= MAX_SIDE and 1 <= height <= MAX_SIDE):
        raise InputError(
            f"{path}: frame size {width}x{height} is out of range "
            f"(1..{MAX_SIDE} per side)"
        )


def _check_range(start: int, count: int | None) -> None:
    if start < 0 or (count is not None and count < 0):
        raise InputError(f"start and count must be >= 0, got {start}, {count}")


def _yuv_conversion(matrix: str, full_range: bool, up: str) -> str:
    return color.describe(matrix, full_range, up) + " -> RGB"


class RawYUVReader(VideoReader):
    """Planar 8-bit Y'CbCr 4:2:0 (``I420``) without a header.

    Size and rate come from the file name (see :mod:`dvc_ext.io.naming`);
    explicit arguments override it. Odd sizes are read with
    ``ceil(W/2) x ceil(H/2)`` chroma planes, as the CTC sequences store them.

    Args:
        path: the ``.yuv`` file.
        width, height, fps: override what the name says.
        matrix, full_range: how the codes become RGB (BT.601 limited range, the
            CTC / DVC convention, when ``None``).
        chroma_upsampling: ``"nearest"`` (default) or ``"bilinear"``.

    Raises:
        InputError: unknown size, a 10-bit or non-4:2:0 name, a file that is not
            a whole number of frames, or an empty file.
    """

    def __init__(
        self,
        path: str | Path,
        width: int | None = None,
        height: int | None = None,
        fps: float | Fraction | None = None,
        matrix: str | None = None,
        full_range: bool | None = None,
        chroma_upsampling: str = "nearest",
    ) -> None:
        path = Path(path)
        name = parse_yuv_name(path)
        if name.bit_depth not in (None, 8):
            raise InputError(
                f"{path}: {name.bit_depth}-bit YUV is not supported yet (only 8-bit "
                f"4:2:0); convert it, e.g. ffmpeg -pix_fmt yuv420p"
            )
        if name.chroma not in (None, "420"):
            raise InputError(
                f"{path}: YUV {name.chroma} is not supported (only 4:2:0 planar)"
            )
        width = width if width is not None else name.width
        height = height if height is not None else name.height
        if width is None or height is None:
            raise InputError(
                f"cannot tell the frame size of {path}: name it like "
                f"Name_416x240_50.yuv or pass width= and height="
            )
        _check_size(path, int(width), int(height))
        self.width, self.height = int(width), int(height)
        self.frame_bytes = yuv420_frame_bytes(self.width, self.height)
        size = path.stat().st_size
        if size == 0:
            raise InputError(f"{path} is empty")
        if size % self.frame_bytes:
            raise InputError(
                f"{path}: {size} bytes is not a whole number of {self.width}x"
                f"{self.height} 8-bit 4:2:0 frames ({self.frame_bytes} bytes each, "
                f"{size / self.frame_bytes:.3f} frames); check the size and bit depth"
            )
        self.path = path
        self.matrix = matrix or "bt601"
        self.full_range = bool(full_range)
        self.chroma_upsampling = chroma_upsampling
        color.describe(self.matrix, self.full_range, chroma_upsampling)  # validates
        rate = fps if fps is not None else name.fps
        self.info = VideoInfo(
            path, "yuv", self.width, self.height,
            Fraction(rate).limit_denominator(1001) if rate else None,
            size // self.frame_bytes, self.matrix, self.full_range,
            _yuv_conversion(self.matrix, self.full_range, chroma_upsampling),
        )  # fmt: skip

    def frames(self, start: int = 0, count: int | None = None) -> Iterator[Frame]:
        _check_range(start, count)
        n = self.info.num_frames
        stop = n if count is None else min(n, start + count)
        with open(self.path, "rb") as f:
            f.seek(start * self.frame_bytes)
            for i in range(start, stop):
                buf = bytearray(self.frame_bytes)
                if f.readinto(buf) != self.frame_bytes:
                    raise InputError(f"{self.path} ended early at frame {i}")
                yield Frame(
                    i, yuv_u8=split_yuv420(buf, self.width, self.height),
                    matrix=self.matrix, full_range=self.full_range,
                    chroma_upsampling=self.chroma_upsampling,
                )  # fmt: skip


def _parse_y4m_header(path: Path, line: bytes) -> dict[str, str]:
    tags: dict[str, str] = {}
    for tok in line[len(Y4M_MAGIC) :].decode("ascii", "replace").split():
        if tok[0] == "X":
            key, _, val = tok[1:].partition("=")
            tags["X" + key.upper()] = val
        else:
            tags[tok[0]] = tok[1:]
    return tags


def _readline(f, limit: int, path: Path, what: str) -> bytes:
    line = f.readline(limit)
    if line and not line.endswith(b"\n"):
        raise InputError(f"{path}: {what} is not terminated within {limit} bytes")
    return line


class Y4MReader(VideoReader):
    """YUV4MPEG2 (``.y4m``) with an 8-bit 4:2:0 colour space.

    Accepted ``C`` tags: ``420``, ``420jpeg`` (the default when absent),
    ``420mpeg2``, ``420paldv``; others (``444``, ``422``, ``mono``, ``420p10``
    ...) are refused. The range follows an ``XCOLORRANGE=FULL|LIMITED`` tag
    unless ``full_range`` is given; the matrix is BT.601 unless given (Y4M
    has no matrix tag).
    """

    def __init__(
        self,
        path: str | Path,
        fps: float | Fraction | None = None,
        matrix: str | None = None,
        full_range: bool | None = None,
        chroma_upsampling: str = "nearest",
    ) -> None:
        path = Path(path)
        with open(path, "rb") as f:
            line = _readline(f, _MAX_Y4M_LINE, path, "the Y4M header")
        if not line.startswith(Y4M_MAGIC):
            raise InputError(f"{path} is not a Y4M file (no YUV4MPEG2 header)")
        self.header_bytes = len(line)
        tags = _parse_y4m_header(path, line)
        try:
            width, height = int(tags["W"]), int(tags["H"])
        except (KeyError, ValueError):
            raise InputError(f"{path}: Y4M header lacks a valid W or H tag") from None
        _check_size(path, width, height)
        cs = tags.get("C", "420jpeg").lower()
        if cs not in Y4M_420:
            raise InputError(
                f"{path}: Y4M colour space C{cs} is not supported yet (only 8-bit "
                f"4:2:0: {', '.join('C' + c for c in Y4M_420)})"
            )
        rate = None
        if "F" in tags:
            try:
                num, den = (int(x) for x in tags["F"].split(":"))
                rate = Fraction(num, den) if num > 0 and den > 0 else None
            except ValueError:
                raise InputError(f"{path}: bad Y4M frame rate F{tags['F']}") from None
        if fps is not None:
            rate = Fraction(fps).limit_denominator(1001)
        if full_range is None:
            full_range = tags.get("XCOLORRANGE", "").upper() == "FULL"
        self.path, self.width, self.height = path, width, height
        self.matrix, self.full_range = matrix or "bt601", bool(full_range)
        self.chroma_upsampling = chroma_upsampling
        self.frame_bytes = yuv420_frame_bytes(width, height)
        color.describe(self.matrix, self.full_range, chroma_upsampling)
        # The count is exact when every frame header is the plain "FRAME\n".
        body = path.stat().st_size - self.header_bytes
        per = self.frame_bytes + 6
        self._fixed = body % per == 0
        self.info = VideoInfo(
            path, "y4m", width, height, rate, body // per if self._fixed else None,
            self.matrix, self.full_range,
            _yuv_conversion(self.matrix, self.full_range, chroma_upsampling),
        )  # fmt: skip

    def frames(self, start: int = 0, count: int | None = None) -> Iterator[Frame]:
        _check_range(start, count)
        with open(self.path, "rb") as f:
            f.seek(self.header_bytes)
            i = 0
            if self._fixed:
                f.seek(start * (self.frame_bytes + 6), os.SEEK_CUR)
                i = start
            while count is None or i < start + count:
                line = _readline(f, _MAX_Y4M_LINE, self.path, f"frame {i} header")
                if not line:
                    return
                if not line.startswith(b"FRAME"):
                    raise InputError(f"{self.path}: frame {i} lacks its FRAME marker")
                buf = bytearray(self.frame_bytes)
                if f.readinto(buf) != self.frame_bytes:
                    raise InputError(f"{self.path} is truncated in frame {i}")
                if i >= start:
                    yield Frame(
                        i, yuv_u8=split_yuv420(buf, self.width, self.height),
                        matrix=self.matrix, full_range=self.full_range,
                        chroma_upsampling=self.chroma_upsampling,
                    )  # fmt: skip
                i += 1


#: PyAV pixel formats read as RGB without a Y'CbCr step.
_RGB_FORMATS = {
    "rgb24", "bgr24", "rgba", "bgra", "argb", "abgr", "rgb0", "bgr0", "0rgb",
    "0bgr", "gbrp",
}  # fmt: skip
_YUV420_FORMATS = {"yuv420p", "yuvj420p"}
# AVColorSpace values of BT.709 (1); BT.601 is 5 (BT470BG) or 6 (SMPTE170M).
_AVCOL_SPC_BT709 = 1
_AVCOL_RANGE_JPEG = 2


def _plane(p) -> np.ndarray:
    a = np.frombuffer(p, dtype=np.uint8).reshape(p.height, p.line_size)
    return a[:, : p.width].copy()


class PyAVReader(VideoReader):
    """Any container and codec FFmpeg decodes, through PyAV (mp4, mkv, avi ...).

    ``yuv420p`` / ``yuvj420p`` streams keep their planes; the matrix is the
    stream's tag (BT.709 if tagged so, else BT.601) and the range its tag
    (``yuvj``/JPEG: full, else limited), unless given. RGB streams are read as
    they are; any other pixel format goes through libswscale's ``rgb24``.
    """

    def __init__(
        self,
        path: str | Path,
        fps: float | Fraction | None = None,
        matrix: str | None = None,
        full_range: bool | None = None,
        chroma_upsampling: str = "nearest",
    ) -> None:
        import av

        path = Path(path)
        try:
            container = av.open(str(path))
        except Exception as e:  # PyAV raises one class per libav error code
            raise InputError(
                f"{path} is not a video file this tool can read ({e}); raw YUV "
                f"needs a .yuv name"
            ) from None
        with container:
            if not container.streams.video:
                raise InputError(f"{path} has no video stream")
            s = container.streams.video[0]
            cc = s.codec_context
            width, height, pix_fmt = cc.width, cc.height, cc.pix_fmt or ""
            rate = s.average_rate or s.guessed_rate
            num = s.frames or None
            tag_709 = cc.colorspace == _AVCOL_SPC_BT709
            tag_full = cc.color_range == _AVCOL_RANGE_JPEG or pix_fmt == "yuvj420p"
        if not width or not height:
            raise InputError(f"{path}: the video stream does not state its size")
        _check_size(path, width, height)
        self.path, self.width, self.height = path, width, height
        self.matrix = matrix or ("bt709" if tag_709 else "bt601")
        self.full_range = tag_full if full_range is None else bool(full_range)
        self.chroma_upsampling = chroma_upsampling
        if fps is not None:
            rate = Fraction(fps).limit_denominator(1001)
        if pix_fmt in _YUV420_FORMATS:
            conv = _yuv_conversion(self.matrix, self.full_range, chroma_upsampling)
            mat, rng = self.matrix, self.full_range
        elif pix_fmt in _RGB_FORMATS:
            conv, mat, rng = "RGB source, no conversion", None, None
        else:
            conv = f"{pix_fmt} -> RGB by libswscale (rgb24)"
            mat, rng = None, None
        self.info = VideoInfo(
            path, "container", width, height,
            Fraction(rate) if rate else None, num, mat, rng, conv,
        )  # fmt: skip

    def frames(self, start: int = 0, count: int | None = None) -> Iterator[Frame]:
        import av

        _check_range(start, count)
        i = 0
        with av.open(str(self.path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            try:
                for frame in container.decode(stream):
                    if count is not None and i >= start + count:
                        return
                    if (frame.width, frame.height) != (self.width, self.height):
                        raise InputError(
                            f"{self.path}: frame {i} is {frame.width}x{frame.height},"
                            f" the stream {self.width}x{self.height}"
                        )
                    if i >= start:
                        yield self._convert(i, frame)
                    i += 1
            except av.FFmpegError as e:
                raise InputError(
                    f"cannot decode {self.path} at frame {i} ({e})"
                ) from None

    def _convert(self, i: int, frame) -> Frame:
        fmt = frame.format.name
        if fmt in _YUV420_FORMATS:
            planes = tuple(_plane(p) for p in frame.planes[:3])
            return Frame(
                i, yuv_u8=planes, matrix=self.matrix, full_range=self.full_range,
                chroma_upsampling=self.chroma_upsampling,
            )  # fmt: skip
        rgb = frame.to_ndarray(format="rgb24")
        return Frame(i, rgb=color.from_u8(rgb).permute(2, 0, 1).contiguous())


def _natural_key(p: Path) -> list:
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", p.name)]


def _read_image(path: Path) -> torch.Tensor:
    import cv2

    a = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if a is None:
        raise InputError(f"cannot read image {path}")
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    elif a.shape[2] == 4:
        a = cv2.cvtColor(a, cv2.COLOR_BGRA2RGB)  # the alpha channel is dropped
    else:
        a = cv2.cvtColor(a, cv2.COLOR_BGR2RGB)
    if a.dtype == np.uint8:
        scale = 255.0
    elif a.dtype == np.uint16:
        scale = 65535.0
    else:
        raise InputError(f"{path}: unsupported image sample type {a.dtype}")
    return torch.from_numpy(a.astype(np.float32) / scale).permute(2, 0, 1).contiguous()


class ImageFolderReader(VideoReader):
    """A folder of PNG (or JPEG, BMP, PPM, TIFF) frames in natural name order
    (``im2`` before ``im10``), or a single image file as a one-frame video.

    8- and 16-bit images are read; grey is replicated to RGB, alpha dropped.
    """

    def __init__(self, path: str | Path, fps: float | Fraction | None = None) -> None:
        path = Path(path)
        if path.is_dir():
            files = sorted(
                (p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES),
                key=_natural_key,
            )
            if not files:
                raise InputError(
                    f"{path} holds no image frames ({', '.join(IMAGE_SUFFIXES)})"
                )
        else:
            files = [path]
        first = _read_image(files[0])
        height, width = first.shape[-2:]
        _check_size(path, width, height)
        self.path, self.files = path, files
        self.info = VideoInfo(
            path, "images", width, height,
            Fraction(fps).limit_denominator(1001) if fps else None, len(files),
        )  # fmt: skip

    def frames(self, start: int = 0, count: int | None = None) -> Iterator[Frame]:
        _check_range(start, count)
        stop = len(self.files) if count is None else min(len(self.files), start + count)
        for i in range(start, stop):
            rgb = _read_image(self.files[i])
            if rgb.shape[-2:] != (self.info.height, self.info.width):
                raise InputError(
                    f"{self.files[i]} is {rgb.shape[-1]}x{rgb.shape[-2]}, the first "
                    f"frame {self.info.width}x{self.info.height}"
                )
            yield Frame(i, rgb=rgb)


def open_video(
    path: str | Path,
    *,
    width: int | None = None,
    height: int | None = None,
    fps: float | Fraction | None = None,
    matrix: str | None = None,
    full_range: bool | None = None,
    chroma_upsampling: str = "nearest",
) -> VideoReader:
    """Open a video for streaming reads, choosing the reader by name and content.

    * a folder, or a ``.png``/``.jpg``/... file: :class:`ImageFolderReader`;
    * ``.yuv``: :class:`RawYUVReader` (size and rate from the name unless
      ``width``/``height``/``fps`` are given);
    * a file starting with ``YUV4MPEG2`` (any name): :class:`Y4MReader`;
    * anything else: :class:`PyAVReader` (mp4, mkv, avi, ...).

    Args:
        path: the input.
        width, height: frame size of a raw ``.yuv`` file (refused for others,
            which record their own).
        fps: overrides the input's frame rate.
        matrix: ``"bt601"`` / ``"bt709"`` for Y'CbCr sources (default: the
            stream's tag, else BT.601).
        full_range: Y'CbCr range (default: the file's tag, else limited).
        chroma_upsampling: ``"nearest"`` (default) or ``"bilinear"``.

    Returns:
        A reader; ``reader.info`` gives size, rate and frame count when known.

    Raises:
        InputError: a missing path, a file that is not a readable video, or any
            of the readers' own refusals.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise InputError(f"no such file or folder: {path}")
    yuv_opts = {"matrix": matrix, "full_range": full_range,
                "chroma_upsampling": chroma_upsampling}  # fmt: skip
    if path.suffix.lower() == ".yuv" and path.is_file():
        return RawYUVReader(path, width, height, fps, **yuv_opts)
    if width is not None or height is not None:
        raise InputError(
            f"width/height apply only to raw .yuv input; {path} records its own size"
        )
    if path.is_dir() or path.suffix.lower() in IMAGE_SUFFIXES:
        return ImageFolderReader(path, fps)
    if not path.is_file():
        raise InputError(f"{path} is not a regular file")
    with open(path, "rb") as f:
        head = f.read(len(Y4M_MAGIC))
    if not head:
        raise InputError(f"{path} is empty")
    if head == Y4M_MAGIC:
        return Y4MReader(path, fps, **yuv_opts)
    return PyAVReader(path, fps, **yuv_opts)


__all__ = [
    "IMAGE_SUFFIXES",
    "ImageFolderReader",
    "PyAVReader",
    "RawYUVReader",
    "Y4MReader",
    "chroma_size",
    "open_video",
]
