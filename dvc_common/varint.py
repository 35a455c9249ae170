"""Unsigned LEB128 varints, shared by the image payload and the .dvc container."""

from __future__ import annotations

from .errors import BitstreamError

#: Longest varint accepted: 10 bytes hold any 64-bit value.
MAX_VARINT_BYTES = 10


def encode_varint(value: int) -> bytes:
    """Encode a non-negative int as an unsigned LEB128 varint."""
    if value < 0:
        raise ValueError(f"varint must be non-negative, got {value}")
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def decode_varint(data: bytes | memoryview, pos: int) -> tuple[int, int]:
    """Decode the varint at ``data[pos:]``.

    Returns:
        ``(value, next_pos)``.

    Raises:
        BitstreamError: truncated or longer than ``MAX_VARINT_BYTES``.
    """
    value = 0
    for i in range(MAX_VARINT_BYTES):
        if pos + i >= len(data):
            raise BitstreamError(f"truncated varint at byte {pos}")
        byte = data[pos + i]
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            return value, pos + i + 1
    raise BitstreamError(f"varint longer than {MAX_VARINT_BYTES} bytes at byte {pos}")
