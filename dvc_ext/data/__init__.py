"""Training data: Vimeo-90k septuplets, video files, image folders.

:func:`build_datasets` turns a ``dataset`` config group (``configs/dataset/``)
into a training and a validation :class:`FrameDataset`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dvc_common import InputError

from .base import FrameDataset, Source, parse_size, read_image
from .images import ImageFile, find_images, image_sources
from .sampler import ResumableSampler
from .video_files import VideoFrames, decode_to_cache, find_videos, video_sources
from .vimeo import VimeoClip, vimeo_clips

__all__ = [
    "FrameDataset",
    "ImageFile",
    "ResumableSampler",
    "Source",
    "VideoFrames",
    "VimeoClip",
    "build_datasets",
    "decode_to_cache",
    "find_images",
    "find_videos",
    "image_sources",
    "read_image",
    "sources_of",
    "video_sources",
    "vimeo_clips",
]

KINDS = ("vimeo", "video_files", "images", "mixed")


def _root(cfg: Mapping[str, Any], key: str = "root") -> str:
    value = cfg.get(key)
    if value in (None, "", "???"):
        raise InputError(
            f"dataset.{key} is not set: give the {cfg.get('name')} data location, "
            f"e.g. dvc-ext train dataset.{key}=/path/to/data"
        )
    return str(value)


def _repeat(cfg: Mapping[str, Any], split: str, sources: list[Source]) -> list[Source]:
    """``sources`` ``dataset.repeat`` times over for training (validation: once).

    A part's weight in a mixed set is its share of the samples, so a few clips
    of varied camera motion (Vimeo septuplets: one chain of seven frames each)
    would count for little beside one long static-camera video; repeating
    them restores their weight without copying any data.
    """
    value = cfg.get("repeat")
    if value is None:
        return sources
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InputError(f"dataset.repeat must be an integer >= 1, got {value!r}")
    return sources * value if split == "train" else sources


def sources_of(cfg: Mapping[str, Any], split: str) -> list[Source]:
    """The frame sources of one ``dataset`` config for ``split`` (train / val)."""
    kind = cfg.get("name")
    if kind in ("vimeo", "video_files"):
        return _repeat(cfg, split, _frame_sources(cfg, split))
    return _frame_sources(cfg, split)


def _frame_sources(cfg: Mapping[str, Any], split: str) -> list[Source]:
    kind = cfg.get("name")
    if kind == "vimeo":
        return vimeo_clips(_root(cfg), "train" if split == "train" else "test")
    if kind == "video_files":
        val_root = cfg.get("val_root")
        if split == "val" and val_root:
            return video_sources(
                val_root, "all", 0.0, cfg.get("cache_dir"), cfg.get("max_frames")
            )
        return video_sources(
            _root(cfg),
            split,
            0.0
            if (val_root and split == "train")
            else float(cfg.get("val_fraction", 0.05)),
            cfg.get("cache_dir"),
            cfg.get("max_frames"),
        )
    if kind == "images":
        val_root = cfg.get("val_root")
        scale = cfg.get("downscale")
        scale = 1.0 if scale is None else float(scale)
        repeat = cfg.get("repeat")
        repeat = 1 if repeat is None else int(repeat)
        if split == "val" and val_root:
            return image_sources(val_root, "all", 0.0, scale)
        frac = (
            0.0
            if (val_root and split == "train")
            else float(cfg.get("val_fraction", 0.05))
        )
        return image_sources(_root(cfg), split, frac, scale, repeat)
    if kind == "mixed":
        parts = cfg.get("parts") or {}
        out: list[Source] = []
        for name, part in parts.items():
            if part is None or part.get("root") in (None, ""):
                continue  # a part without a root is switched off
            out += sources_of({**part, "name": part.get("name", name)}, split)
        if not out and split == "train":
            raise InputError(
                "dataset=mixed: no part has a root (set dataset.parts.NAME.root)"
            )
        return out
    raise InputError(f"unknown dataset {kind!r}; choose one of {', '.join(KINDS)}")


def build_datasets(
    cfg: Mapping[str, Any],
    frames_per_sample: int,
    multiple: int = 64,
    with_val: bool = True,
    val_frames_per_sample: int | None = None,
) -> tuple[FrameDataset, FrameDataset | None]:
    """Training and validation sets of one ``dataset`` config.

    Args:
        cfg: the ``dataset`` group (``name``, ``root``, ``crop``, ...).
        frames_per_sample: 2 for P-frame training (ref, cur), ``n > 2`` for
            chained P-frames (``chain``), 1 for images.
        multiple: the model's size multiple (crops must be multiples of it).
        with_val: also build the validation set (None where it is empty).
        val_frames_per_sample: frames of a validation sample (default
            ``frames_per_sample``): a chained run still validates on pairs, so
            its validation loss compares with unchained runs'.

    Raises:
        InputError: a wrong root or list file, a crop that is no multiple of
            ``multiple``, a P-frame run on single images, no training sample.
    """
    kind = cfg.get("name")
    if frames_per_sample >= 2 and kind == "images":
        raise InputError(
            "dataset=images gives single images; task=pframe needs frame pairs "
            "(dataset=vimeo, video_files or mixed)"
        )
    crop = parse_size(cfg.get("crop", 256), "dataset.crop")
    val_crop = parse_size(cfg.get("val_crop"), "dataset.val_crop")
    for what, size in (("crop", crop), ("val_crop", val_crop)):
        if size is not None and (size[0] % multiple or size[1] % multiple):
            raise InputError(
                f"dataset.{what}={list(size)} must be a multiple of {multiple}"
            )
    common = dict(
        frames_per_sample=frames_per_sample,
        ref_distance=int(cfg.get("ref_distance", 1)),
        crop=crop,
        hflip=bool(cfg.get("hflip", True)),
        vflip=bool(cfg.get("vflip", True)),
        reverse=bool(cfg.get("reverse", True)),
        val_crop=val_crop,
        multiple=multiple,
    )
    train = FrameDataset(sources_of(cfg, "train"), train=True, **common)
    if len(train) == 0:
        raise InputError(
            f"dataset {kind} at {cfg.get('root')} gives no training sample of "
            f"{frames_per_sample} frame(s) (ref_distance={common['ref_distance']})"
        )
    val = None
    if with_val:
        limit = cfg.get("val_limit")
        if val_frames_per_sample is not None:
            common["frames_per_sample"] = val_frames_per_sample
        val = FrameDataset(
            sources_of(cfg, "val"),
            train=False,
            limit=int(limit) if limit else None,
            **common,
        )
        if len(val) == 0:
            val = None
    return train, val
