"""Learned image codecs: the plug-in contract, the shared entropy layers, codecs.

A codec is one module in this package with ``@register_codec("name")`` on its
class. Codec modules are discovered and imported on the first registry look-up
(:func:`build_codec`, :func:`list_codecs`), not on ``import image_codecs``.
"""

from .base import ImageCodec, build_codec, codec_class, list_codecs, register_codec

__all__ = ["ImageCodec", "build_codec", "codec_class", "list_codecs", "register_codec"]
