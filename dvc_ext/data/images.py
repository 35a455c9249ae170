"""A folder of images (any depth), for training an image codec (``task=image``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dvc_common import InputError

from .base import read_image

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".ppm")


class ImageFile:
    """One image as a one-frame source."""

    length = 1

    def __init__(self, path: Path) -> None:
        self.path = path
        self.name = str(path)

    def read(self, t: int) -> np.ndarray:
        if t != 0:
            raise IndexError(f"{self.name} has one frame, asked for {t}")
        return read_image(self.path)


def find_images(root: str | Path) -> list[Path]:
    """The image files under ``root``, sorted.

    Raises:
        InputError: ``root`` is not a directory or holds no image.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise InputError(
            f"no such directory: {root} (dataset.root must be a folder of images)"
        )
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise InputError(
            f"no images in {root} (looked for {', '.join(IMAGE_SUFFIXES)})"
        )
    return files


def image_sources(
    root: str | Path, split: str = "train", val_fraction: float = 0.05
) -> list[ImageFile]:
    """Images of one split: ``train`` (all but the held-out tail of the sorted
    list), ``val`` (the last ``val_fraction``, at least one image when the
    fraction is positive and the folder has two or more) or ``all``."""
    if split not in ("train", "val", "all"):
        raise ValueError(f"split must be train, val or all, got {split!r}")
    if not 0.0 <= val_fraction < 1.0:
        raise InputError(f"dataset.val_fraction must be in [0, 1), got {val_fraction}")
    files = find_images(root)
    n_val = 0
    if split != "all" and val_fraction > 0 and len(files) > 1:
        n_val = max(1, int(round(len(files) * val_fraction)))
    chosen = {
        "train": files[: len(files) - n_val],
        "val": files[len(files) - n_val :],
        "all": files,
    }[split]
    return [ImageFile(p) for p in chosen]
