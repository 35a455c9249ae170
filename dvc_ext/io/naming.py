"""Frame size, rate and format from raw YUV file names (CTC, UVG and similar).

Raw ``.yuv`` files carry no header, so the test-sequence conventions put the
geometry in the name. Recognised (``_`` or ``-`` separated tokens, any case):

=========================================  =====================================
``BasketballPass_416x240_50.yuv``           HEVC CTC: size, then a bare frame rate
``RaceHorses_832x480_30Hz_8bit_P420.yuv``   CTC excerpts: ``Hz``, bit depth, chroma
``Beauty_1920x1080_120fps_420_8bit_YUV``    UVG: ``fps``, ``420``, bit depth
``BasketballPass_2frames_416x240_50Hz...``  a frame-count token (informational)
``RTn23_80x44p15_f15.yuv``                  ``p<rate>`` after the size, ``f<count>``
``foreman_cif.yuv``, ``akiyo_qcif.yuv``     named sizes (``sqcif`` .. ``16cif``)
=========================================  =====================================

Decimal rates such as ``29.97`` or ``59.94`` map to the NTSC fractions
(``30000/1001`` ...). A bit depth other than 8 or a chroma format other than
4:2:0 is reported so the reader can refuse it clearly.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

NAMED_SIZES: dict[str, tuple[int, int]] = {
    "sqcif": (128, 96),
    "qcif": (176, 144),
    "cif": (352, 288),
    "4cif": (704, 576),
    "16cif": (1408, 1152),
    "sif": (352, 240),
}

_NTSC = {
    "23.976": Fraction(24000, 1001),
    "23.98": Fraction(24000, 1001),
    "29.97": Fraction(30000, 1001),
    "59.94": Fraction(60000, 1001),
    "119.88": Fraction(120000, 1001),
}

_SIZE = re.compile(r"(\d{1,5})x(\d{1,5})(?:p(\d+(?:\.\d+)?))?", re.IGNORECASE)
_RATE = re.compile(r"(\d+(?:\.\d+)?)(?:fps|hz)", re.IGNORECASE)
_BARE_RATE = re.compile(r"\d+(?:\.\d+)?")
_BITS = re.compile(r"(\d{1,2})bits?", re.IGNORECASE)
_FRAMES = re.compile(r"(\d+)frames|f(\d+)", re.IGNORECASE)
_CHROMA = re.compile(
    r"(?:p|i|yuv)?(400|420|422|444)(?:p|jpeg|mpeg2|paldv)?", re.IGNORECASE
)


@dataclass(frozen=True)
class YUVName:
    """What a raw YUV file name says; ``None`` where it says nothing.

    Attributes:
        width, height: luma size in pixels.
        fps: frames per second.
        bit_depth: bits per sample (8 or 10 ...).
        chroma: ``"420"``, ``"422"``, ``"444"`` or ``"400"``.
        num_frames: a frame count written in the name (informational only;
            the file size decides).
    """

    width: int | None = None
    height: int | None = None
    fps: Fraction | None = None
    bit_depth: int | None = None
    chroma: str | None = None
    num_frames: int | None = None


def _rate(text: str) -> Fraction:
    return _NTSC.get(text) or Fraction(text)


def parse_yuv_name(path: str | Path) -> YUVName:
    """Parse the geometry conventions of raw YUV file names (see module doc).

    Never raises: an unrecognised name gives a :class:`YUVName` of ``None``s.
    """
    stem = Path(path).name
    if stem.lower().endswith(".yuv"):
        stem = stem[:-4]
    tokens = [t for t in re.split(r"[_\-\s]+", stem) if t]
    width = height = bits = frames = None
    fps: Fraction | None = None
    chroma = None
    size_at = None
    for i, tok in enumerate(tokens):
        low = tok.lower()
        m = _SIZE.fullmatch(tok)
        if m and size_at is None:
            width, height, size_at = int(m[1]), int(m[2]), i
            if m[3]:
                fps = _rate(m[3])
            continue
        if low in NAMED_SIZES and size_at is None:
            (width, height), size_at = NAMED_SIZES[low], i
            continue
        if (m := _RATE.fullmatch(tok)) and fps is None:
            fps = _rate(m[1])
        elif m := _BITS.fullmatch(tok):
            bits = int(m[1])
        elif m := _FRAMES.fullmatch(tok):
            frames = int(m[1] or m[2])
        elif m := _CHROMA.fullmatch(tok):
            chroma = m[1]
    # A bare number right after the size is the CTC frame rate ("_416x240_50").
    if fps is None and size_at is not None and size_at + 1 < len(tokens):
        nxt = tokens[size_at + 1]
        if _BARE_RATE.fullmatch(nxt) and nxt not in ("400", "420", "422", "444"):
            fps = _rate(nxt)
    if fps is not None and fps <= 0:
        fps = None
    return YUVName(width, height, fps, bits, chroma, frames)
