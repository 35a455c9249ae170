"""Classical (non-learned) image codecs behind the same plug-in contract.

* ``x265-intra``: H.265/HEVC all-intra through PyAV's libx265, the role BPG
  (Bellard's H.265-intra image format) plays for the I-frames of DVC (Lu et al.,
  CVPR 2019) and OpenDVC. BT.601 full-range YCbCr (as JFIF and BPG use),
  4:2:0 by default (BPG's default) or 4:4:4; quality index ``i`` of ``Q`` codes at
  QP ``levels[i]``, by default ``37 .. 22`` (DVC's BPG QPs for lambda 256 .. 2048).
* ``jpeg``: ISO/IEC 10918-1 through Pillow (libjpeg), optimised Huffman tables,
  4:2:0 by default; ``levels`` are Pillow quality factors.
* ``webp``: lossy WebP (VP8 intra) through Pillow (libwebp), always 4:2:0;
  ``levels`` are libwebp quality factors.

What of :mod:`image_codecs.base`'s contract they keep: ``compress`` returns real
bytes and the exact reconstruction the decoder produces (the encoder decodes its
own bytes); ``decompress`` is deterministic (integer colour and chroma
arithmetic of our own, then a fixed-precision float64 matrix, no thread-count
dependence); ``num_qualities`` rate points ordered by rate; damaged streams raise
:class:`~dvc_common.BitstreamError`. What they do not: they have no weights,
are not differentiable and cannot be trained (``learned = False``; training
refuses them as a trained part), and they code 3-channel RGB only (no flow).
``forward`` codes for real and reports the exact bits as likelihoods (one
``2**-8`` per byte), so a P-frame run with ``ref: intra`` can train against
their I-frames, as DVC trained against BPG's.

The decoder depends on nothing but the bytes: chroma format, QP and size are in
each stream, so a ``.dvc`` file's fingerprint holds only the codec's name and a
decoder builds it from that name alone.
"""

from __future__ import annotations

import io
import warnings
from fractions import Fraction
from typing import Any, ClassVar

import numpy as np
import torch

from dvc_common import BitstreamError

from .base import CompressionModel, ImageCodec, expect_streams, register_codec

# JFIF / BPG: BT.601 full range.
_KR, _KB = 0.299, 0.114
_KG = 1.0 - _KR - _KB


def _to_uint8(x: torch.Tensor) -> np.ndarray:
    """``3 x H x W`` float in [0, 1] -> ``H x W x 3`` uint8 (round half up)."""
    a = (x.detach().float().clamp(0.0, 1.0) * 255.0 + 0.5).floor().to(torch.uint8)
    return a.permute(1, 2, 0).contiguous().cpu().numpy()


def _from_uint8(rgb: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(rgb, np.uint8)).permute(2, 0, 1).float() / 255.0


def rgb_to_ycbcr(rgb: np.ndarray) -> np.ndarray:
    """uint8 RGB ``H x W x 3`` -> uint8 Y, Cb, Cr ``3 x H x W`` (BT.601 full range)."""
    r, g, b = (rgb[..., i].astype(np.float64) for i in range(3))
    y = _KR * r + _KG * g + _KB * b
    cb = (b - y) / (2 * (1 - _KB)) + 128.0
    cr = (r - y) / (2 * (1 - _KR)) + 128.0
    return np.clip(np.floor(np.stack([y, cb, cr]) + 0.5), 0, 255).astype(np.uint8)


def ycbcr_to_rgb(ycc: np.ndarray) -> np.ndarray:
    """Inverse of :func:`rgb_to_ycbcr`: uint8 ``3 x H x W`` -> uint8 ``H x W x 3``."""
    y, cb, cr = (ycc[i].astype(np.float64) for i in range(3))
    cb, cr = cb - 128.0, cr - 128.0
    r = y + 2 * (1 - _KR) * cr
    b = y + 2 * (1 - _KB) * cb
    g = (y - _KR * r - _KB * b) / _KG
    return np.clip(np.floor(np.stack([r, g, b], -1) + 0.5), 0, 255).astype(np.uint8)


def downsample_chroma(c: np.ndarray) -> np.ndarray:
    """2x2 mean of an even-sized uint8 plane, rounded (integer arithmetic)."""
    s = c.astype(np.int32)
    s = s[0::2, 0::2] + s[1::2, 0::2] + s[0::2, 1::2] + s[1::2, 1::2]
    return ((s + 2) >> 2).astype(np.uint8)


