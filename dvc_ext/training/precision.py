"""Mixed precision for training: ``precision: bf16 | fp32`` in the train config.

Under ``bf16`` the forward pass of a training step runs inside
``torch.autocast(device, dtype=torch.bfloat16)``: convolutions and matrix
products run in bfloat16 (on a CPU with ``avx512_bf16`` or AMX, through
oneDNN; on CUDA, tensor cores), element-wise work follows its inputs. What
stays float32, and why:

- master weights and both optimizers' states: autocast casts a copy of each
  weight per op, so Adam's updates (often below bf16's resolution of a weight)
  accumulate in float32 and checkpoints stay float32;
- the entropy models' likelihoods and so the rate term
  (:func:`image_codecs.entropy.float32_region`): ``-log2`` of a bf16
  probability is off by up to 0.4 % per element, and the rate sums millions;
- the distortion: ``x_hat`` is cast to float32 before the error, whose mean of
  small squared differences bf16 would round away;
- the entropy bottlenecks' auxiliary (quantile) loss, computed outside
  autocast.

Coding (``compress`` / ``decompress`` / ``eval``) never uses autocast: files
stay bit-exact across processes and thread counts; only training gets faster.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch

from dvc_common import InputError

PRECISIONS = ("bf16", "fp32")


def bf16_supported(device: torch.device) -> bool:
    """Whether bf16 autocast runs at hardware speed on ``device``.

    On a CPU without ``avx512_bf16`` (or AMX) oneDNN emulates bf16, slower
    than float32, so such a CPU trains in float32.
    """
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    if device.type == "cpu":
        cpu = torch.cpu
        checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
        return any(bool(getattr(cpu, c, lambda: False)()) for c in checks)
    return False


def resolve_precision(name: Any, device: torch.device) -> tuple[str, str | None]:
    """The precision a run uses, and a note to log when it is not the one asked.

    Raises:
        InputError: a name other than ``bf16`` / ``fp32``.
    """
    name = str(name or "fp32").lower()
    if name not in PRECISIONS:
        raise InputError(
            f"precision must be one of {', '.join(PRECISIONS)}, got {name!r}"
        )
    if name == "bf16" and not bf16_supported(device):
        return "fp32", (
            f"precision=bf16 asked, but {device} has no bf16 support "
            f"(avx512_bf16 / AMX on a CPU): training in fp32"
        )
    return name, None


def autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """The context a training forward runs in (a no-op for fp32)."""
    if precision != "bf16":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
