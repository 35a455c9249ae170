"""Frames of ordinary video files (any container and codec PyAV decodes).

Random access into a compressed stream costs a decode from the previous key
frame (250 frames back in the MS-MPEG4 test clip: about 0.3 s per sample), far
slower than a training step. So each video is decoded once into a raw RGB frame
cache (``H * W * 3`` bytes per frame, memory-mapped), keyed by the file's path,
size and modification time; later runs, workers and processes reuse it. The
cache is written to a temporary file and renamed, so a killed decode leaves no
half cache behind.

The last ``val_fraction`` of each video's frames is held out for validation
(unless a separate ``val_root`` is given).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np

from dvc_common import InputError

VIDEO_SUFFIXES = (
    ".mp4", ".mkv", ".avi", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".ts",
    ".flv", ".wmv", ".y4m", ".3gp", ".ogv", ".mts", ".m2ts",
)  # fmt: skip


class VideoFrames:
    """A run of frames ``[start, start + length)`` of a cached, decoded video."""

    def __init__(self, cache: Path, shape: tuple[int, int, int], start: int, length: int,
                 name: str) -> None:  # fmt: skip
        self.cache, self.shape = cache, shape
        self.start, self.length = start, length
        self.name = name
        self._frames: np.ndarray | None = None

    def __getstate__(self) -> dict:
        # A memory map does not travel to worker processes; each maps its own.
        return {**self.__dict__, "_frames": None}

    def read(self, t: int) -> np.ndarray:
        if not 0 <= t < self.length:
            raise IndexError(
                f"{self.name}: frame {t} out of range 0..{self.length - 1}"
            )
        if self._frames is None:
            self._frames = np.memmap(
                self.cache, dtype=np.uint8, mode="r", shape=(*self.shape, 3)
            )
        return self._frames[self.start + t]


def find_videos(root: str | Path) -> list[Path]:
    """``root`` itself if it is a file, else the video files under it (recursive).

    Raises:
        InputError: ``root`` does not exist or holds no video file.
    """
    root = Path(root).expanduser()
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise InputError(
            f"no such file or directory: {root} (dataset.root must be a video file "
            f"or a folder of them)"
        )
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES)
    if not files:
        raise InputError(
            f"no video files in {root} (looked for {', '.join(VIDEO_SUFFIXES)})"
        )
    return files


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "dvc-ext" / "frames"


def decode_to_cache(
    path: Path, cache_dir: str | Path | None = None, max_frames: int | None = None
) -> tuple[Path, tuple[int, int, int]]:
    """Decode ``path`` once into a raw RGB frame file; return it and its shape.

    Returns:
        ``(cache_file, (frames, height, width))``; the file holds
        ``frames x height x width x 3`` uint8.

    Raises:
        InputError: PyAV cannot open or decode the file, it has no video stream
            or no frame, or its frame size changes mid-stream.
    """
    import av

    cache_dir = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    st = path.stat()
    ident = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{max_frames}"
    key = hashlib.sha1(ident.encode()).hexdigest()[:16]
    data = cache_dir / f"{path.stem[:40]}-{key}.rgb"
    meta = data.with_suffix(".json")
    if meta.is_file() and data.is_file():
        n, h, w = json.loads(meta.read_text())["shape"]
        if data.stat().st_size == n * h * w * 3:
            return data, (n, h, w)
    cache_dir.mkdir(parents=True, exist_ok=True)
    n, size = 0, None
    fd, tmp = tempfile.mkstemp(prefix=f".{data.name}.", suffix=".tmp", dir=cache_dir)
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                container = av.open(str(path))
            except Exception as e:  # PyAV raises its own errors per libav code
                raise InputError(f"cannot open {path} as a video ({e})") from None
            with container:
                if not container.streams.video:
                    raise InputError(f"{path} has no video stream")
                try:
                    for frame in container.decode(video=0):
                        rgb = frame.to_ndarray(format="rgb24")
                        if size is None:
                            size = rgb.shape[:2]
                        elif rgb.shape[:2] != size:
                            raise InputError(
                                f"{path}: frame size changes from {size} to "
                                f"{rgb.shape[:2]} at frame {n}"
                            )
                        out.write(np.ascontiguousarray(rgb).tobytes())
                        n += 1
                        if max_frames is not None and n >= max_frames:
                            break
                except InputError:
                    raise
                except Exception as e:
                    raise InputError(
                        f"cannot decode {path} at frame {n} ({e})"
                    ) from None
        if n == 0:
            raise InputError(f"{path} decodes to no frames")
        os.replace(tmp, data)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    shape = (n, int(size[0]), int(size[1]))
    fd, tmp = tempfile.mkstemp(prefix=f".{meta.name}.", suffix=".tmp", dir=cache_dir)
    with os.fdopen(fd, "w") as f:
        json.dump({"source": str(path.resolve()), "shape": list(shape)}, f)
    os.replace(tmp, meta)
    return data, shape


def video_sources(
    root: str | Path,
    split: str = "train",
    val_fraction: float = 0.05,
    cache_dir: str | Path | None = None,
    max_frames: int | None = None,
    min_frames: int = 2,
) -> list[VideoFrames]:
    """Frame sources of the videos under ``root``.

    Args:
        split: ``train`` (the first ``1 - val_fraction`` of each video),
            ``val`` (the rest) or ``all``.
        val_fraction: fraction of each video's frames held out for validation.
        cache_dir: where decoded frames are kept (default
            ``$XDG_CACHE_HOME/dvc-ext/frames``).
        max_frames: decode at most this many frames of each video.
        min_frames: a part shorter than this is skipped.
    """
    if split not in ("train", "val", "all"):
        raise ValueError(f"split must be train, val or all, got {split!r}")
    if not 0.0 <= val_fraction < 1.0:
        raise InputError(f"dataset.val_fraction must be in [0, 1), got {val_fraction}")
    sources = []
    for path in find_videos(root):
        cache, (n, h, w) = decode_to_cache(path, cache_dir, max_frames)
        n_val = int(round(n * val_fraction)) if split != "all" else 0
        start, length = {
            "train": (0, n - n_val),
            "val": (n - n_val, n_val),
            "all": (0, n),
        }[split]
        if length >= min_frames:
            sources.append(VideoFrames(cache, (n, h, w), start, length, f"{path.name}"))
    return sources