def upsample_chroma(c: np.ndarray) -> np.ndarray:
    """2x upsampling with the (1, 3)/4 filter per axis (libjpeg's "fancy"
    upsampling: each output sample sits a quarter step from its two nearest
    inputs), in integers with one rounding, so it is exact everywhere."""

    def axis(a: np.ndarray, ax: int) -> np.ndarray:
        prev = np.concatenate([a.take([0], ax), a.take(range(a.shape[ax] - 1), ax)], ax)
        nxt = np.concatenate([a.take(range(1, a.shape[ax]), ax), a.take([-1], ax)], ax)
        out = np.empty(a.shape[:ax] + (2 * a.shape[ax],) + a.shape[ax + 1 :], np.int32)
        idx = [slice(None)] * a.ndim
        idx[ax] = slice(0, None, 2)
        out[tuple(idx)] = 3 * a + prev
        idx[ax] = slice(1, None, 2)
        out[tuple(idx)] = 3 * a + nxt
        return out

    s = axis(axis(c.astype(np.int32), 0), 1)  # 16x the value
    return ((s + 8) >> 4).astype(np.uint8)


class ClassicalCodec(ImageCodec):
    """Base of the non-learned codecs: per-image coding with a native quality
    parameter (``levels[i]`` for quality index ``i``).

    Args:
        in_channels: must be 3 (RGB).
        num_qualities: rate points.
        levels: the codec's own quality parameter per index, ordered from the
            lowest rate (index 0) to the highest; ``None``: :attr:`default_range`
            spread evenly over ``num_qualities`` (its high end for one point).
    """

    learned = False
    channels = (3,)
    #: Even sizes, for 4:2:0 chroma.
    downsampling_factor = 2
    tiny_config: ClassVar[dict[str, Any]] = {}
    #: (index 0's level, the top index's level), the valid span, and whether a
    #: higher level means more bits.
    default_range: ClassVar[tuple[int, int]] = (20, 90)
    valid: ClassVar[tuple[int, int]] = (1, 100)
    ascending: ClassVar[bool] = True
    #: The decoder depends on no constructor argument: each stream says it all.
    decode_kwargs = ()

    def __init__(
        self,
        in_channels: int = 3,
        num_qualities: int = 1,
        levels: list[int] | None = None,
    ) -> None:
        CompressionModel.__init__(self)  # no gains: nothing is learned
        name = type(self).__name__
        if in_channels != 3:
            raise ValueError(f"{name} codes RGB images only (in_channels=3)")
        if num_qualities < 1:
            raise ValueError(f"num_qualities must be >= 1, got {num_qualities}")
        self.in_channels, self.num_qualities = 3, int(num_qualities)
        if levels is None:
            lo, hi = self.default_range
            if self.num_qualities == 1:
                levels = [hi]
            else:
                levels = (
                    np.rint(np.linspace(lo, hi, self.num_qualities))
                    .astype(int)
                    .tolist()
                )
        levels = [int(v) for v in levels]
        if len(levels) != self.num_qualities:
            raise ValueError(
                f"{name}: {len(levels)} levels for {self.num_qualities} rate points"
            )
        a, b = self.valid
        if any(not a <= v <= b for v in levels):
            raise ValueError(f"{name}: levels must lie in {a}..{b}, got {levels}")
        step = np.diff(levels) if self.ascending else -np.diff(levels)
        if (step <= 0).any():
            order = "increase" if self.ascending else "decrease"
            raise ValueError(
                f"{name}: levels must {order} from index 0 (lowest rate), got {levels}"
            )
        self.levels = levels

    # -- one image ----------------------------------------------------------------
    def encode_image(self, rgb: np.ndarray, level: int) -> bytes:
        raise NotImplementedError

    def decode_image(self, data: bytes) -> np.ndarray:
        """bytes -> uint8 ``H x W x 3``; BitstreamError on anything else."""
        raise NotImplementedError

    # -- the contract -------------------------------------------------------------
    def _levels_of(self, quality: Any, batch: int) -> list[int]:
        q = self._quality_index(quality, batch)
        return (
            [self.levels[-1]] * batch if q is None else [self.levels[int(i)] for i in q]
        )

    def _code(self, x: torch.Tensor, quality: Any) -> tuple[list[bytes], torch.Tensor]:
        self.check_input(x)
        datas, outs = [], []
        for img, level in zip(x, self._levels_of(quality, x.shape[0])):
            data = self.encode_image(_to_uint8(img), level)
            datas.append(data)
            # The reconstruction is the decoder's, from these very bytes.
            outs.append(_from_uint8(self.decode_image(data)))
        return datas, torch.stack(outs).to(x.device)

    def forward(self, x: torch.Tensor, quality: Any = None) -> dict[str, Any]:
        with torch.no_grad():
            datas, x_hat = self._code(x, quality)
        n = max(len(d) for d in datas)
        lik = torch.ones(x.shape[0], n, device=x.device)
        for i, d in enumerate(datas):
            lik[i, : len(d)] = 2.0**-8  # -log2 sums to the real bits
        return {"x_hat": x_hat, "likelihoods": {"bytes": lik}}

    def compress(self, x: torch.Tensor, quality: Any = None) -> dict[str, Any]:
        datas, x_hat = self._code(x, quality)
        return {"strings": [datas], "shape": [int(x.shape[-2]), int(x.shape[-1])],
                "x_hat": x_hat}  # fmt: skip

    def decompress(
        self, strings: Any, shape: Any, quality: Any = None
    ) -> dict[str, Any]:
        (datas,) = expect_streams(strings, 1)
        try:
            h, w = (int(v) for v in shape)
        except (TypeError, ValueError):
            raise BitstreamError(
                f"shape must be (height, width), got {shape!r}"
            ) from None
        outs = []
        for data in datas:
            rgb = self.decode_image(bytes(data))
            if rgb.shape != (h, w, 3):
                raise BitstreamError(
                    f"{self.registry_name} stream decodes to {rgb.shape[1]}x"
                    f"{rgb.shape[0]}, the payload says {w}x{h}"
                )
            outs.append(_from_uint8(rgb))
        return {"x_hat": torch.stack(outs)}

    def update(self, scale_table: Any = None, force: bool = False) -> bool:
        return False  # no entropy-coder tables: the library codes

    def aux_loss(self) -> torch.Tensor:
        return torch.zeros(())


