"""Writers: raw YUV, Y4M, PNG folder, lossless mp4/mkv; :func:`open_writer`.

Every writer is atomic: frames go to a temporary file (or folder) beside the
target, which is renamed into place by :meth:`VideoWriter.close` and removed by
:meth:`VideoWriter.abort` or when the ``with`` block raises, so a failed or
interrupted run never leaves a half-written output under the target's name.

RGB frames become 8-bit 4:2:0 through :func:`dvc_ext.color.rgb_to_yuv420` with
the writer's matrix and range; a :class:`Frame` that carries its 4:2:0 planes is
written to YUV / Y4M as they are (no round trip through RGB).
"""

from __future__ import annotations

import os
import secrets
import shutil
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

from dvc_common import InputError

from .. import color
from .frame import MAX_SIDE, Frame, chroma_size

CONTAINER_FORMATS = {".mp4": "mp4", ".mkv": "matroska", ".mov": "mov"}
DEFAULT_FPS = Fraction(25)


def _temp_beside(target: Path, suffix: str = ".tmp") -> Path:
    return target.parent / f".{target.name}.{secrets.token_hex(4)}{suffix}"


def _rgb_tensor(frame: torch.Tensor | Frame) -> torch.Tensor:
    x = frame.rgb if isinstance(frame, Frame) else frame
    if x.dim() == 4 and x.shape[0] == 1:
        x = x[0]
    if x.dim() != 3 or x.shape[0] != 3 or not x.is_floating_point():
        raise InputError(
            f"expected a float RGB frame [3,H,W] in [0, 1], got {tuple(x.shape)} "
            f"{x.dtype}"
        )
    return x.detach().cpu()


class VideoWriter:
    """Base of the writers: ``write`` frames, then ``close`` (or use ``with``).

    Args:
        path: the output.
        fps: frame rate recorded where the format has one (25 when ``None``).
        matrix, full_range: the RGB -> Y'CbCr conversion of YUV outputs.
    """

    def __init__(
        self,
        path: str | Path,
        fps: float | Fraction | None = None,
        matrix: str = "bt601",
        full_range: bool = False,
    ) -> None:
        self.path = Path(path).expanduser()
        if not self.path.parent.is_dir():
            raise InputError(f"output folder {self.path.parent} does not exist")
        self.fps = Fraction(fps).limit_denominator(1001) if fps else DEFAULT_FPS
        if self.fps <= 0:
            raise InputError(f"fps must be positive, got {fps}")
        color.describe(matrix, full_range)  # validates the matrix name
        self.matrix, self.full_range = matrix, bool(full_range)
        self.num_frames = 0
        self.size: tuple[int, int] | None = None  # (width, height)
        self._tmp: Path | None = None
        self._done = False

    # -- subclass hooks -------------------------------------------------------------
    def _open(self, width: int, height: int) -> None:
        raise NotImplementedError

    def _write(self, frame: torch.Tensor | Frame) -> None:
        raise NotImplementedError

    def _finish(self) -> None:
        """Flush and close the temporary output (before the rename)."""

    def _commit(self) -> None:
        os.replace(self._tmp, self.path)

    def _discard(self) -> None:
        if self._tmp is not None:
            self._tmp.unlink(missing_ok=True)

    # -- public -----------------------------------------------------------------------
    def write(self, frame: torch.Tensor | Frame) -> None:
        """Append one frame: ``3 x H x W`` float RGB in [0, 1] or a :class:`Frame`.

        Raises:
            InputError: a frame of another size than the first, or bad shape.
        """
        if self._done:
            raise InputError(f"{self.path}: write after close")
        if isinstance(frame, Frame):
            w, h = frame.width, frame.height
        else:
            x = _rgb_tensor(frame)
            h, w = x.shape[-2:]
            frame = x
        if self.size is None:
            if not (1 <= w <= MAX_SIDE and 1 <= h <= MAX_SIDE):
                raise InputError(f"frame size {w}x{h} is out of range")
            self._open(w, h)
            self.size = (w, h)
        elif (w, h) != self.size:
            raise InputError(
                f"{self.path}: frame {self.num_frames} is {w}x{h}, the first "
                f"{self.size[0]}x{self.size[1]}"
            )
        self._write(frame)
        self.num_frames += 1

    def close(self) -> None:
        """Finish the output and rename it into place.

        Raises:
            InputError: no frame was written (nothing is created).
        """
        if self._done:
            return
        if self.num_frames == 0:
            self.abort()
            raise InputError(f"no frames to write to {self.path}")
        try:
            self._finish()
            self._commit()
        except BaseException:
            self.abort()
            raise
        self._done = True

    def abort(self) -> None:
        """Drop everything written so far; the target is left untouched."""
        if self._done:
            return
        self._done = True
        try:
            self._finish()
        except Exception:  # the output is being thrown away anyway
            pass
        self._discard()

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


