"""A folder of images (any depth), for training an image codec (``task=image``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dvc_common import InputError

from .base import read_image

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".ppm")


class ImageFile:
    """One image as a source of ``repeat`` samples (each its own random crop).

    Args:
        path: the image file.
        downscale: read the image reduced by this factor (area averaging):
            large JPEG photographs carry compression artifacts and sensor noise
            that a reduction averages away, leaving statistics closer to a
            clean frame; 1 keeps it as it is.
        repeat: samples per epoch drawn from this image; a photograph holds
            many crops' worth of content where a video frame holds one.
    """

    def __init__(self, path: Path, downscale: float = 1.0, repeat: int = 1) -> None:
        if not downscale >= 1.0:
            raise InputError(f"dataset.downscale must be >= 1, got {downscale}")
        if int(repeat) < 1:
            raise InputError(f"dataset.repeat must be >= 1, got {repeat}")
        self.path = path
        self.name = str(path)
        self.downscale = float(downscale)
        self.length = int(repeat)
        self._cached: np.ndarray | None = None

    def read(self, t: int) -> np.ndarray:
        if not 0 <= t < self.length:
            raise IndexError(f"{self.name} has {self.length} sample(s), asked for {t}")
        if self.length == 1 and self.downscale == 1.0:
            return read_image(self.path)
        # Repeated samples of one image: decode (and reduce) it once per worker.
        if self._cached is None:
            self._cached = self._load()
        return self._cached

    def _load(self) -> np.ndarray:
        img = read_image(self.path)
        if self.downscale == 1.0:
            return img
        import cv2

        h, w = img.shape[:2]
        size = (max(1, round(w / self.downscale)), max(1, round(h / self.downscale)))
        return cv2.resize(np.ascontiguousarray(img), size, interpolation=cv2.INTER_AREA)


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
    root: str | Path,
    split: str = "train",
    val_fraction: float = 0.05,
    downscale: float = 1.0,
    repeat: int = 1,
) -> list[ImageFile]:
    """Images of one split: ``train`` (all but the held-out tail of the sorted
    list), ``val`` (the last ``val_fraction``, at least one image when the
    fraction is positive and the folder has two or more) or ``all``.

    ``downscale`` applies to every split, ``repeat`` to training only (a
    validation image is one centre crop)."""
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
    n = int(repeat) if split == "train" else 1
    return [ImageFile(p, downscale, n) for p in chosen]