@register_codec("x265-intra")
class X265Intra(ClassicalCodec):
    """H.265/HEVC all-intra (libx265 through PyAV), BPG's role in DVC.

    Lu et al., "DVC: An End-to-end Deep Video Compression Framework", CVPR 2019,
    code their I-frames with BPG (F. Bellard, https://bellard.org/bpg/), i.e.
    HEVC intra on YCbCr; this codes the same kind of stream with libx265.

    Args:
        levels: QPs (0..51) per quality index, decreasing; default 37 .. 22.
        chroma: ``"420"`` (BPG's default) or ``"444"``.
        preset: libx265 preset (speed / efficiency).
    """

    default_range = (37, 22)
    valid = (0, 51)
    ascending = False

    def __init__(
        self,
        in_channels: int = 3,
        num_qualities: int = 1,
        levels: list[int] | None = None,
        chroma: str = "420",
        preset: str = "medium",
    ) -> None:
        super().__init__(in_channels, num_qualities, levels)
        if str(chroma) not in ("420", "444"):
            raise ValueError(
                f"x265-intra: chroma must be '420' or '444', got {chroma!r}"
            )
        self.chroma, self.preset = str(chroma), str(preset)

    def encode_image(self, rgb: np.ndarray, level: int) -> bytes:
        import av

        h, w = rgb.shape[:2]
        planes = list(rgb_to_ycbcr(rgb))
        if self.chroma == "420":
            planes[1:] = [downsample_chroma(c) for c in planes[1:]]
        fmt = "yuv420p" if self.chroma == "420" else "yuv444p"
        ctx = av.CodecContext.create("libx265", "w")
        ctx.width, ctx.height, ctx.pix_fmt = w, h, fmt
        ctx.time_base = Fraction(1, 25)
        # info=0: no SEI with the encoder's version and options (hundreds of
        # bytes BPG does not carry); one thread pool-free, so runs repeat.
        ctx.options = {
            "preset": self.preset,
            "x265-params": f"qp={level}:keyint=1:info=0:log-level=none:"
            "frame-threads=1:pools=none:wpp=0",
        }
        frame = av.VideoFrame(w, h, fmt)
        for plane, arr in zip(frame.planes, planes):
            buf = np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)
            buf[:, : arr.shape[1]] = arr
        frame.pts = 0
        packets = list(ctx.encode(frame)) + list(ctx.encode(None))
        return b"".join(bytes(p) for p in packets)

    def decode_image(self, data: bytes) -> np.ndarray:
        import av

        if not data:
            raise BitstreamError("x265-intra: empty stream")
        ctx = av.CodecContext.create("hevc", "r")
        ctx.thread_count = 1
        try:
            frames = list(ctx.decode(av.Packet(data))) + list(ctx.decode(None))
        except av.error.FFmpegError as e:
            raise BitstreamError(f"x265-intra: undecodable HEVC stream ({e})") from None
        if len(frames) != 1 or frames[0].format.name not in ("yuv420p", "yuv444p"):
            raise BitstreamError(
                "x265-intra: the stream is not one 8-bit intra picture"
            )
        f = frames[0]
        planes = [
            np.frombuffer(p, np.uint8).reshape(p.height, p.line_size)[:, : p.width]
            for p in f.planes
        ]
        if f.format.name == "yuv420p":
            if f.width % 2 or f.height % 2:
                raise BitstreamError("x265-intra: a 4:2:0 picture of odd size")
            planes[1:] = [upsample_chroma(c) for c in planes[1:]]
        return ycbcr_to_rgb(np.stack(planes))