class _PlanarYUVWriter(VideoWriter):
    """Shared by the raw YUV and Y4M writers: frames as 8-bit 4:2:0 planes."""

    def _planes(self, frame: torch.Tensor | Frame) -> tuple[np.ndarray, ...]:
        if isinstance(frame, Frame) and frame.yuv_u8 is not None:
            return frame.yuv_u8
        y, u, v = color.rgb_to_yuv420(_rgb_tensor(frame), self.matrix, self.full_range)
        return color.to_u8(y[0]), color.to_u8(u[0]), color.to_u8(v[0])

    def _open(self, width: int, height: int) -> None:
        self._tmp = _temp_beside(self.path)
        self._f = open(self._tmp, "xb")
        self._f.write(self._file_header(width, height))

    def _file_header(self, width: int, height: int) -> bytes:
        return b""

    def _frame_header(self) -> bytes:
        return b""

    def _write(self, frame: torch.Tensor | Frame) -> None:
        w, h = self.size
        cw, ch = chroma_size(w, h)
        planes = self._planes(frame)
        want = ((h, w), (ch, cw), (ch, cw))
        if tuple(p.shape for p in planes) != want:
            raise InputError(
                f"4:2:0 planes {[p.shape for p in planes]}, expected {want}"
            )
        self._f.write(self._frame_header())
        for p in planes:
            self._f.write(np.ascontiguousarray(p, dtype=np.uint8).tobytes())

    def _finish(self) -> None:
        f = getattr(self, "_f", None)
        if f is not None and not f.closed:
            f.flush()
            os.fsync(f.fileno())
            f.close()


class RawYUVWriter(_PlanarYUVWriter):
    """Planar 8-bit 4:2:0 (``I420``), chroma ``ceil(W/2) x ceil(H/2)``."""


class Y4MWriter(_PlanarYUVWriter):
    """YUV4MPEG2, ``C420jpeg`` (the centre siting of the 2x2-mean down-sampling)
    with an ``XCOLORRANGE`` tag."""

    def _file_header(self, width: int, height: int) -> bytes:
        rng = "FULL" if self.full_range else "LIMITED"
        return (
            f"YUV4MPEG2 W{width} H{height} F{self.fps.numerator}:"
            f"{self.fps.denominator} Ip A1:1 C420jpeg XCOLORRANGE={rng}\n"
        ).encode("ascii")

    def _frame_header(self) -> bytes:
        return b"FRAME\n"


