"""x264 / x265 anchors through PyAV's libx264 and libx265.

The anchors code the same 8-bit 4:2:0 planes our codecs see (after the
protocol's crop), their packets are written as a raw elementary stream
(Annex B: ``.264`` / ``.265``, parameter sets included, no container), and the
rate is that file's size, which equals the sum of the encoder's packet bytes.
The file is then decoded with PyAV and the decoded planes go through the same
metric code as our codecs.

Settings (:data:`DEFAULT_ANCHORS`, ``configs/eval.yaml``):

* ``x264`` / ``x265``: the DVC paper's anchors (G. Lu et al., CVPR 2019):
  ``-preset veryfast -tune zerolatency``, GOP equal to the protocol's intra
  period, a CRF sweep; DVC's x264 command also had ``-bf 2 -b_strategy 0``
  (x264 params ``bframes=2:b-adapt=0``), kept here. Scene-cut detection is off so
  that I-frames fall exactly on the GOP.
* ``x264_medium`` / ``x265_medium``: the ``medium`` preset, default tuning, the
  same GOP and CRFs.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from dvc_common import InputError

#: PyAV encoder -> (FFmpeg format of its elementary stream, file suffix).
ELEMENTARY: dict[str, tuple[str, str]] = {
    "libx264": ("h264", ".264"),
    "libx265": ("hevc", ".265"),
}
DEFAULT_CRF = (15, 19, 23, 27)


@dataclass(frozen=True)
class AnchorSpec:
    """One anchor configuration.

    Attributes:
        name: its label in the results (``"x264"``).
        codec: ``"libx264"`` or ``"libx265"``.
        preset: the encoder preset (``"veryfast"``, ``"medium"`` ...).
        tune: ``"zerolatency"`` or ``None``.
        params: extra ``x264-params`` / ``x265-params`` (``key=value:...``).
        crf: the CRF sweep, one rate point each.
    """

    name: str
    codec: str
    preset: str = "veryfast"
    tune: str | None = "zerolatency"
    params: str | None = None
    crf: tuple[int, ...] = DEFAULT_CRF

    def __post_init__(self) -> None:
        if self.codec not in ELEMENTARY:
            raise InputError(
                f"anchor {self.name}: codec must be one of {list(ELEMENTARY)}, got "
                f"{self.codec!r}"
            )
        if not self.crf:
            raise InputError(f"anchor {self.name}: empty CRF list")

    def _params(self, gop: int) -> str:
        keyint = str(gop)
        if gop <= 0:
            keyint = "infinite" if self.codec == "libx264" else "-1"
        parts = [f"keyint={keyint}", "scenecut=0"]
        if self.codec == "libx265":
            # Closed GOPs, as the learned codecs' GOPs are; x265 is quiet.
            parts += ["open-gop=0", "log-level=error"]
        if self.params:
            parts.append(str(self.params))
        return ":".join(parts)

    def options(self, crf: int, gop: int) -> dict[str, str]:
        """The encoder options (PyAV ``CodecContext.options``)."""
        opts = {"preset": self.preset, "crf": str(int(crf))}
        if self.tune:
            opts["tune"] = self.tune
        key = "x264-params" if self.codec == "libx264" else "x265-params"
        opts[key] = self._params(gop)
        return opts

    def command(self, crf: int, gop: int) -> str:
        """The equivalent FFmpeg command line, for the results."""
        o = self.options(crf, gop)
        args = " ".join(f"-{k} {v}" for k, v in o.items())
        return (
            f"ffmpeg -f rawvideo -pix_fmt yuv420p -s WxH -r FPS -i in.yuv "
            f"-c:v {self.codec} {args} out{ELEMENTARY[self.codec][1]}"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "codec": self.codec,
            "preset": self.preset,
            "tune": self.tune,
            "params": self.params,
            "crf": list(self.crf),
        }


DEFAULT_ANCHORS: dict[str, AnchorSpec] = {
    "x264": AnchorSpec("x264", "libx264", "veryfast", "zerolatency",
                       "bframes=2:b-adapt=0"),
    "x265": AnchorSpec("x265", "libx265", "veryfast", "zerolatency"),
    "x264_medium": AnchorSpec("x264_medium", "libx264", "medium", None),
    "x265_medium": AnchorSpec("x265_medium", "libx265", "medium", None),
}  # fmt: skip


def build_anchor(name: str, cfg: Mapping[str, Any] | None = None) -> AnchorSpec:
    """An :class:`AnchorSpec` from a config mapping, or a default by name."""
    if cfg is None:
        if name not in DEFAULT_ANCHORS:
            raise InputError(
                f"unknown anchor {name!r}; defaults: {', '.join(DEFAULT_ANCHORS)}"
            )
        return DEFAULT_ANCHORS[name]
    d = dict(cfg)
    known = {"codec", "preset", "tune", "params", "crf"}
    unknown = sorted(set(d) - known)
    if unknown:
        raise InputError(f"anchor {name}: unknown setting(s) {unknown}")
    if "codec" not in d:
        raise InputError(f"anchor {name}: needs a codec (libx264 or libx265)")
    crf = d.pop("crf", DEFAULT_CRF)
    crf = (crf,) if isinstance(crf, (int, float)) else tuple(int(c) for c in crf)
    return AnchorSpec(name, crf=crf, **d)


@dataclass
class AnchorStream:
    """One encoded anchor stream.

    Attributes:
        path: the elementary-stream file.
        bytes: its size (the sum of the packet bytes).
        frame_bytes: packet bytes of each frame, in display order.
        keyframes: display indices of the I-frames.
        encode_seconds: encoder wall time (frames in, packets out).
    """

    path: Path
    bytes: int
    frame_bytes: list[int]
    keyframes: list[int] = field(default_factory=list)
    encode_seconds: float = 0.0


def _frame_from_planes(planes: tuple[np.ndarray, np.ndarray, np.ndarray]):
    import av

    y, u, v = planes
    h, w = y.shape
    if h % 2 or w % 2:
        raise InputError(f"the anchors need an even frame size, got {w}x{h}")
    data = np.concatenate([y.ravel(), u.ravel(), v.ravel()]).reshape(h * 3 // 2, w)
    return av.VideoFrame.from_ndarray(data, format="yuv420p")


def planes_of(frame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(Y, U, V)`` uint8 planes of a decoded 8-bit 4:2:0 PyAV frame."""
    if frame.format.name != "yuv420p":
        frame = frame.reformat(format="yuv420p")
    w, h = frame.width, frame.height
    sizes = ((w, h), ((w + 1) // 2, (h + 1) // 2), ((w + 1) // 2, (h + 1) // 2))
    out = []
    for plane, (pw, ph) in zip(frame.planes, sizes):
        a = np.frombuffer(plane, dtype=np.uint8).reshape(-1, plane.line_size)
        out.append(a[:ph, :pw].copy())
    return out[0], out[1], out[2]


def encode_anchor(
    frames: Iterable[tuple[np.ndarray, np.ndarray, np.ndarray]],
    spec: AnchorSpec,
    crf: int,
    gop: int,
    path: str | Path,
    fps: Fraction | float | None = None,
) -> AnchorStream:
    """Encode 8-bit 4:2:0 frames to a raw elementary-stream file.

    Args:
        frames: ``(Y, U, V)`` uint8 planes, all of one even size.
        spec: the anchor.
        crf: the rate point.
        gop: intra period; ``<= 0``: only the first frame is intra.
        path: the output file (written atomically).
        fps: frame rate (25 if unknown); only the encoder's rate control sees it.

    Raises:
        InputError: no frames, an odd size, or an encoder failure.
    """
    import av

    path = Path(path)
    rate = Fraction(fps).limit_denominator(1001) if fps else Fraction(25)
    tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
    ctx = None
    pts_bytes: dict[int, int] = {}
    keyframes: list[int] = []
    total = n = 0
    elapsed = 0.0
    try:
        with open(tmp, "wb") as fh:

            def emit(packets) -> None:
                nonlocal total
                for p in packets:
                    data = bytes(p)
                    fh.write(data)
                    total += len(data)
                    pts_bytes[int(p.pts)] = pts_bytes.get(int(p.pts), 0) + len(data)
                    if p.is_keyframe:
                        keyframes.append(int(p.pts))

            for planes in frames:
                frame = _frame_from_planes(planes)
                if ctx is None:
                    ctx = av.CodecContext.create(spec.codec, "w")
                    ctx.width, ctx.height = frame.width, frame.height
                    ctx.pix_fmt = "yuv420p"
                    ctx.time_base = 1 / rate
                    ctx.framerate = rate
                    ctx.options = spec.options(crf, gop)
                frame.pts = n
                t0 = time.perf_counter()
                emit(ctx.encode(frame))
                elapsed += time.perf_counter() - t0
                n += 1
            if ctx is None:
                raise InputError("no frames to encode")
            t0 = time.perf_counter()
            emit(ctx.encode(None))
            elapsed += time.perf_counter() - t0
        os.replace(tmp, path)
    except av.error.FFmpegError as e:
        raise InputError(f"{spec.name} (crf {crf}) failed: {e}") from None
    finally:
        tmp.unlink(missing_ok=True)
    if path.stat().st_size != total:
        raise InputError(f"{path}: {path.stat().st_size} bytes written, {total} coded")
    return AnchorStream(
        path, total, [pts_bytes.get(i, 0) for i in range(n)], sorted(keyframes), elapsed
    )


def decode_anchor(
    path: str | Path, codec: str
) -> Iterator[tuple[tuple[np.ndarray, np.ndarray, np.ndarray], float]]:
    """Decode an elementary-stream file; yields ``(planes, seconds)`` per frame
    in display order (``seconds``: decoder time since the previous frame)."""
    import av

    fmt = ELEMENTARY[codec][0]
    try:
        container = av.open(str(path), format=fmt)
    except av.error.FFmpegError as e:
        raise InputError(f"cannot open {path} as {fmt}: {e}") from None
    with container:
        it = container.decode(video=0)
        while True:
            t0 = time.perf_counter()
            try:
                frame = next(it)
            except StopIteration:
                return
            planes = planes_of(frame)
            yield planes, time.perf_counter() - t0