class _PillowCodec(ClassicalCodec):
    format: ClassVar[str] = ""

    def save_options(self, level: int) -> dict[str, Any]:
        raise NotImplementedError

    def encode_image(self, rgb: np.ndarray, level: int) -> bytes:
        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray(rgb, "RGB").save(buf, self.format, **self.save_options(level))
        return buf.getvalue()

    def decode_image(self, data: bytes) -> np.ndarray:
        from PIL import Image

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error")  # Pillow warns on truncated data
                im = Image.open(io.BytesIO(data), formats=[self.format])
                im.load()
        except Exception as e:  # PIL raises OSError, SyntaxError, ValueError, ...
            raise BitstreamError(
                f"{self.registry_name}: undecodable stream ({e})"
            ) from None
        if im.mode != "RGB":
            raise BitstreamError(f"{self.registry_name}: a {im.mode} image, not RGB")
        return np.asarray(im, dtype=np.uint8)


@register_codec("jpeg")
class JPEG(_PillowCodec):
    """Baseline JPEG (ITU-T T.81 / ISO/IEC 10918-1) through Pillow's libjpeg.

    Args:
        levels: quality factors (1..100) per index, increasing; default 20 .. 90.
        chroma: ``"420"`` or ``"444"``.
    """

    format = "JPEG"

    def __init__(
        self,
        in_channels: int = 3,
        num_qualities: int = 1,
        levels: list[int] | None = None,
        chroma: str = "420",
    ) -> None:
        super().__init__(in_channels, num_qualities, levels)
        if str(chroma) not in ("420", "444"):
            raise ValueError(f"jpeg: chroma must be '420' or '444', got {chroma!r}")
        self.chroma = str(chroma)

    def save_options(self, level: int) -> dict[str, Any]:
        sub = {"420": "4:2:0", "444": "4:4:4"}[self.chroma]
        return {"quality": level, "subsampling": sub, "optimize": True}


@register_codec("webp")
class WebP(_PillowCodec):
    """Lossy WebP (VP8 key frames, Google) through Pillow's libwebp; 4:2:0.

    Args:
        levels: quality factors (1..100) per index, increasing; default 20 .. 90.
        method: libwebp effort 0 (fast) .. 6 (smallest files).
    """

    format = "WEBP"

    def __init__(
        self,
        in_channels: int = 3,
        num_qualities: int = 1,
        levels: list[int] | None = None,
        method: int = 6,
    ) -> None:
        super().__init__(in_channels, num_qualities, levels)
        if not 0 <= int(method) <= 6:
            raise ValueError(f"webp: method must be 0..6, got {method}")
        self.method = int(method)

    def save_options(self, level: int) -> dict[str, Any]:
        return {"quality": level, "method": self.method, "exact": False}