class LosslessVideoWriter(VideoWriter):
    """Lossless RGB video through PyAV: ``libx264rgb`` at QP 0 (``.mp4``,
    ``.mkv``, ``.mov``). Decoding it gives back the 8-bit RGB codes exactly;
    few players show ``libx264rgb`` streams, so use Y4M / PNG for viewing."""

    def _open(self, width: int, height: int) -> None:
        import av

        suffix = self.path.suffix.lower()
        self._tmp = _temp_beside(self.path, ".tmp" + suffix)
        self._container = av.open(str(self._tmp), "w", format=CONTAINER_FORMATS[suffix])
        s = self._container.add_stream("libx264rgb", rate=self.fps)
        s.width, s.height, s.pix_fmt = width, height, "rgb24"
        s.options = {"qp": "0", "preset": "veryfast"}
        self._stream = s

    def _write(self, frame: torch.Tensor | Frame) -> None:
        import av

        rgb = color.to_u8(_rgb_tensor(frame)).transpose(1, 2, 0)
        vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        vf.pts = self.num_frames
        vf.time_base = 1 / self.fps
        for packet in self._stream.encode(vf):
            self._container.mux(packet)

    def _finish(self) -> None:
        c = getattr(self, "_container", None)
        if c is None:
            return
        self._container = None
        try:
            for packet in self._stream.encode():
                c.mux(packet)
        finally:
            c.close()


class PNGFolderWriter(VideoWriter):
    """8-bit RGB PNG frames ``im00001.png``, ``im00002.png`` ... in a folder.

    The folder is written under a temporary name and renamed into place. An
    existing target folder is replaced only when it holds nothing but PNG files
    (an earlier output); anything else is refused rather than deleted.
    """

    def _open(self, width: int, height: int) -> None:
        if self.path.exists():
            self._check_replaceable()
        self._tmp = _temp_beside(self.path, ".tmpdir")
        self._tmp.mkdir()

    def _check_replaceable(self) -> None:
        p = self.path
        if not p.is_dir() or any(
            not (c.is_file() and c.suffix.lower() == ".png") for c in p.iterdir()
        ):
            raise InputError(
                f"{p} exists and is not a folder of PNG frames; refusing to replace it"
            )

    def _write(self, frame: torch.Tensor | Frame) -> None:
        import cv2

        rgb = color.to_u8(_rgb_tensor(frame)).transpose(1, 2, 0)
        name = self._tmp / f"im{self.num_frames + 1:05d}.png"
        if not cv2.imwrite(str(name), np.ascontiguousarray(rgb[:, :, ::-1])):
            raise InputError(f"cannot write {name}")

    def _commit(self) -> None:
        old = None
        if self.path.exists():
            self._check_replaceable()
            old = _temp_beside(self.path, ".old")
            os.replace(self.path, old)
        os.replace(self._tmp, self.path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)

    def _discard(self) -> None:
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)


def open_writer(
    path: str | Path,
    *,
    fps: float | Fraction | None = None,
    matrix: str = "bt601",
    full_range: bool = False,
) -> VideoWriter:
    """A writer chosen by the output name.

    ``.yuv``: :class:`RawYUVWriter`; ``.y4m``: :class:`Y4MWriter`; ``.mp4``,
    ``.mkv``, ``.mov``: :class:`LosslessVideoWriter`; a name without suffix,
    ending in ``/``, or an existing folder: :class:`PNGFolderWriter`.

    Raises:
        InputError: an unsupported suffix or a missing parent folder.
    """
    as_dir = str(path).endswith(("/", os.sep))
    path = Path(path).expanduser()
    suffix = path.suffix.lower()
    kw = {"fps": fps, "matrix": matrix, "full_range": full_range}
    if as_dir or path.is_dir() or not suffix:
        return PNGFolderWriter(path, **kw)
    if suffix == ".yuv":
        return RawYUVWriter(path, **kw)
    if suffix == ".y4m":
        return Y4MWriter(path, **kw)
    if suffix in CONTAINER_FORMATS:
        return LosslessVideoWriter(path, **kw)
    raise InputError(
        f"cannot write {path}: unsupported output type {suffix!r} (use .yuv, .y4m, "
        f"{', '.join(CONTAINER_FORMATS)} or a folder name for PNG frames)"
    )


__all__ = [
    "LosslessVideoWriter",
    "PNGFolderWriter",
    "RawYUVWriter",
    "VideoWriter",
    "Y4MWriter",
    "open_writer",
]
