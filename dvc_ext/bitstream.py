"""The ``.dvc`` file: a header, then one CRC-checked record per frame.

The byte layout and the version policy are specified in ``docs/bitstream.md``;
this module is its reference implementation. In short::

    header  "DVCX" | major u8 | minor u8 | body length u16 | body | CRC32
    frame   type<<6|quality u8 | varint n | n varint lengths | n sub-streams | CRC32

A damaged or truncated file raises :class:`~dvc_common.BitstreamError` naming
what is wrong and where, before any entropy decoder sees a byte; every size is
checked against its bound and against the bytes left in the file before
anything is allocated, so a hostile file cannot make the reader hang or
allocate more than the file's size.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import secrets
import struct
import zlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

from dvc_common import (
    BitstreamError,
    InputError,
    ModelMismatchError,
    decode_varint,
    encode_varint,
)

MAGIC = b"DVCX"
#: (major, minor) written by this implementation.
VERSION = (1, 1)
#: 1.1: the file may hold :data:`FRAME_PM` records (P-frames that name their
#: prediction). A 1.0 reader refuses the flag rather than misread those frames.
FLAG_PRED_MODES = 0x01
#: Flag bits this implementation understands: a file with any other flag bit
#: set is refused, since a flag marks a feature that changes how frames decode.
KNOWN_FLAGS = FLAG_PRED_MODES

FRAME_I = 0
FRAME_P = 1
#: A P-frame whose first sub-stream is a one-byte prediction mode (see
#: :mod:`dvc_ext.pframe`); allowed only in a file with :data:`FLAG_PRED_MODES`.
FRAME_PM = 2
FRAME_TYPES = {FRAME_I: "I", FRAME_P: "P", FRAME_PM: "P"}
#: Sub-stream kinds of each frame type, in file order.
SUBSTREAM_KINDS: dict[int, tuple[str, ...]] = {
    FRAME_I: ("intra",),
    FRAME_P: ("motion", "residual"),
    FRAME_PM: ("mode", "motion", "residual"),
}

MAX_SIDE = 16384
MAX_FRAMES = 10_000_000
MAX_NAME = 64
MAX_QUALITY = 63  # 6 bits of the frame header byte
MAX_SUBSTREAMS = 8
MAX_HEADER_BODY = 4096
FINGERPRINT_SIZES = (16, 32)

COLOR_FORMATS = ("rgb", "yuv420")
MATRICES = ("bt601", "bt709")

_PREFIX = struct.Struct("<4sBBH")  # magic, major, minor, body length
_FIXED = struct.Struct("<HHIIIIBBBB")  # see docs/bitstream.md, offsets 8..31
_CRC = struct.Struct("<I")

__all__ = [
    "BitstreamError",
    "ModelMismatchError",
    "FRAME_I",
    "FRAME_P",
    "FRAME_PM",
    "FLAG_PRED_MODES",
    "MAGIC",
    "VERSION",
    "BitstreamReader",
    "BitstreamWriter",
    "ByteCounts",
    "FrameRecord",
    "Header",
    "check_fingerprint",
    "count_bytes",
    "decode_header",
    "decode_varint",
    "encode_header",
    "encode_varint",
    "fingerprint",
]


@dataclass
class Header:
    """Everything a decoder needs before the first frame.

    Attributes:
        width, height: frame size in pixels (1..16384), before any padding.
        frame_count: frames in the file (1..10^7). ``0`` when writing: the
            writer fills in the number of frames written.
        intra_period: an I-frame every this many frames; ``0`` (or negative
            when writing): the first frame only.
        fps: frame rate, ``None`` when unknown.
        color_format: what the source was, ``"rgb"`` or ``"yuv420"``; with
            ``matrix`` and ``full_range`` it tells a decoder how to write YUV
            output that matches the source.
        matrix: ``"bt601"`` or ``"bt709"``.
        full_range: full-range (else limited-range) Y'CbCr.
        quality: the quality index the encoder was asked for (0..63; each
            frame records its own too).
        coding_threads: torch thread count of the entropy-parameter path
            (1..255); the decoder must use the same.
        intra_codec, motion_codec, residual_codec: registry names (ASCII,
            at most 64 bytes; empty for "none").
        fingerprint: 16 or 32 bytes identifying the decoder's config and
            weights (see :func:`fingerprint`).
        version: ``(major, minor)`` as read; the writer always writes
            :data:`VERSION`.
        flags: feature flags (:data:`FLAG_PRED_MODES`; none in 1.0).
    """

    width: int
    height: int
    frame_count: int = 0
    intra_period: int = 0
    fps: Fraction | None = None
    color_format: str = "rgb"
    matrix: str = "bt601"
    full_range: bool = False
    quality: int = 0
    coding_threads: int = 1
    intra_codec: str = ""
    motion_codec: str = ""
    residual_codec: str = ""
    fingerprint: bytes = field(default=bytes(32), repr=False)
    version: tuple[int, int] = VERSION
    flags: int = 0


class FrameRecord(NamedTuple):
    """One frame record: ``frame_type`` (:data:`FRAME_I` / :data:`FRAME_P`),
    ``quality`` (0..63) and its sub-streams (I: ``[intra]``; P: ``[motion,
    residual]``)."""

    frame_type: int
    quality: int
    substreams: list[bytes]


@dataclass
class ByteCounts:
    """Where the bytes of a file go; ``total`` equals the file size.

    Attributes:
        header: the file header, CRC included.
        frame_overhead: per-frame header bytes, varint lengths and CRCs.
        intra, motion, residual: sub-stream payload bytes by kind.
    """

    header: int = 0
    frame_overhead: int = 0
    intra: int = 0
    motion: int = 0
    residual: int = 0

    @property
    def total(self) -> int:
        return (
            self.header + self.frame_overhead + self.intra + self.motion + self.residual
        )

    def as_dict(self) -> dict[str, int]:
        return {
            "header": self.header,
            "frame_overhead": self.frame_overhead,
            "intra": self.intra,
            "motion": self.motion,
            "residual": self.residual,
            "total": self.total,
        }

    def _add_frame(self, frame_type: int, substreams: list[bytes], record: int) -> None:
        payload = 0
        for kind, s in zip(SUBSTREAM_KINDS[frame_type], substreams):
            if kind == "mode":  # per-frame signalling: counted as overhead
                continue
            setattr(self, kind, getattr(self, kind) + len(s))
            payload += len(s)
        self.frame_overhead += record - payload


# -- header -----------------------------------------------------------------------


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise BitstreamError(msg)


def _encode_name(what: str, name: str) -> bytes:
    try:
        raw = name.encode("ascii")
    except (UnicodeEncodeError, AttributeError):
        raise BitstreamError(f"{what} name {name!r} is not an ASCII string") from None
    _check(
        len(raw) <= MAX_NAME, f"{what} name {name!r} is longer than {MAX_NAME} bytes"
    )
    _check(
        all(0x21 <= b <= 0x7E for b in raw),
        f"{what} name {name!r} has a space or non-printable character",
    )
    return bytes([len(raw)]) + raw


def encode_header(h: Header) -> bytes:
    """The header's bytes (CRC included), always at :data:`VERSION`.

    Raises:
        BitstreamError: a field out of its bounds.
    """
    _check(1 <= h.width <= MAX_SIDE and 1 <= h.height <= MAX_SIDE,
           f"size {h.width}x{h.height} out of bounds (1..{MAX_SIDE} per side)")  # fmt: skip
    _check(0 <= h.frame_count <= MAX_FRAMES,
           f"frame count {h.frame_count} out of bounds (0..{MAX_FRAMES})")  # fmt: skip
    period = max(int(h.intra_period), 0)
    _check(period < 2**32, f"intra period {h.intra_period} out of bounds")
    if h.fps is None:
        num = den = 0
    else:
        fps = Fraction(h.fps).limit_denominator(2**31)
        num, den = fps.numerator, fps.denominator
        _check(0 < num < 2**32 and 0 < den < 2**32, f"fps {h.fps} out of bounds")
    _check(h.color_format in COLOR_FORMATS,
           f"colour format {h.color_format!r} is not one of {COLOR_FORMATS}")  # fmt: skip
    _check(h.matrix in MATRICES, f"matrix {h.matrix!r} is not one of {MATRICES}")
    color = COLOR_FORMATS.index(h.color_format)
    color |= MATRICES.index(h.matrix) << 2 | int(bool(h.full_range)) << 3
    _check(
        0 <= h.quality <= MAX_QUALITY, f"quality {h.quality} out of 0..{MAX_QUALITY}"
    )
    _check(1 <= h.coding_threads <= 255,
           f"coding thread count {h.coding_threads} out of 1..255")  # fmt: skip
    fp = bytes(h.fingerprint)
    _check(len(fp) in FINGERPRINT_SIZES,
           f"fingerprint must be 16 or 32 bytes, got {len(fp)}")  # fmt: skip
    body = _FIXED.pack(
        h.width, h.height, h.frame_count, period, num, den,
        color, h.quality, h.coding_threads, KNOWN_FLAGS & h.flags,
    )  # fmt: skip
    body += _encode_name("intra codec", h.intra_codec)
    body += _encode_name("motion codec", h.motion_codec)
    body += _encode_name("residual codec", h.residual_codec)
    body += bytes([len(fp)]) + fp
    head = _PREFIX.pack(MAGIC, VERSION[0], VERSION[1], len(body)) + body
    return head + _CRC.pack(zlib.crc32(head))


def _read_exact(f: BinaryIO, n: int, pos: int, what: str) -> bytes:
    buf = f.read(n)
    if len(buf) != n:
        raise BitstreamError(
            f"truncated at byte {pos + len(buf)}: {what} needs {n} bytes from byte "
            f"{pos}, the file has {len(buf)}"
        )
    return buf


def decode_header(f: BinaryIO) -> tuple[Header, int]:
    """Read and check the header at the stream's current position (0).

    Returns:
        ``(header, header_bytes)``.

    Raises:
        BitstreamError: bad magic, a newer major version, unknown flags, a size
            out of bounds, a CRC mismatch or truncation.
    """
    prefix = f.read(_PREFIX.size)
    if not prefix:
        raise BitstreamError("empty file: not a .dvc bitstream")
    if not MAGIC.startswith(prefix[:4]):
        raise BitstreamError(
            f"bad magic {prefix[:4]!r}: not a .dvc bitstream (expected {MAGIC!r})"
        )
    _check(
        len(prefix) == _PREFIX.size,
        f"truncated at byte {len(prefix)}: the header needs at least {_PREFIX.size}",
    )
    _, major, minor, body_len = _PREFIX.unpack(prefix)
    if major > VERSION[0]:
        raise BitstreamError(
            f"unsupported newer bitstream version {major}.{minor} (this decoder reads "
            f"{VERSION[0]}.x); upgrade dvc-ext to decode it"
        )
    _check(major == VERSION[0], f"unknown bitstream version {major}.{minor}")
    _check(
        _FIXED.size + 3 + 1 + 16 <= body_len <= MAX_HEADER_BODY,
        f"header length {body_len} out of bounds ({_FIXED.size + 20}.."
        f"{MAX_HEADER_BODY})",
    )
    rest = _read_exact(f, body_len + _CRC.size, _PREFIX.size, "the header")
    body, (crc,) = rest[:body_len], _CRC.unpack(rest[body_len:])
    if zlib.crc32(prefix + body) != crc:
        raise BitstreamError(
            f"header CRC mismatch (stored {crc:08x}, computed "
            f"{zlib.crc32(prefix + body):08x}): the file is damaged"
        )
    (width, height, count, period, num, den, color, quality, threads, flags) = (
        _FIXED.unpack_from(body)
    )
    _check(1 <= width <= MAX_SIDE and 1 <= height <= MAX_SIDE,
           f"frame size {width}x{height} out of bounds (1..{MAX_SIDE} per side)")  # fmt: skip
    _check(
        1 <= count <= MAX_FRAMES, f"frame count {count} out of bounds (1..{MAX_FRAMES})"
    )
    _check((num == 0) == (den == 0), f"bad frame rate {num}/{den}")
    _check(color & 0x03 < len(COLOR_FORMATS) and not color & 0xF0,
           f"unknown colour format byte 0x{color:02x}")  # fmt: skip
    _check(quality <= MAX_QUALITY, f"quality {quality} out of 0..{MAX_QUALITY}")
    _check(threads >= 1, "coding thread count 0")
    if flags & ~KNOWN_FLAGS:
        raise BitstreamError(
            f"the file uses feature flags 0x{flags & ~KNOWN_FLAGS:02x} that this "
            f"decoder ({VERSION[0]}.{VERSION[1]}) does not know; upgrade dvc-ext"
        )
    pos = _FIXED.size
    names = []
    for what in ("intra codec", "motion codec", "residual codec"):
        n = body[pos]
        _check(n <= MAX_NAME, f"{what} name length {n} out of bounds (0..{MAX_NAME})")
        _check(pos + 1 + n < body_len, "header fields overrun the header length")
        raw = body[pos + 1 : pos + 1 + n]
        _check(all(0x21 <= b <= 0x7E for b in raw), f"{what} name is not ASCII")
        names.append(raw.decode("ascii"))
        pos += 1 + n
    n = body[pos]
    _check(n in FINGERPRINT_SIZES, f"fingerprint length {n} is not 16 or 32")
    _check(pos + 1 + n <= body_len, "header fields overrun the header length")
    fp = bytes(body[pos + 1 : pos + 1 + n])
    # Bytes after the fingerprint are fields of a newer minor version: skipped.
    header = Header(
        width, height, count, period,
        Fraction(num, den) if den else None,
        COLOR_FORMATS[color & 0x03], MATRICES[color >> 2 & 1], bool(color >> 3 & 1),
        quality, threads, *names, fingerprint=fp, version=(major, minor), flags=flags,
    )  # fmt: skip
    return header, _PREFIX.size + body_len + _CRC.size


def check_fingerprint(
    header: Header, expected: bytes, what: str = "this model"
) -> None:
    """Refuse a file written by another model.

    Raises:
        ModelMismatchError: naming both fingerprints (hex).
    """
    if bytes(expected) != header.fingerprint:
        raise ModelMismatchError(
            f"the file was written by a model with fingerprint "
            f"{header.fingerprint.hex()}, but {what} has {bytes(expected).hex()} "
            f"(codecs in the file: intra={header.intra_codec!r}, "
            f"motion={header.motion_codec!r}, residual={header.residual_codec!r}); "
            f"decode it with the checkpoint that encoded it"
        )


# -- frames -----------------------------------------------------------------------


def encode_frame(frame_type: int, quality: int, substreams: Iterable[bytes]) -> bytes:
    """One frame record's bytes (header byte, varints, sub-streams, CRC32).

    Raises:
        BitstreamError: unknown type, quality out of 0..63, or the wrong number
            of sub-streams for the type.
    """
    subs = [bytes(s) for s in substreams]
    _check(frame_type in FRAME_TYPES, f"unknown frame type {frame_type}")
    _check(0 <= quality <= MAX_QUALITY, f"quality {quality} out of 0..{MAX_QUALITY}")
    kinds = SUBSTREAM_KINDS[frame_type]
    _check(
        len(subs) == len(kinds),
        f"a {FRAME_TYPES[frame_type]}-frame has {len(kinds)} sub-stream(s) "
        f"({', '.join(kinds)}), got {len(subs)}",
    )
    rec = bytearray([frame_type << 6 | quality])
    rec += encode_varint(len(subs))
    for s in subs:
        rec += encode_varint(len(s))
    for s in subs:
        rec += s
    rec += _CRC.pack(zlib.crc32(rec))
    return bytes(rec)


def _read_varint(f: BinaryIO, pos: int, what: str) -> tuple[bytes, int]:
    raw = bytearray()
    while True:
        b = f.read(1)
        if not b:
            raise BitstreamError(f"truncated at byte {pos + len(raw)} in {what}")
        raw += b
        if not b[0] & 0x80:
            break
        if len(raw) >= 10:
            raise BitstreamError(f"{what} at byte {pos} is longer than 10 bytes")
    value, _ = decode_varint(bytes(raw), 0)
    return bytes(raw), value


class BitstreamReader:
    """Read a ``.dvc`` file (or its bytes): ``.header``, then iterate frames.

    The header is read and checked on construction. Each iteration opens the
    input afresh and yields :class:`FrameRecord` s one at a time, each checked
    (bounds, CRC) before it is yielded; :attr:`counts` accumulates the byte
    split of what has been read.

    Args:
        source: a path, or the file's bytes.

    Raises:
        BitstreamError: see :func:`decode_header`; a missing file too.
    """

    def __init__(self, source: str | Path | bytes | bytearray | memoryview) -> None:
        if isinstance(source, (bytes, bytearray, memoryview)):
            self.path, self._data = None, bytes(source)
            self.size = len(self._data)
        else:
            self.path, self._data = Path(source), None
            try:
                self.size = self.path.stat().st_size
            except OSError as e:
                raise InputError(f"cannot read {self.path}: {e.strerror}") from None
            if not self.path.is_file():
                raise InputError(f"{self.path} is not a file")
        with self._open() as f:
            self.header, self.header_bytes = decode_header(f)
        self.counts = ByteCounts(header=self.header_bytes)

    def _open(self) -> BinaryIO:
        if self._data is not None:
            return io.BytesIO(self._data)
        try:
            return open(self.path, "rb")
        except OSError as e:
            raise InputError(f"cannot read {self.path}: {e.strerror}") from None

    def __enter__(self) -> BitstreamReader:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def __len__(self) -> int:
        return self.header.frame_count

    def __iter__(self) -> Iterator[FrameRecord]:
        self.counts = ByteCounts(header=self.header_bytes)
        with self._open() as f:
            f.seek(self.header_bytes)
            pos = self.header_bytes
            for k in range(self.header.frame_count):
                rec, pos = self._read_frame(f, k, pos)
                yield rec
            if f.read(1):
                raise BitstreamError(
                    f"trailing data at byte {pos} after the {self.header.frame_count} "
                    f"frames the header announces"
                )

    def _read_frame(self, f: BinaryIO, k: int, pos: int) -> tuple[FrameRecord, int]:
        start = pos
        b = f.read(1)
        if not b:
            raise BitstreamError(
                f"truncated at byte {pos}: the header announces "
                f"{self.header.frame_count} frames, the file ends after {k}"
            )
        ftype, quality = b[0] >> 6, b[0] & 0x3F
        raw = bytearray(b)
        pos += 1
        chunk, n = _read_varint(f, pos, f"frame {k} sub-stream count")
        raw += chunk
        pos += len(chunk)
        _check(
            n <= MAX_SUBSTREAMS,
            f"frame {k}: {n} sub-streams (at most {MAX_SUBSTREAMS})",
        )
        lengths = []
        for i in range(n):
            chunk, ln = _read_varint(f, pos, f"frame {k} sub-stream {i} length")
            raw += chunk
            pos += len(chunk)
            lengths.append(ln)
        need = sum(lengths) + _CRC.size
        if need > self.size - pos:
            raise BitstreamError(
                f"frame {k}: its sub-streams need {need} bytes from byte {pos}, the "
                f"file has {self.size - pos} (truncated or a damaged length)"
            )
        payload = _read_exact(f, need, pos, f"frame {k}")
        raw += payload[:-4]
        (crc,) = _CRC.unpack(payload[-4:])
        if zlib.crc32(raw) != crc:
            raise BitstreamError(
                f"frame {k} CRC mismatch (record at bytes {start}..{pos + need}): the "
                f"file is damaged"
            )
        # Checked after the CRC: a damaged byte reads as "damaged", not as a
        # strange frame type.
        _check(ftype in FRAME_TYPES, f"frame {k} has unknown frame type {ftype}")
        _check(
            ftype != FRAME_PM or self.header.flags & FLAG_PRED_MODES,
            f"frame {k} is a P-frame with a prediction mode, but the header does not "
            f"set the prediction-mode flag",
        )
        kinds = SUBSTREAM_KINDS[ftype]
        _check(
            n == len(kinds),
            f"frame {k}: a {FRAME_TYPES[ftype]}-frame needs {len(kinds)} sub-stream(s),"
            f" found {n}",
        )
        subs, off = [], len(raw) - sum(lengths)
        for ln in lengths:
            subs.append(bytes(raw[off : off + ln]))
            off += ln
        self.counts._add_frame(ftype, subs, pos + need - start)
        return FrameRecord(ftype, quality, subs), pos + need


class BitstreamWriter:
    """Write a ``.dvc`` file atomically.

    Bytes go to a temporary file beside ``path``; on a clean exit of the
    ``with`` block (or :meth:`close`) the header's frame count is set to the
    number of frames written, and the file is renamed to ``path``. On an
    exception (or :meth:`abort`) the temporary file is deleted and ``path`` is
    left as it was.

    Example::

        with BitstreamWriter("out.dvc") as w:
            w.write_header(Header(416, 240, intra_codec="edic", ...))
            w.write_frame(FRAME_I, 3, [intra_bytes])
            w.write_frame(FRAME_P, 3, [motion_bytes, residual_bytes])
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).expanduser()
        if not self.path.parent.is_dir():
            raise InputError(f"output folder {self.path.parent} does not exist")
        self._tmp = self.path.parent / f".{self.path.name}.{secrets.token_hex(4)}.tmp"
        self._f: BinaryIO | None = open(self._tmp, "xb")
        self.header: Header | None = None
        self.frames_written = 0
        self.counts = ByteCounts()
        self._done = False

    def write_header(self, h: Header) -> None:
        """Write the header (once, first). ``h.frame_count`` may be 0: it is set
        on close. A non-zero count must match the frames written."""
        _check(self.header is None, "the header is already written")
        data = encode_header(h)
        self.header = h
        self._f.write(data)
        self.counts.header = len(data)

    def write_frame(
        self, frame_type: int, quality: int, substreams: list[bytes]
    ) -> int:
        """Append one frame record; returns its size in bytes."""
        _check(self.header is not None, "write_header must come before write_frame")
        _check(not self._done, "the writer is closed")
        _check(self.frames_written < MAX_FRAMES, f"more than {MAX_FRAMES} frames")
        _check(
            frame_type != FRAME_PM or self.header.flags & FLAG_PRED_MODES,
            "a P-frame with a prediction mode needs the header's prediction-mode flag",
        )
        rec = encode_frame(frame_type, quality, substreams)
        self._f.write(rec)
        self.counts._add_frame(frame_type, [bytes(s) for s in substreams], len(rec))
        self.frames_written += 1
        return len(rec)

    def close(self) -> None:
        """Finish: fix the frame count, flush, rename into place.

        Raises:
            BitstreamError: no header or no frame, or a header frame count that
                differs from the frames written (the file is then not created).
        """
        if self._done:
            return
        try:
            _check(self.header is not None, f"no header written to {self.path}")
            _check(self.frames_written > 0, f"no frames written to {self.path}")
            want = self.header.frame_count
            _check(
                want in (0, self.frames_written),
                f"the header announces {want} frames, {self.frames_written} written",
            )
            if want == 0:
                fixed = dataclasses.replace(
                    self.header, frame_count=self.frames_written
                )
                self._f.seek(0)
                self._f.write(encode_header(fixed))
                self.header = fixed
            self._f.flush()
            os.fsync(self._f.fileno())
            self._f.close()
            os.replace(self._tmp, self.path)
        except BaseException:
            self.abort()
            raise
        self._done = True

    def abort(self) -> None:
        """Delete the temporary file; ``path`` is left untouched."""
        self._done = True
        if self._f is not None and not self._f.closed:
            self._f.close()
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> BitstreamWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def __del__(self) -> None:
        # A writer dropped without close() must not leave its temporary file.
        if not getattr(self, "_done", True):
            self.abort()


