"""Integer translations of unseen natural images: the broad flow accuracy check.

A learned flow that recovers shifts of two or three test photographs can still
fail on others (flat skies, repetitive texture, grey images), so this set
moves many images no flow training run reads: the 24 Kodak images and the four
frames of the Middlebury pairs in ``eval/flow_pairs`` (evaluation data only),
each cropped at two frame sizes, with integer shifts of up to ``max_shift`` px
per axis. Integer shifts make the ground truth exact: ``cur`` and ``ref`` are
two crops of one image, offset by the shift.

The score of an estimator on an image is its mean end-point error over that
image's pairs, away from a ``border`` where the shifted content leaves the
frame; the set's verdict is its worst image, not its average, because a user's
video is one image at a time.

The shifts of an image depend only on its name (a seed from its CRC-32), so a
subset (the unit test) sees exactly the pairs the full set (the benchmark)
gives that image.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import torch

#: Frame sizes (h, w) every image is cropped at: a 5:4 and a 16:9-like shape.
SIZES = ((256, 320), (240, 416))


def _read(path: Path) -> torch.Tensor:
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise ValueError(f"cannot read image {path}")
    img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    return torch.from_numpy(img).permute(2, 0, 1).float() / 255


def translation_sources(
    data_root: str | Path | None, names: list[str] | None = None
) -> dict[str, torch.Tensor]:
    """``{name: 3 x H x W image}``: Kodak ``kodimNN`` and the flow-pair frames.

    Args:
        data_root: the shared data folder; None or missing parts give fewer
            (or no) images.
        names: keep only these (e.g. a test's subset); unknown names are an
            error, so a typo cannot shrink a test to nothing.
    """
    paths: dict[str, Path] = {}
    if data_root is not None:
        ev = Path(data_root) / "eval"
        for p in sorted((ev / "kodak").glob("kodim*.png")):
            paths[p.stem] = p
        for p in sorted((ev / "flow_pairs").glob("*.png")):
            paths[p.stem] = p
    if names is not None:
        missing = [n for n in names if n not in paths]
        if missing:
            raise ValueError(f"no such translation-set image(s): {missing}")
        paths = {n: paths[n] for n in names}
    return {n: _read(p) for n, p in paths.items()}


def image_shifts(name: str, count: int, max_shift: int = 12) -> list[tuple[int, int]]:
    """``count`` integer shifts ``(dx, dy)`` in ``[-max_shift, max_shift]^2`` for ``name``."""
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    return [
        (int(dx), int(dy))
        for dx, dy in rng.integers(-max_shift, max_shift + 1, (count, 2))
    ]


def shifted_crops(
    img: torch.Tensor, shifts: list[tuple[int, int]], h: int, w: int, margin: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Centre crops ``cur, ref`` (``n x 3 x h x w``) with ``cur(p) = ref(p + shift)``."""
    _, H, W = img.shape
    if H < h + 2 * margin or W < w + 2 * margin:
        raise ValueError(f"image {H}x{W} too small for {h}x{w} crops +-{margin} px")
    y0, x0 = (H - h) // 2, (W - w) // 2
    ref = img[:, y0 : y0 + h, x0 : x0 + w]
    cur = [img[:, y0 + dy : y0 + dy + h, x0 + dx : x0 + dx + w] for dx, dy in shifts]
    return torch.stack(cur), ref.expand(len(shifts), -1, -1, -1).contiguous()


def translation_epe(
    flow,
    sources: dict[str, torch.Tensor],
    sizes: tuple[tuple[int, int], ...] = SIZES,
    shifts_per_size: int = 3,
    max_shift: int = 12,
    border: int = 16,
) -> dict[str, float]:
    """``{image name: mean EPE (px)}`` of ``flow(cur, ref)`` over the image's pairs."""
    out: dict[str, float] = {}
    for name, img in sources.items():
        shifts = image_shifts(name, shifts_per_size * len(sizes), max_shift)
        errs = []
        for k, (h, w) in enumerate(sizes):
            part = shifts[k * shifts_per_size : (k + 1) * shifts_per_size]
            cur, ref = shifted_crops(img, part, h, w, max_shift)
            gt = torch.tensor(part, dtype=torch.float32).view(-1, 2, 1, 1)
            with torch.no_grad():
                v = flow(cur, ref)
            e = (v - gt).norm(dim=1)[:, border:-border, border:-border]
            errs.append(e.mean(dim=(1, 2)))
        out[name] = round(float(torch.cat(errs).mean()), 4)
    return out
