"""Synthetic-motion frame pairs with exact ground-truth flow, from natural images.

There is no flow data set here (no FlyingChairs, no Sintel), so the learned
estimators are trained on pairs made by moving natural photographs. Every pair
is built by *sampling* one source image twice, which is what makes the flow
exact (no interpolation of the ground truth, no occlusion bookkeeping):

```
source image S (H_s x W_s), crop origin o, zoom s
  ref(p) = S(o + p / s)                                  (p: output pixel)
  flow(p) = motion(p)                                    (exact, by construction)
  cur(p) = S(o + (p + flow(p)) / s)   =  ref(p + flow(p))
```

so ``backward_warp(ref, flow) == cur`` wherever ``p + flow(p)`` lies inside
the frame, which is the backward-flow convention of :mod:`flows.base`. Moving
objects (a textured ellipse / rounded rectangle cut from another photograph)
are layered on top with their own motion; their masks are analytic shapes
evaluated at ``p`` in the reference and at ``p + flow(p)`` in the current
frame, so object boundaries are exact too.

Motion mix (``kind`` of :meth:`SyntheticFlow.sample`):

- ``translation``: one global shift, integer (zoom 1) or sub-pixel, up to
  ``max_shift`` px per axis (the unit tests check integer shifts of up to 12 px).
- ``affine``: rotation, anisotropic zoom, shear and shift around the centre.
- ``piecewise``: a translated or affine background plus 1-3 moving objects.
- a ``static`` share (0 by default) of pairs with no motion at all: the same
  view twice, each with its own photometric noise. Real video has many still
  regions, and an estimator must read them as zero flow, not as a small drift.
- a ``texture`` share (0 by default) of pairs with a patch of periodic texture
  (stripes or a grid a few px apart: shutters, fences, siding), of flat
  colour, or of a faint ramp with grain of a few grey levels (sky, walls)
  painted into the scene. Inside such a patch the flow is ambiguous
  (aperture problem) or unseen; the estimator must carry it in from the
  patch's surroundings. The patch is an analytic function of source
  coordinates, evaluated at ``p`` and at ``p + flow(p)``, so it moves with the
  scene and the ground truth stays exact.

Sources: scikit-image's bundled photographs (no download) and, where the shared
data folder is present, frames of its ``train/`` videos. ``astronaut`` and
``coffee`` of scikit-image and the Vimeo test-list clips are held out for
evaluation (:func:`natural_images` with ``split="heldout"``); nothing under
``eval/`` is ever read here.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from dvc_common import InputError

#: scikit-image photographs used for training (all bundled with the wheel).
SKIMAGE_TRAIN = (
    "camera",
    "coins",
    "rocket",
    "chelsea",
    "brick",
    "grass",
    "gravel",
    "immunohistochemistry",
    "moon",
    "stereo_motorcycle",
)
#: scikit-image photographs kept out of training (tests and benchmarks).
SKIMAGE_HELDOUT = ("astronaut", "coffee")
KINDS = ("translation", "affine", "piecewise")


def _to_tensor(img: np.ndarray) -> torch.Tensor:
    """H x W (x C) uint8 -> 3 x H x W float in [0, 1]."""
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    img = img[..., :3]
    if img.dtype != np.uint8:
        img = (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)
    return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).float() / 255


def skimage_image(name: str) -> torch.Tensor:
    """One of scikit-image's bundled photographs as ``3 x H x W`` in [0, 1]."""
    from skimage import data

    img = getattr(data, name)()
    if name == "stereo_motorcycle":
        img = img[0]
    return _to_tensor(np.asarray(img))


def _read_png(path: Path) -> torch.Tensor:
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise InputError(f"cannot read image {path}")
    return _to_tensor(cv2.cvtColor(img, cv2.COLOR_BGR2RGB))


