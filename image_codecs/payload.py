"""One encoded image to and from bytes.

Layout (all integers unsigned LEB128 varints)::

    n_streams  len_0 .. len_{n-1}  n_dims  dim_0 .. dim_{d-1}  bytes_0 .. bytes_{n-1}

``streams`` are a codec's strings for one batch element (``out["strings"][k][i]``
for each k) and ``shape`` its ``out["shape"]`` flattened to ints. Everything is
validated on read: counts and sizes are bounded before anything is allocated,
and the lengths must add up to exactly the bytes given, so truncated or padded
input raises :class:`~dvc_common.BitstreamError`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dvc_common import BitstreamError, decode_varint, encode_varint

MAX_STREAMS = 64
MAX_DIMS = 16
MAX_DIM = 1 << 20


def flatten_shape(shape: Any) -> list[int]:
    """A codec's ``shape`` (ints, torch.Size, nested tuples) as a flat int list."""
    if isinstance(shape, int):
        return [shape]
    out: list[int] = []
    for s in shape:
        out += flatten_shape(s)
    return out


def pack(streams: Sequence[bytes], shape: Sequence[int]) -> bytes:
    """Serialise one image's streams and (flat) shape."""
    if len(streams) > MAX_STREAMS or len(shape) > MAX_DIMS:
        raise ValueError("too many streams or shape dimensions for a payload")
    head = [encode_varint(len(streams))]
    head += [encode_varint(len(s)) for s in streams]
    head.append(encode_varint(len(shape)))
    head += [encode_varint(int(d)) for d in shape]
    return b"".join(head) + b"".join(bytes(s) for s in streams)


def unpack(data: bytes) -> tuple[list[bytes], list[int]]:
    """Inverse of :func:`pack`.

    Raises:
        BitstreamError: on any truncated, oversized or malformed payload.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise BitstreamError(f"payload must be bytes, got {type(data).__name__}")
    view = memoryview(bytes(data))
    n, pos = decode_varint(view, 0)
    if n > MAX_STREAMS:
        raise BitstreamError(f"payload claims {n} streams (max {MAX_STREAMS})")
    lengths = []
    for _ in range(n):
        ln, pos = decode_varint(view, pos)
        lengths.append(ln)
    d, pos = decode_varint(view, pos)
    if d > MAX_DIMS:
        raise BitstreamError(f"payload claims {d} shape dimensions (max {MAX_DIMS})")
    shape = []
    for _ in range(d):
        v, pos = decode_varint(view, pos)
        if v > MAX_DIM:
            raise BitstreamError(f"payload shape dimension {v} out of range")
        shape.append(v)
    if pos + sum(lengths) != len(view):
        raise BitstreamError(
            f"payload size mismatch: header says {pos + sum(lengths)} bytes, "
            f"got {len(view)}"
        )
    streams = []
    for ln in lengths:
        streams.append(bytes(view[pos : pos + ln]))
        pos += ln
    return streams, shape


def pack_compressed(out: dict[str, Any], index: int = 0) -> bytes:
    """Bytes of batch element ``index`` of a codec's ``compress`` output."""
    return pack([s[index] for s in out["strings"]], flatten_shape(out["shape"]))


def unpack_compressed(data: bytes) -> tuple[list[list[bytes]], list[int]]:
    """``(strings, shape)`` for ``decompress``, batch of one."""
    streams, shape = unpack(data)
    return [[s] for s in streams], shape
