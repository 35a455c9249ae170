"""Model checkpoints: one file holds the model config, weights and metadata.

Layout of the ``torch.save``'d dict (loaded only with ``weights_only=True``, so
a checkpoint can never run code)::

    {"format": "dvc-ext", "version": 1, "kind": "video" | "image",
     "config": {...},          # rebuilds the model (VideoCodec or image codec)
     "state_dict": {...},      # float tensors
     "meta": {...}}            # steps, data, hardware, time: free-form, JSON-able

``decompress`` and ``eval`` rebuild the model from ``config``, never from the
user's current settings, so a file decodes with the model that wrote it.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from dvc_common import InputError, atomic_tempfile

FORMAT = "dvc-ext"
VERSION = 1
#: Entropy-coder tables derived from the weights by ``update()``: not stored
#: (they are large, and rebuilding them on load is deterministic).
DERIVED_BUFFERS = ("_quantized_cdf", "_offset", "_cdf_length", "scale_table")
#: Shipped default checkpoints, by kind, inside the installed package.
DEFAULTS = {"video": "video_default.pth", "image": "intra_default.pth"}


def default_checkpoint(kind: str = "video") -> Path | None:
    """Path of the shipped default checkpoint of ``kind``, or None if absent."""
    path = Path(str(resources.files("dvc_ext") / "weights" / DEFAULTS[kind]))
    return path if path.is_file() else None


def save_checkpoint(
    path: str | os.PathLike,
    kind: str,
    config: dict[str, Any],
    state_dict: dict[str, torch.Tensor],
    meta: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write a checkpoint atomically (temporary file, then rename).

    ``extra`` holds training state (optimizer, RNG, step) for ``resume``; it is
    stored beside the model and ignored by loaders of the model.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    blob = {
        "format": FORMAT,
        "version": VERSION,
        "kind": kind,
        "config": config,
        "state_dict": {
            k: v.detach().cpu() for k, v in state_dict.items() if not is_derived(k)
        },
        "meta": meta or {},
    }
    if extra:
        blob["extra"] = extra
    fd, tmp = atomic_tempfile(path)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(blob, f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def is_derived(key: str) -> bool:
    """True for entropy-coder tables that ``update()`` rebuilds from weights."""
    return key.rpartition(".")[2] in DERIVED_BUFFERS


#: Buffers that hold constructor constants, not learned values: CompressAI's
#: ``LowerBound.bound`` (the likelihood floor 1e-9, the scale floor 0.11, GDN's
#: reparametrisation floors) and ``NonNegativeParametrizer.pedestal`` (2^-36).
CONSTANT_BUFFERS = frozenset({"bound", "pedestal"})


def is_constant(key: str) -> bool:
    """True for a constructor constant (:data:`CONSTANT_BUFFERS`)."""
    return key.rpartition(".")[2] in CONSTANT_BUFFERS


def load_checkpoint(path: str | os.PathLike, kind: str | None = None) -> dict[str, Any]:
    """Load and validate a checkpoint (``weights_only=True``).

    Raises:
        InputError: missing file, not a dvc-ext checkpoint, newer version, or a
            checkpoint of another kind than ``kind``.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"checkpoint not found: {path}")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle / zip errors of a file that is no checkpoint
        raise InputError(f"{path} is not a readable dvc-ext checkpoint ({e})") from None
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise InputError(f"{path} is not a dvc-ext checkpoint")
    if int(blob.get("version", 0)) > VERSION:
        raise InputError(
            f"{path} has checkpoint version {blob['version']}; this dvc-ext reads "
            f"up to {VERSION}: upgrade dvc-ext"
        )
    if kind is not None and blob.get("kind") != kind:
        raise InputError(
            f"{path} holds a {blob.get('kind')!r} model, expected {kind!r}"
        )
    for key in ("config", "state_dict"):
        if not isinstance(blob.get(key), dict):
            raise InputError(f"{path} has no {key}")
    return blob


def export_checkpoint(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    dtype: str = "float16",
    meta: dict[str, Any] | None = None,
) -> Path:
    """Write the model of a (training) checkpoint for shipping.

    Drops the training state (optimizer, RNG, step) and stores floating-point
    weights as ``dtype``: float16 halves the file, and since encoder and decoder
    both load the same rounded weights (as float32) and rebuild their entropy
    tables from them, files stay bit-exact between them. The fingerprint changes,
    so files of the unexported checkpoint are refused by the exported one.

    Raises:
        InputError: an unreadable source or an unknown ``dtype``.
    """
    return export_blob(load_checkpoint(src), dst, dtype, meta)


def export_blob(
    blob: dict[str, Any],
    dst: str | os.PathLike,
    dtype: str = "float16",
    meta: dict[str, Any] | None = None,
) -> Path:
    """:func:`export_checkpoint` of a checkpoint already loaded (and maybe edited)."""
    if dtype not in ("float16", "bfloat16", "float32"):
        raise InputError(f"dtype must be float16, bfloat16 or float32, got {dtype!r}")
    target = getattr(torch, dtype)
    # Constants stay float32: in float16 the likelihood floor 1e-9 and GDN's
    # pedestal underflow to 0, and a model fine-tuned from such a file can
    # meet a likelihood of exactly 0 (infinite rate, a skipped step).
    state = {
        k: v.to(target) if v.is_floating_point() and not is_constant(k) else v
        for k, v in blob["state_dict"].items()
    }
    info = {**blob.get("meta", {}), **(meta or {}), "stored_dtype": dtype}
    return save_checkpoint(dst, blob["kind"], blob["config"], state, info)
