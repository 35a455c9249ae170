"""What both plug-in families share: the registry, padding, the error types.

This package imports nothing else of the project (the one-way rule of DESIGN.md).
"""

from .errors import (
    BitstreamError,
    DvcExtError,
    InputError,
    ModelMismatchError,
    RegistryError,
)
from .files import atomic_tempfile, atomic_write_bytes
from .padding import pad_amounts, pad_to_multiple, unpad
from .registry import Registry
from .threads import fixed_threads
from .varint import decode_varint, encode_varint

__all__ = [
    "atomic_tempfile",
    "atomic_write_bytes",
    "BitstreamError",
    "DvcExtError",
    "InputError",
    "ModelMismatchError",
    "Registry",
    "RegistryError",
    "decode_varint",
    "encode_varint",
    "fixed_threads",
    "pad_amounts",
    "pad_to_multiple",
    "unpad",
]
