"""The image-codec plug-in contract and its registry.

Every codec is a CompressAI :class:`~compressai.models.CompressionModel`::

    forward(x, quality=None)   -> {"x_hat": B x C x H x W, "likelihoods": {name: T}}
    compress(x, quality=None)  -> {"strings": [[bytes] * B, ...], "shape": [int],
                                   "x_hat": B x C x H x W}
    decompress(strings, shape, quality=None) -> {"x_hat": B x C x H x W}

plus ``update()``, ``aux_loss()`` and ``load_state_dict()`` from CompressAI, and
the attributes ``downsampling_factor`` (callers pad H and W to a multiple of it)
and ``num_qualities``.

Two additions to CompressAI's contract, both needed by a closed-loop video
encoder: ``compress`` also returns ``x_hat``, the reconstruction the decoder will
produce (computed from the quantised values, bit-identical to ``decompress``'s);
and ``shape`` is a flat list of ints, so a payload can store it as varints.
Decoders raise :class:`~dvc_common.BitstreamError` on strings or shapes that
cannot be theirs.

Variable rate (DESIGN.md section 2): a codec built with ``num_qualities=Q > 1``
multiplies its latent ``y`` by a learned per-quality gain vector before
quantisation and by a learned inverse gain after it, so one model covers Q rate
points (index 0 = lowest rate). ``quality`` is an int or a ``LongTensor[B]``
(one index per batch element); ``None`` means the highest quality. With ``Q=1``
and ``quality=None`` the contract is CompressAI's, unchanged.

Encoder-side refinement: a codec with ``refinable = True`` also takes
``compress(x, quality, refine=Refinement(...))`` and then codes latents
optimised for that one input (``lam * MSE + bpp`` by gradient descent); the
bytes it writes are in the same format, for the same decoder.

Every codec takes ``in_channels`` (3 for frames and residuals, 2 for flow) and
its channel widths ``N`` (transforms) and ``M`` (latent) as constructor
arguments, so the contract tests can build a small instance of any registered
codec from ``tiny_config``.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn as nn

with warnings.catch_warnings():
    # compressai.models imports torch_geometric, whose import calls the
    # deprecated torch.jit.script: a warning every command would print, about
    # code we never run.
    warnings.filterwarnings("ignore", "`torch.jit.script` is deprecated", FutureWarning)
    from compressai.models import CompressionModel

from dvc_common import BitstreamError, Registry, fixed_threads

_CODECS: Registry[type[ImageCodec]] = Registry("image codec")


#: Modules of this package that hold infrastructure, not codecs.
_NOT_CODECS = {"base", "entropy", "layers", "payload"}
_discovered = False


def _discover() -> None:
    """Import every codec module of the package once, so they register."""
    global _discovered
    if _discovered:
        return
    _discovered = True
    import importlib
    import pkgutil

    package = __name__.rpartition(".")[0]
    path = importlib.import_module(package).__path__
    for info in pkgutil.iter_modules(path):
        if info.name not in _NOT_CODECS and not info.name.startswith("_"):
            importlib.import_module(f"{package}.{info.name}")


def register_codec(name: str):
    """Class decorator: ``@register_codec("edic")``. Names are lowercase-kebab."""
    return _CODECS.register(name)


def build_codec(name: str, **kwargs: Any) -> ImageCodec:
    """The one factory: build the codec registered as ``name``."""
    _discover()
    codec = _CODECS.build(name, **kwargs)
    codec.registry_name = name
    # What rebuilds this codec: checkpoints and the bitstream fingerprint use it.
    codec.build_kwargs = dict(kwargs)
    return codec


def list_codecs() -> list[str]:
    """Registered codec names, sorted."""
    _discover()
    return _CODECS.names()


def codec_class(name: str) -> type[ImageCodec]:
    """The class registered as ``name``."""
    _discover()
    return _CODECS.get(name)


QualityArg = int | torch.Tensor | None


@dataclass(frozen=True)
class Refinement:
    """Settings of encoder-side latent refinement (``ImageCodec.compress``).

    Args:
        steps: gradient steps on the latents (0: none).
        lam: the rate point's lambda: the objective is ``lam * MSE + bpp``, the
            one the codec was trained for at that rate point.
        lr: Adam's step size on the latents.
        seed: of the stochastic rounding, so an encode is repeatable.
        amp: run the transforms under bfloat16 autocast (None: where the CPU
            has native bf16, or on CUDA); the coded result is computed in
            float32 either way. The latents found, and so the bytes, depend on
            this setting (and on the batch, through the noise): the same
            command repeats its file on one machine, and any file decodes the
            same everywhere, but two machines may encode differently.
    """

    steps: int
    lam: float
    lr: float = 0.02
    seed: int = 0
    amp: bool | None = None

    def __post_init__(self) -> None:
        if self.steps < 0:
            raise ValueError(f"refinement steps must be >= 0, got {self.steps}")
        if not self.lam > 0:
            raise ValueError(f"refinement needs a positive lambda, got {self.lam}")
        if not self.lr > 0:
            raise ValueError(f"refinement lr must be positive, got {self.lr}")

    def use_amp(self, device: torch.device) -> bool:
        if self.amp is not None:
            return self.amp
        if device.type == "cuda":
            return True
        return device.type == "cpu" and torch.cpu._is_avx512_bf16_supported()


class ImageCodec(CompressionModel):
    """Base class of the image codecs (see the module docstring for the contract).

    Args:
        in_channels: 3 (frames, residuals) or 2 (optical flow).
        M: latent channels (the gain vectors have this length).
        num_qualities: Q rate points in one model.
    """

    downsampling_factor: int = 64
    #: False for the classical codecs (:mod:`image_codecs.classical`): no
    #: weights, no gradients; training refuses them as a trained part.
    learned: ClassVar[bool] = True
    #: Whether ``compress`` takes ``refine=`` (encoder-side latent refinement).
    refinable: ClassVar[bool] = False
    #: Input channel counts it codes (None: any, e.g. 2 for flow, 3 for RGB).
    channels: ClassVar[tuple[int, ...] | None] = None
    #: Constructor arguments a decoder depends on (None: all of them).
    decode_kwargs: ClassVar[tuple[str, ...] | None] = None
    #: Constructor arguments for a small instance (contract tests, smoke runs).
    tiny_config: ClassVar[dict[str, Any]] = {"N": 16, "M": 24}
    #: Set by :func:`build_codec`: the name the bitstream stores.
    registry_name: str = ""
    #: Set by :func:`build_codec`: the keyword arguments it was built with.
    build_kwargs: dict[str, Any] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # A decoded file must not depend on the decoder's thread count: CPU
        # kernels split work by thread and round their tails differently, so
        # every codec's compress/decompress runs whole (entropy parameters and
        # synthesis) under the one coding thread count.
        super().__init_subclass__(**kwargs)
        for name in ("compress", "decompress"):
            fn = cls.__dict__.get(name)
            if fn is not None and not getattr(fn, "_fixed_threads", False):
                setattr(cls, name, _under_fixed_threads(fn))

    def __init__(self, in_channels: int = 3, M: int = 192, num_qualities: int = 1):
        super().__init__()
        if in_channels < 1:
            raise ValueError(f"in_channels must be >= 1, got {in_channels}")
        if num_qualities < 1:
            raise ValueError(f"num_qualities must be >= 1, got {num_qualities}")
        self.in_channels = int(in_channels)
        self.num_qualities = int(num_qualities)
        if self.num_qualities > 1:
            # Geometric ladder, a factor sqrt(2) per step: even untrained, a
            # higher index quantises more finely, so it already orders rates.
            steps = torch.arange(self.num_qualities, dtype=torch.float32)
            log_g = (steps - (self.num_qualities - 1)) * 0.5 * math.log(2.0)
            self.gain = nn.Parameter(log_g[:, None].repeat(1, M))
            self.inv_gain = nn.Parameter(-log_g[:, None].repeat(1, M))

    # -- variable rate ----------------------------------------------------------
    def _quality_index(self, quality: QualityArg, batch: int) -> torch.Tensor | None:
        if self.num_qualities == 1:
            if quality not in (None, 0) and not (
                isinstance(quality, torch.Tensor) and bool((quality == 0).all())
            ):
                raise ValueError("this codec has one rate point; quality must be None")
            return None
        if quality is None:
            quality = self.num_qualities - 1
        gain = getattr(self, "gain", None)  # classical codecs have none
        device = gain.device if gain is not None else torch.device("cpu")
        q = torch.as_tensor(quality, dtype=torch.long, device=device)
        if q.ndim == 0:
            q = q.expand(batch)
        if q.shape != (batch,):
            raise ValueError(f"quality must be an int or a tensor of {batch} indexes")
        if bool(((q < 0) | (q >= self.num_qualities)).any()):
            raise ValueError(
                f"quality index out of range 0..{self.num_qualities - 1}: {q.tolist()}"
            )
        return q

    def scale_latent(self, y: torch.Tensor, quality: QualityArg) -> torch.Tensor:
        """``y * gain[quality]`` (identity for a single-rate codec)."""
        q = self._quality_index(quality, y.shape[0])
        if q is None:
            return y
        return y * torch.exp(self.gain[q])[:, :, None, None]

    def unscale_latent(self, y_hat: torch.Tensor, quality: QualityArg) -> torch.Tensor:
        """``y_hat * inv_gain[quality]`` (identity for a single-rate codec)."""
        q = self._quality_index(quality, y_hat.shape[0])
        if q is None:
            return y_hat
        return y_hat * torch.exp(self.inv_gain[q])[:, :, None, None]

    # -- helpers ------------------------------------------------------------------
    def check_input(self, x: torch.Tensor) -> None:
        """Raise ValueError on a wrong channel count or an unpadded size."""
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"expected B x {self.in_channels} x H x W, got {tuple(x.shape)}"
            )
        f = self.downsampling_factor
        if x.shape[-2] % f or x.shape[-1] % f:
            raise ValueError(
                f"H and W must be multiples of {f} (pad with "
                f"dvc_common.pad_to_multiple); got {tuple(x.shape[-2:])}"
            )

    def rate_bits(self, likelihoods: dict[str, torch.Tensor]) -> torch.Tensor:
        """Estimated bits per batch element, from ``forward``'s likelihoods."""
        total = 0
        for lik in likelihoods.values():
            total = total + (-torch.log2(lik)).flatten(1).sum(dim=1)
        return total


