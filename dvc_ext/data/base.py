"""Frame sources and the one dataset class every training set is built from.

A *source* is an ordered run of RGB frames: a Vimeo-90k septuplet (7 frames), a
decoded video (or a held-out part of one), a single image (1 frame). The
:class:`FrameDataset` turns a list of sources into samples of ``T`` frames:

- ``T = 2`` (``task=pframe``): ``(ref, cur)`` with ``ref`` the frame ``k`` before
  ``cur`` in the source (DVC uses the previous frame, ``k = 1``). With frame-order
  reversal the pair is read backwards in time (``ref`` the later frame), which
  doubles the motion statistics the model sees.
- ``T = 1`` (``task=image``): one frame.

Training samples get one random crop (the same for every frame of a sample),
random flips and the reversal; the randomness of a sample comes from the key the
sampler hands to ``__getitem__`` (:class:`~dvc_ext.data.sampler.ResumableSampler`),
never from a worker's global RNG, so the data of step ``s`` is the same whatever
the worker count, the process count or an interruption and resume in between.
Validation samples are deterministic centre crops.

Samples are ``{"frames": uint8 tensor T x 3 x h x w}`` (frame 0 = reference);
the training loop converts to float on its device (4x less to copy between
processes than float32).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch.utils.data import Dataset

from dvc_common import InputError

#: Key a sampler passes to ``__getitem__``: an int (deterministic, validation)
#: or ``(index, (seed, epoch, position))`` (random augmentation for training).
SampleKey = int | tuple[int, tuple[int, ...]]


class Source(Protocol):
    """An ordered run of frames of one size."""

    name: str
    length: int

    def read(self, t: int) -> np.ndarray:
        """Frame ``t`` as an ``H x W x 3`` uint8 RGB array (may be a read-only view)."""
        ...


def read_image(path: str | Path) -> np.ndarray:
    """An image file as ``H x W x 3`` uint8 RGB (grey is expanded, alpha dropped).

    Raises:
        InputError: the file is missing or not an image OpenCV can read.
    """
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        if not Path(path).is_file():
            raise InputError(f"image not found: {path}")
        raise InputError(f"cannot read {path} as an image")
    return img[..., ::-1]


def parse_size(value: Any, what: str) -> tuple[int, int] | None:
    """``128`` or ``[h, w]`` as ``(h, w)``; None stays None."""
    if value is None:
        return None
    if isinstance(value, int):
        value = (value, value)
    try:
        h, w = (int(v) for v in value)
    except (TypeError, ValueError):
        raise InputError(
            f"{what} must be an int or [height, width], got {value!r}"
        ) from None
    if h < 1 or w < 1:
        raise InputError(f"{what} must be positive, got {value!r}")
    return h, w


class FrameDataset(Dataset):
    """Samples of ``frames_per_sample`` frames drawn from a list of sources.

    Args:
        sources: the frame sources (at least one sample must fit).
        frames_per_sample: 1 (an image), 2 (``ref, cur``) or ``n > 2``: a chain
            of ``n`` frames ``k`` apart (the reference, then ``n - 1`` P-frames).
        ref_distance: ``k``: the reference is the frame ``k`` before the current.
        crop: training crop ``(h, w)``; frames smaller than it are mirror-padded.
        train: random crop / flips / reversal (True) or centre crops (False).
        hflip, vflip, reverse: the random augmentations (training only).
        val_crop: validation crop ``(h, w)``; None = the whole frame cut down to
            a multiple of ``multiple``.
        multiple: the model's size multiple (validation frames are cut to it).
        limit: keep at most this many samples, evenly spaced (validation).
    """

    def __init__(
        self,
        sources: Sequence[Source],
        frames_per_sample: int,
        ref_distance: int = 1,
        crop: tuple[int, int] = (256, 256),
        train: bool = True,
        hflip: bool = True,
        vflip: bool = True,
        reverse: bool = True,
        val_crop: tuple[int, int] | None = None,
        multiple: int = 64,
        limit: int | None = None,
    ) -> None:
        if frames_per_sample < 1:
            raise ValueError(f"frames_per_sample must be >= 1, got {frames_per_sample}")
        if ref_distance < 1:
            raise InputError(f"dataset.ref_distance must be >= 1, got {ref_distance}")
        self.sources = list(sources)
        self.frames_per_sample = frames_per_sample
        self.k = int(ref_distance)
        #: frames from the first to the last frame of a sample
        self.span = self.k * (frames_per_sample - 1)
        self.crop = crop
        self.train = train
        self.hflip, self.vflip, self.reverse = hflip, vflip, reverse
        self.val_crop = val_crop
        self.multiple = multiple
        src, t = [], []
        for i, s in enumerate(self.sources):
            n = max(0, s.length - self.span)
            src.append(np.full(n, i, dtype=np.int64))
            t.append(np.arange(self.span, self.span + n, dtype=np.int64))
        self._src = np.concatenate(src) if src else np.zeros(0, np.int64)
        self._t = np.concatenate(t) if t else np.zeros(0, np.int64)
        if limit is not None and 0 < limit < len(self._src):
            keep = np.linspace(0, len(self._src) - 1, limit).round().astype(np.int64)
            self._src, self._t = self._src[keep], self._t[keep]

    def __len__(self) -> int:
        return len(self._src)

    def describe(self) -> str:
        return f"{len(self)} samples from {len(self.sources)} sources"

    def __getitem__(self, key: SampleKey) -> dict[str, torch.Tensor]:
        if isinstance(key, (tuple, list)):
            index, seed = int(key[0]), key[1]
            rng = np.random.default_rng(list(seed)) if self.train else None
        else:
            index, rng = int(key), None
        source = self.sources[int(self._src[index])]
        t = int(self._t[index])
        times = list(range(t - self.span, t + 1, self.k)) if self.span else [t]
        if rng is not None and self.reverse and len(times) > 1 and rng.random() < 0.5:
            times.reverse()
        frames = [source.read(i) for i in times]
        if len({f.shape for f in frames}) != 1:
            raise InputError(f"{source.name}: frames {times} differ in size")
        frames = self._crop(frames, rng)
        if rng is not None:
            if self.hflip and rng.random() < 0.5:
                frames = [f[:, ::-1] for f in frames]
            if self.vflip and rng.random() < 0.5:
                frames = [f[::-1] for f in frames]
        stack = np.stack([np.ascontiguousarray(f) for f in frames])
        return {"frames": torch.from_numpy(stack).permute(0, 3, 1, 2).contiguous()}

    def _crop(self, frames: list[np.ndarray], rng: np.random.Generator | None):
        h, w = frames[0].shape[:2]
        if rng is not None:
            ch, cw = self.crop
        elif self.val_crop is not None:
            ch, cw = self.val_crop
        else:
            m = self.multiple
            ch, cw = max(m, h // m * m), max(m, w // m * m)
        if h < ch or w < cw:
            # Mirror padding keeps a small frame's statistics natural; it is
            # rare (an image folder with some small images).
            ph, pw = max(0, ch - h), max(0, cw - w)
            pad = ((ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0))
            frames = [np.pad(f, pad, mode="symmetric") for f in frames]
            h, w = frames[0].shape[:2]
        if rng is not None:
            y = int(rng.integers(0, h - ch + 1))
            x = int(rng.integers(0, w - cw + 1))
        else:
            y, x = (h - ch) // 2, (w - cw) // 2
        return [f[y : y + ch, x : x + cw] for f in frames]