def count_bytes(source: str | Path | bytes) -> ByteCounts:
    """Read a whole file (checking every frame) and split its bytes by kind."""
    reader = BitstreamReader(source)
    for _ in reader:
        pass
    return reader.counts


# -- model identity -----------------------------------------------------------------


def _canonical_json(config: Mapping[str, Any]) -> bytes:
    def default(o: Any) -> Any:
        if isinstance(o, (set, frozenset)):
            return sorted(o)
        if isinstance(o, Path):
            return str(o)
        if isinstance(o, Fraction):
            return str(o)
        raise TypeError(f"config value {o!r} ({type(o).__name__}) is not JSON-able")

    return json.dumps(
        config, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
        allow_nan=False, default=default,
    ).encode("ascii")  # fmt: skip


def fingerprint(tensors: Any, config: Mapping[str, Any], size: int = 32) -> bytes:
    """SHA-256 of a model's config and weights, to tell models apart in files.

    Hashes, in order: the canonical JSON of ``config`` (sorted keys, no
    whitespace, ASCII), then for every tensor in sorted name order its name,
    dtype, shape and raw bytes (CPU, contiguous, native little-endian order).
    Equal fingerprints mean the same decoder computation.

    Args:
        tensors: a ``state_dict``-like mapping name -> tensor (or numpy array),
            or an ``nn.Module`` (its ``state_dict()`` is used).
        config: the JSON-able config that rebuilds the model.
        size: digest bytes kept, 16 or 32.

    Returns:
        ``size`` bytes.
    """
    import numpy as np
    import torch

    if size not in FINGERPRINT_SIZES:
        raise ValueError(f"size must be 16 or 32, got {size}")
    if isinstance(tensors, torch.nn.Module):
        tensors = tensors.state_dict()
    h = hashlib.sha256()
    h.update(_canonical_json(config))
    for name in sorted(tensors):
        t = tensors[name]
        if isinstance(t, np.ndarray):
            t = torch.from_numpy(np.ascontiguousarray(t))
        t = t.detach().cpu().contiguous()
        h.update(f"\0{name}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.digest()[:size]