def _under_fixed_threads(fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with fixed_threads():
            return fn(*args, **kwargs)

    wrapper._fixed_threads = True  # type: ignore[attr-defined]
    return wrapper


def expect_streams(strings: Any, n: int) -> list[list[bytes]]:
    """Check a decoder's ``strings`` argument: n streams, one batch size."""
    if not isinstance(strings, (list, tuple)) or len(strings) != n:
        raise BitstreamError(f"expected {n} streams, got {_count(strings)}")
    sizes = {len(s) if isinstance(s, (list, tuple)) else -1 for s in strings}
    if len(sizes) != 1 or -1 in sizes or 0 in sizes:
        raise BitstreamError("streams must be non-empty lists of one batch size")
    return [list(s) for s in strings]


def _count(x: Any) -> str:
    return str(len(x)) if isinstance(x, (list, tuple)) else type(x).__name__


def latent_hw(shape: Any) -> tuple[int, int]:
    """The (h, w) of z from a decoder's ``shape`` argument, validated."""
    try:
        h, w = (int(v) for v in shape)
    except (TypeError, ValueError):
        raise BitstreamError(f"shape must be two ints (h, w), got {shape!r}") from None
    if not (0 < h <= 4096 and 0 < w <= 4096):
        raise BitstreamError(f"latent size {h}x{w} out of range")
    return h, w