def _video_frames(path: Path, count: int) -> list[torch.Tensor]:
    """``count`` frames spread evenly over a video (decoded with PyAV)."""
    import av

    with av.open(str(path)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    if not frames:
        raise InputError(f"no video frames in {path}")
    idx = np.linspace(0, len(frames) - 1, num=min(count, len(frames))).astype(int)
    return [_to_tensor(frames[i]) for i in idx]


def natural_images(
    split: str = "train", data_root: str | Path | None = None
) -> list[torch.Tensor]:
    """The natural images that synthetic pairs are cut from.

    Args:
        split: ``"train"`` or ``"heldout"`` (disjoint sets of photographs).
        data_root: the shared data folder (``../shared/data``); None or a
            missing folder means scikit-image's photographs only. Only its
            ``train/`` part is read.

    Returns:
        A list of ``3 x H x W`` float tensors in [0, 1].
    """
    if split not in ("train", "heldout"):
        raise InputError(f"split must be 'train' or 'heldout', got {split!r}")
    names = SKIMAGE_TRAIN if split == "train" else SKIMAGE_HELDOUT
    images = [skimage_image(n) for n in names]
    if data_root is None:
        return images
    train = Path(data_root) / "train"
    vimeo = train / "vimeo_septuplet"
    listing = vimeo / ("sep_trainlist.txt" if split == "train" else "sep_testlist.txt")
    if listing.is_file():
        for clip in listing.read_text().split():
            for k in (1, 4, 7):
                png = vimeo / "sequences" / clip / f"im{k}.png"
                if png.is_file():
                    images.append(_read_png(png))
    video = train / "videos" / "vtest.avi"
    if split == "train" and video.is_file():
        images += _video_frames(video, 12)
    return images


def photo_sources(
    root: str | Path, downscale: float = 3.0, repeat: int = 1
) -> list[torch.Tensor]:
    """Every photograph under ``root``, reduced by ``downscale``, as sources.

    Large camera JPEGs carry block artifacts and sensor noise at full size; a
    reduction averages them away and brings the scale of their structure
    nearer a video frame's. ``repeat`` lists each one that many times (the
    same tensor, no copy): a photograph holds many crops' worth of content.
    """
    import cv2

    root = Path(root)
    if "eval" in root.resolve().parts:
        raise InputError(f"{root} is under eval/: never a training source")
    if int(repeat) < 1 or not downscale >= 1.0:
        raise InputError(
            f"need repeat >= 1 and downscale >= 1, got {repeat}, {downscale}"
        )
    files = sorted(
        f for f in root.rglob("*") if f.suffix.lower() in (".jpg", ".jpeg", ".png")
    )
    if not files:
        raise InputError(f"no .jpg / .png photographs under {root}")
    out = []
    for f in files:
        img = (_read_png(f).permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
        h, w = img.shape[:2]
        size = (max(1, round(w / downscale)), max(1, round(h / downscale)))
        small = cv2.resize(img, size, interpolation=cv2.INTER_AREA)
        out += [_to_tensor(small)] * int(repeat)
    return out


def _affine_flow(
    h: int, w: int, mat: torch.Tensor, shift: torch.Tensor, centre: torch.Tensor
) -> torch.Tensor:
    """Flow ``(A - I)(p - c) + t`` on an ``h x w`` grid -> ``2 x h x w`` (px)."""
    ys, xs = torch.meshgrid(
        torch.arange(h, dtype=torch.float32),
        torch.arange(w, dtype=torch.float32),
        indexing="ij",
    )
    p = torch.stack([xs - centre[0], ys - centre[1]])  # 2 x h x w
    d = mat - torch.eye(2)
    return torch.einsum("ij,jhw->ihw", d, p) + shift[:, None, None]


def _sample(src: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Bilinear sample of ``src`` (3 x H x W) at pixel coordinates ``x, y``."""
    hs, ws = src.shape[-2:]
    grid = torch.stack([2 * x / (ws - 1) - 1, 2 * y / (hs - 1) - 1], dim=-1)
    out = F.grid_sample(
        src[None],
        grid[None],
        mode="bilinear",
        padding_mode="border",
        align_corners=True,
    )
    return out[0]


def _paint(img: torch.Tensor, patch: dict, u: torch.Tensor, v: torch.Tensor):
    """``img`` with ``patch`` painted where the source coordinates ``u, v``
    fall inside its rectangle."""
    u0, v0, u1, v1 = patch["rect"]
    inside = (u >= u0) & (u < u1) & (v >= v0) & (v < v1)
    if patch["kind"] in ("flat", "faint"):
        t = 0.5 * (u - u0) / max(u1 - u0, 1e-6)  # a gentle ramp, no texture
    else:

        def wave(angle: float) -> torch.Tensor:
            along = u * math.cos(angle) + v * math.sin(angle)
            arg = 2 * math.pi * along / patch["period"] + patch["phase"]
            return 0.5 + 0.5 * torch.tanh(patch["sharp"] * torch.sin(arg))

        t = wave(patch["angle"])
        if patch["kind"] == "grid":
            t = torch.maximum(t, wave(patch["angle"] + 0.5 * math.pi))
    c0, c1 = patch["colours"]
    fill = c0[:, None, None] * (1 - t) + c1[:, None, None] * t
    if patch["kind"] == "faint":
        # Sky, walls, skin: a ramp plus grain of a few grey levels, the only
        # cue to the motion there. Plane waves in source coordinates, so the
        # grain moves exactly with the scene.
        grain = torch.zeros_like(u)
        for angle, period, phase in patch["waves"].tolist():
            along = u * math.cos(angle) + v * math.sin(angle)
            grain = grain + torch.sin(2 * math.pi * along / period + phase)
        fill = fill + patch["amp"] * grain / math.sqrt(len(patch["waves"]))
    return torch.where(inside, fill, img)


def _shape_mask(
    x: torch.Tensor, y: torch.Tensor, params: tuple[float, ...]
) -> torch.Tensor:
    """Analytic super-ellipse mask (boolean) evaluated at pixel coordinates."""
    cx, cy, a, b, phi, n = params
    c, s = math.cos(phi), math.sin(phi)
    u = ((x - cx) * c + (y - cy) * s) / a
    v = (-(x - cx) * s + (y - cy) * c) / b
    return u.abs() ** n + v.abs() ** n <= 1.0


class SyntheticFlow:
    """Generator of ``(cur, ref, flow)`` training pairs from natural images.

    Args:
        images: source photographs, ``3 x H x W`` in [0, 1] (at least one).
        size: ``(h, w)`` of the generated frames.
        max_shift: largest global shift per axis, in px.
        kinds: the motion kinds to draw from.
        weights: their probabilities (normalised).
        noise: largest std of the Gaussian noise added to each frame.
        photometric: apply the random gain / bias / noise (False: the frames
            are exact samples of the source, for checking the ground truth).
        static: share of pairs with zero flow (drawn before the motion kind).
        texture: share of pairs with a periodic-texture or flat patch.
        faint: share of those patches that are a faint ramp with grain (0:
            the stripes / grid / flat mix alone, drawn as before).
    """

    def __init__(
        self,
        images: list[torch.Tensor],
        size: tuple[int, int] = (96, 96),
        max_shift: float = 16.0,
        kinds: tuple[str, ...] = KINDS,
        weights: tuple[float, ...] = (0.4, 0.25, 0.35),
        noise: float = 0.01,
        photometric: bool = True,
        static: float = 0.0,
        texture: float = 0.0,
        faint: float = 0.0,
    ) -> None:
        if not images:
            raise InputError("SyntheticFlow needs at least one source image")
        if any(k not in KINDS for k in kinds) or len(kinds) != len(weights):
            raise InputError(f"kinds must be drawn from {KINDS}, one weight each")
        self.size = size
        self.max_shift = float(max_shift)
        self.kinds = kinds
        self.weights = np.asarray(weights, dtype=float) / float(np.sum(weights))
        self.noise = noise
        self.photometric = photometric
        if not 0.0 <= static <= 1.0:
            raise InputError(f"static must be a share in [0, 1], got {static}")
        self.static = float(static)
        if not 0.0 <= texture <= 1.0:
            raise InputError(f"texture must be a share in [0, 1], got {texture}")
        self.texture = float(texture)
        if not 0.0 <= faint <= 1.0:
            raise InputError(f"faint must be a share in [0, 1], got {faint}")
        self.faint = float(faint)
        # A half-size copy of each source: zooming out samples it instead of
        # skipping pixels of the full one (no aliasing).
        self.images = [(im, F.avg_pool2d(im[None], 2)[0]) for im in images]

    def _view(self, rng: np.random.Generator, integer: bool = False):
        """A random source, zoom and crop origin: ``(src, s, ox, oy)``."""
        h, w = self.size
        full, half = self.images[rng.integers(len(self.images))]
        src = half if rng.random() < 0.3 and min(half.shape[-2:]) > 2 * h else full
        s = 1.0 if integer else float(rng.uniform(0.8, 1.3))
        hs, ws = src.shape[-2:]
        # The margin keeps p + flow(p) inside the source: every cur pixel has
        # real content, also where it falls outside the reference crop.
        margin = self.max_shift + 0.25 * max(h, w)
        span_x = ws - (w / s + 2 * margin)
        span_y = hs - (h / s + 2 * margin)
        if span_x < 1 or span_y < 1:  # small source: zoom in until it fits
            s = max(s, w / max(ws - 2 * margin - 1, 1), h / max(hs - 2 * margin - 1, 1))
            span_x = max(ws - (w / s + 2 * margin), 1)
            span_y = max(hs - (h / s + 2 * margin), 1)
            integer = False
        ox = margin + rng.uniform(0, span_x)
        oy = margin + rng.uniform(0, span_y)
        if integer:
            ox, oy = float(int(ox)), float(int(oy))
        return src, s, ox, oy

    def _global_motion(self, rng: np.random.Generator, kind: str) -> torch.Tensor:
        h, w = self.size
        m = self.max_shift if rng.random() < 0.75 else min(self.max_shift, 3.0)
        shift = torch.tensor(rng.uniform(-m, m, size=2), dtype=torch.float32)
        if kind == "translation":
            if rng.random() < 0.5:
                shift = shift.round()
            return shift[:, None, None].expand(2, h, w).clone()
        theta = math.radians(rng.uniform(-8, 8))
        zx, zy = rng.uniform(0.9, 1.1, size=2)
        shear = rng.uniform(-0.06, 0.06)
        rot = torch.tensor(
            [[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]]
        )
        mat = rot @ torch.tensor([[zx, shear], [0.0, zy]], dtype=torch.float32)
        centre = torch.tensor(
            [rng.uniform(0.25, 0.75) * w, rng.uniform(0.25, 0.75) * h],
            dtype=torch.float32,
        )
        # Cap the largest displacement so the pair stays within max_shift-ish.
        flow = _affine_flow(h, w, mat, 0.5 * shift, centre)
        peak = flow.abs().amax()
        limit = 1.5 * self.max_shift
        return flow * (limit / peak) if peak > limit else flow

    def sample(
        self, rng: np.random.Generator, kind: str | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One pair.

        Args:
            rng: the random generator (all randomness comes from it).
            kind: a motion kind, or None to draw one from the mix.

        Returns:
            ``cur``, ``ref``: ``3 x h x w`` in [0, 1]; ``flow``: ``2 x h x w``
            backward flow in px (``backward_warp(ref, flow) ~= cur``).
        """
        h, w = self.size
        # Drawn only when asked for, so the default stream of pairs is unchanged.
        static = kind is None and self.static > 0 and rng.random() < self.static
        if not static:
            if kind is None:
                kind = str(rng.choice(self.kinds, p=self.weights))
            if kind not in KINDS:
                raise InputError(f"unknown motion kind {kind!r}; choices: {KINDS}")
        integer = kind == "translation" and rng.random() < 0.5
        src, s, ox, oy = self._view(rng, integer=integer)
        if static:
            flow = torch.zeros(2, h, w)
        else:
            flow = self._global_motion(
                rng, "translation" if kind == "translation" else "affine"
            )
        if kind == "translation" and integer:
            flow = flow.round()
        ys, xs = torch.meshgrid(
            torch.arange(h, dtype=torch.float32),
            torch.arange(w, dtype=torch.float32),
            indexing="ij",
        )
        ref = _sample(src, ox + xs / s, oy + ys / s)
        cur = _sample(src, ox + (xs + flow[0]) / s, oy + (ys + flow[1]) / s)
        if self.texture > 0 and rng.random() < self.texture:
            patch = self._texture_patch(rng, ox, oy, s)
            ref = _paint(ref, patch, ox + xs / s, oy + ys / s)
            cur = _paint(cur, patch, ox + (xs + flow[0]) / s, oy + (ys + flow[1]) / s)
        if kind == "piecewise":
            for _ in range(int(rng.integers(1, 4))):
                ref, cur, flow = self._add_object(rng, ref, cur, flow, xs, ys)
        return self._photometric(rng, cur), self._photometric(rng, ref), flow

    def _texture_patch(
        self, rng: np.random.Generator, ox: float, oy: float, s: float
    ) -> dict:
        """A rectangle of the view in source coordinates and what fills it."""
        h, w = self.size
        ph, pw = rng.uniform(0.25, 0.6) * h, rng.uniform(0.25, 0.6) * w
        y0, x0 = rng.uniform(0, h - ph), rng.uniform(0, w - pw)
        colours = rng.uniform(0.05, 0.95, size=(2, 3))
        if rng.random() < 0.5:  # low contrast, as weathered siding or shade
            colours[1] = colours[0] + rng.uniform(0.1, 0.3) * (colours[1] - colours[0])
        patch = {
            "rect": (ox + x0 / s, oy + y0 / s, ox + (x0 + pw) / s, oy + (y0 + ph) / s),
            # faint = 0 draws nothing extra: earlier runs' streams stay as they were
            "kind": "faint"
            if self.faint > 0 and rng.random() < self.faint
            else str(rng.choice(["stripes", "grid", "flat"], p=[0.5, 0.25, 0.25])),
            "angle": float(rng.choice([0.0, 0.5 * math.pi, rng.uniform(0, math.pi)])),
            "period": float(rng.uniform(3.0, 12.0)) / s,
            "phase": float(rng.uniform(0, 2 * math.pi)),
            # tanh(k sin) runs from a sinusoid (k = 1) to a square wave (k = 8).
            "sharp": float(rng.uniform(1.0, 8.0)),
            "colours": torch.tensor(colours, dtype=torch.float32).clamp(0, 1),
        }
        if patch["kind"] == "faint":
            k = 8
            patch["waves"] = torch.tensor(
                np.stack(
                    [
                        rng.uniform(0, math.pi, k),
                        rng.uniform(3.0, 40.0, k) / s,
                        rng.uniform(0, 2 * math.pi, k),
                    ],
                    axis=1,
                )
            )
            # 1-5 grey levels (of 255) of grain
            patch["amp"] = float(rng.uniform(0.004, 0.02))
        return patch

    def _add_object(self, rng, ref, cur, flow, xs, ys):
        """Layer one moving textured shape on top of the pair."""
        h, w = self.size
        src, s, ox, oy = self._view(rng)
        shape = (
            rng.uniform(0.1, 0.9) * w,
            rng.uniform(0.1, 0.9) * h,
            rng.uniform(0.1, 0.35) * w,
            rng.uniform(0.1, 0.35) * h,
            rng.uniform(0, math.pi),
            float(rng.choice([2.0, 6.0])),
        )
        shift = torch.tensor(rng.uniform(-self.max_shift, self.max_shift, size=2))
        theta = math.radians(rng.uniform(-5, 5))
        z = rng.uniform(0.95, 1.05)
        mat = z * torch.tensor(
            [[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]]
        )
        centre = torch.tensor([shape[0], shape[1]], dtype=torch.float32)
        f_obj = _affine_flow(h, w, mat.float(), shift.float(), centre)
        in_ref = _shape_mask(xs, ys, shape)
        qx, qy = xs + f_obj[0], ys + f_obj[1]
        in_cur = _shape_mask(qx, qy, shape)
        tex_ref = _sample(src, ox + xs / s, oy + ys / s)
        tex_cur = _sample(src, ox + qx / s, oy + qy / s)
        ref = torch.where(in_ref, tex_ref, ref)
        cur = torch.where(in_cur, tex_cur, cur)
        flow = torch.where(in_cur, f_obj, flow)
        return ref, cur, flow

    def _photometric(self, rng: np.random.Generator, x: torch.Tensor) -> torch.Tensor:
        if not self.photometric:
            return x
        gain = rng.uniform(0.95, 1.05)
        bias = rng.uniform(-0.02, 0.02)
        sigma = rng.uniform(0, self.noise)
        noise = torch.from_numpy(rng.standard_normal(x.shape).astype(np.float32))
        return (x * gain + bias + sigma * noise).clamp(0, 1)

    def batch(
        self, n: int, rng: np.random.Generator, kind: str | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``n`` pairs stacked: ``(B x 3 x h x w, B x 3 x h x w, B x 2 x h x w)``."""
        pairs = [self.sample(rng, kind) for _ in range(n)]
        return tuple(torch.stack(t) for t in zip(*pairs))  # type: ignore[return-value]


def heldout_set(
    n: int = 32,
    size: tuple[int, int] = (128, 128),
    seed: int = 1234,
    data_root: str | Path | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A fixed evaluation set made from the held-out photographs only.

    Returns:
        ``cur, ref`` (``n x 3 x h x w``) and ``flow`` (``n x 2 x h x w``, px).
    """
    gen = SyntheticFlow(natural_images("heldout", data_root), size=size, noise=0.005)
    return gen.batch(n, np.random.default_rng(seed))
