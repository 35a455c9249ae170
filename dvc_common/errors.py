"""The project's error types.

Every error that dvc-ext raises on purpose derives from :class:`DvcExtError`, so a
caller (the CLI, a test) can catch the whole family with one ``except``.
"""


class DvcExtError(Exception):
    """Base class of every error raised on purpose by dvc-ext."""


class BitstreamError(DvcExtError):
    """A bitstream or payload is truncated, damaged or not in a known format."""


class InputError(DvcExtError):
    """A user-supplied input (file, size, option) is missing or unusable."""


class ModelMismatchError(DvcExtError):
    """A file was written by a different model than the one asked to decode it."""


class RegistryError(DvcExtError, KeyError):
    """An unknown or duplicate name in a :class:`~dvc_common.Registry`."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""
