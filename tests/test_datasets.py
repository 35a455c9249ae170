"""Training data: Vimeo-90k, video files, image folders, the resumable sampler."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from dvc_common import InputError
from dvc_ext.data import (
    FrameDataset,
    ResumableSampler,
    build_datasets,
    image_sources,
    read_image,
    video_sources,
    vimeo_clips,
)


def _write_png(path: Path, img: np.ndarray) -> None:
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.ascontiguousarray(img[..., ::-1]))


def _frames(n: int, h: int, w: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(n)]


def _fake_vimeo(
    root: Path, clips=("00001/0001", "00001/0002"), test=("00002/0001",)
) -> dict:
    frames = {}
    for i, name in enumerate(list(clips) + list(test)):
        frames[name] = _frames(7, 64, 96, seed=i)
        for t, f in enumerate(frames[name]):
            _write_png(root / "sequences" / name / f"im{t + 1}.png", f)
    (root / "sep_trainlist.txt").write_text("\n".join(clips) + "\n")
    (root / "sep_testlist.txt").write_text("\n".join(test) + "\n")
    return frames


def _write_video(path: Path, frames: list[np.ndarray], codec: str = "ffv1") -> None:
    import av

    h, w = frames[0].shape[:2]
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=10)
        s.width, s.height = w, h
        s.pix_fmt = "bgr0" if codec == "ffv1" else "yuv420p"
        for f in frames:
            for p in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


# -- Vimeo-90k ------------------------------------------------------------------------
def test_vimeo_pairs_are_frames_t_minus_k_and_t(tmp_path):
    frames = _fake_vimeo(tmp_path)
    for k in (1, 2):
        ds = FrameDataset(
            vimeo_clips(tmp_path), 2, ref_distance=k, crop=(64, 96),
            hflip=False, vflip=False, reverse=False,
        )  # fmt: skip
        assert len(ds) == 2 * (7 - k)
        for i in range(len(ds)):
            clip = ["00001/0001", "00001/0002"][i // (7 - k)]
            t = k + i % (7 - k)
            x = ds[(i, (0, 0, i))]["frames"].permute(0, 2, 3, 1).numpy()
            assert x.shape == (2, 64, 96, 3) and x.dtype == np.uint8
            assert np.array_equal(x[0], frames[clip][t - k])
            assert np.array_equal(x[1], frames[clip][t])
        # With reversal the same pair is also read backwards in time.
        ds_r = FrameDataset(vimeo_clips(tmp_path), 2, ref_distance=k, crop=(64, 96),
                            hflip=False, vflip=False, reverse=True)  # fmt: skip
        orders = set()
        for seed in range(16):
            x = ds_r[(0, (seed, 0, 0))]["frames"].permute(0, 2, 3, 1).numpy()
            a, b = frames["00001/0001"][0], frames["00001/0001"][k]
            assert (np.array_equal(x[0], a) and np.array_equal(x[1], b)) or (
                np.array_equal(x[0], b) and np.array_equal(x[1], a)
            )
            orders.add(bool(np.array_equal(x[0], a)))
        assert orders == {True, False}


def test_vimeo_crops_flips_are_seeded_and_shared_by_both_frames(tmp_path):
    _fake_vimeo(tmp_path)
    ds = FrameDataset(vimeo_clips(tmp_path), 2, crop=(32, 32))
    a = ds[(3, (7, 1, 5))]["frames"]
    assert torch.equal(a, ds[(3, (7, 1, 5))]["frames"])  # same key, same sample
    others = [ds[(3, (7, 1, p))]["frames"] for p in range(6, 12)]
    assert any(not torch.equal(a, o) for o in others)
    # Every crop of the pair is taken at one position of both frames: the pair
    # is a crop of the full pair under one flip.
    full = FrameDataset(vimeo_clips(tmp_path), 2, hflip=False, vflip=False, reverse=False,
                        multiple=32)[3]["frames"]  # fmt: skip
    assert full.shape == (2, 3, 64, 96)
    found = False
    for flip_h in (False, True):
        for flip_v in (False, True):
            f = full.flip(-1) if flip_h else full
            f = f.flip(-2) if flip_v else f
            for rev in (False, True):
                g = f.flip(0) if rev else f
                for y in range(0, 33):
                    for x in range(0, 65):
                        if torch.equal(g[..., y : y + 32, x : x + 32], a):
                            found = True
    assert found


def test_vimeo_validation_is_deterministic_centre_crops(tmp_path):
    frames = _fake_vimeo(tmp_path)
    train, val = build_datasets(
        {"name": "vimeo", "root": str(tmp_path), "crop": 64, "val_crop": None}, 2, 32
    )
    assert len(train) == 12 and len(val) == 6
    x = val[0]["frames"].permute(0, 2, 3, 1).numpy()
    # 64 x 96 frames are already multiples of 32: the whole frame.
    assert np.array_equal(x[0], frames["00002/0001"][0])
    assert np.array_equal(x[1], frames["00002/0001"][1])
    _, val = build_datasets({"name": "vimeo", "root": str(tmp_path), "crop": 64,
                             "val_crop": 32, "val_limit": 2}, 2, 32)  # fmt: skip
    assert len(val) == 2
    assert np.array_equal(val[0]["frames"][0].permute(1, 2, 0).numpy(),
                          frames["00002/0001"][0][16:48, 32:64])  # fmt: skip


def test_vimeo_errors_name_what_was_expected(tmp_path):
    with pytest.raises(InputError, match="no such directory.*sep_trainlist.txt"):
        vimeo_clips(tmp_path / "nope")
    (tmp_path / "sequences").mkdir()
    with pytest.raises(InputError, match="sep_trainlist.txt not found"):
        vimeo_clips(tmp_path)
    (tmp_path / "sep_trainlist.txt").write_text("00001/0001\n")
    with pytest.raises(InputError, match="lists '00001/0001' but"):
        vimeo_clips(tmp_path)
    _write_png(tmp_path / "sequences/00001/0001/im1.png", _frames(1, 8, 8)[0])
    with pytest.raises(InputError, match="lacks im2.png"):
        vimeo_clips(tmp_path)
    with pytest.raises(InputError, match="dataset.root is not set"):
        build_datasets({"name": "vimeo", "root": "???", "crop": 64}, 2)


def test_vimeo_shared_subset(shared_data):
    root = shared_data / "train" / "vimeo_septuplet"
    train, val = build_datasets({"name": "vimeo", "root": str(root), "crop": 128}, 2)
    assert len(train) == 14 * 6 and len(val) == 2 * 6
    x = train[(5, (0, 0, 5))]["frames"]
    assert x.shape == (2, 3, 128, 128) and x.dtype == torch.uint8
    ref = read_image(root / "sequences" / "00001" / "0001" / "im1.png")
    assert ref.shape == (256, 448, 3)
    v = val[0]["frames"]
    assert v.shape == (2, 3, 256, 448)  # no val_crop: the whole frame
    # Consecutive frames of real video are close, but not equal.
    d = (v[0].float() - v[1].float()).abs().mean()
    assert 0 < d < 40


# -- video files ----------------------------------------------------------------------
def test_video_files_give_the_same_pairs(tmp_path):
    frames = _frames(12, 64, 64, seed=3)
    _write_video(tmp_path / "clips" / "a.mkv", frames)
    (tmp_path / "clips" / "notes.txt").write_text("not a video")
    cache = tmp_path / "cache"
    src = video_sources(tmp_path / "clips", "all", cache_dir=cache)
    assert len(src) == 1 and src[0].length == 12
    ds = FrameDataset(src, 2, crop=(64, 64), hflip=False, vflip=False, reverse=False)
    assert len(ds) == 11
    x = ds[(4, (0, 0, 0))]["frames"].permute(0, 2, 3, 1).numpy()
    # ffv1 is lossless: the decoded pair is exactly frames 4 and 5.
    assert np.array_equal(x[0], frames[4]) and np.array_equal(x[1], frames[5])
    # A second look-up reuses the decoded cache instead of decoding again.
    (cache_file,) = cache.glob("*.rgb")
    stamp = cache_file.stat().st_mtime_ns
    train = video_sources(tmp_path / "clips", "train", 0.25, cache_dir=cache)
    val = video_sources(tmp_path / "clips", "val", 0.25, cache_dir=cache)
    assert cache_file.stat().st_mtime_ns == stamp
    assert (train[0].start, train[0].length, val[0].start, val[0].length) == (
        0,
        9,
        9,
        3,
    )
    assert np.array_equal(val[0].read(0), frames[9])
    # Worker processes map the cache themselves (the source pickles without it).
    loader = DataLoader(ds, batch_size=2, num_workers=1,
                        sampler=ResumableSampler(len(ds), 2, seed=0))  # fmt: skip
    assert next(iter(loader))["frames"].shape == (2, 2, 3, 64, 64)


def test_video_file_errors(tmp_path):
    with pytest.raises(InputError, match="no such file or directory"):
        video_sources(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no video files"):
        video_sources(tmp_path / "empty")
    bad = tmp_path / "bad" / "x.mp4"
    bad.parent.mkdir()
    bad.write_bytes(b"\0" * 100)
    with pytest.raises(InputError, match="x.mp4"):
        video_sources(bad, cache_dir=tmp_path / "cache")
    assert not list((tmp_path / "cache").glob("*.rgb"))  # nothing half-written


def test_shared_videos(shared_data, tmp_path):
    root = shared_data / "train" / "videos"
    src = video_sources(root, "train", 0.1, cache_dir=tmp_path, max_frames=30)
    names = sorted(p.name for p in root.iterdir() if p.suffix in (".avi", ".mp4"))
    assert sorted(s.name for s in src) == names  # every video, each one source
    assert {"carphone_pristine.mp4", "vtest.avi"} <= set(names)
    n = len(names)
    ds = FrameDataset(src, 2, crop=(128, 128))
    assert len(ds) == n * (27 - 1)
    x = ds[(0, (1, 2, 3))]["frames"]
    assert x.shape == (2, 3, 128, 128)
    assert 0 < (x[0].float() - x[1].float()).abs().mean() < 40
    mixed, val = build_datasets(
        {"name": "mixed", "crop": 128, "val_crop": 128,
         "parts": {"vimeo": {"name": "vimeo", "root": str(shared_data / "train" / "vimeo_septuplet")},
                   "videos": {"name": "video_files", "root": str(root), "cache_dir": str(tmp_path),
                              "max_frames": 30, "val_fraction": 0.1}}},
        2,
    )  # fmt: skip
    assert len(mixed) == 84 + n * 26 and len(val) == 12 + n * 2


# -- images ---------------------------------------------------------------------------
def test_image_folder(tmp_path):
    imgs = _frames(5, 40, 50, seed=4)
    for i, im in enumerate(imgs):
        _write_png(tmp_path / "sub" / f"{i}.png", im)
    import cv2

    cv2.imwrite(str(tmp_path / "grey.png"), imgs[0][..., 0])
    train, val = build_datasets(
        {"name": "images", "root": str(tmp_path), "crop": 64, "val_fraction": 0.2,
         "val_crop": 32},
        1, 32,
    )  # fmt: skip
    assert len(train) + len(val) == 6 and len(val) == 1
    x = train[(0, (0, 0, 0))]["frames"]
    assert x.shape == (1, 3, 64, 64)  # smaller than the crop: mirror-padded
    g = read_image(tmp_path / "grey.png")
    assert g.shape == (40, 50, 3) and np.array_equal(g[..., 0], g[..., 2])
    with pytest.raises(InputError, match="task=pframe needs frame pairs"):
        build_datasets({"name": "images", "root": str(tmp_path)}, 2)
    (tmp_path / "none").mkdir()
    with pytest.raises(InputError, match="no images"):
        image_sources(tmp_path / "none")
    with pytest.raises(InputError, match="multiple of 64"):
        build_datasets({"name": "images", "root": str(tmp_path), "crop": 100}, 1, 64)


def test_image_read_errors(tmp_path):
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(InputError, match="cannot read"):
        read_image(tmp_path / "broken.png")
    with pytest.raises(InputError, match="not found"):
        read_image(tmp_path / "missing.png")


# -- the sampler ----------------------------------------------------------------------
def test_sampler_shards_and_resumes():
    full = list(ResumableSampler(23, 4, seed=5))
    assert len(full) == 20 and len({i for i, _ in full}) == 20
    s = ResumableSampler(23, 4, seed=5)
    s.set_epoch(0, 3)
    assert list(s) == full[12:]
    s.set_epoch(1)
    assert [i for i, _ in s] != [i for i, _ in full]
    ranks = [
        list(ResumableSampler(23, 4, seed=5, rank=r, world_size=2)) for r in range(2)
    ]
    assert all(len(r) == 8 for r in ranks)
    assert not {i for i, _ in ranks[0]} & {i for i, _ in ranks[1]}
    with pytest.raises(InputError, match="fewer than one batch"):
        ResumableSampler(3, 4, seed=0)


def test_batches_do_not_depend_on_worker_count(tmp_path):
    _fake_vimeo(tmp_path)
    ds = FrameDataset(vimeo_clips(tmp_path), 2, crop=(32, 32))

    def batches(workers):
        loader = DataLoader(ds, batch_size=3, num_workers=workers,
                            sampler=ResumableSampler(len(ds), 3, seed=1))  # fmt: skip
        return [b["frames"] for b in loader]

    a, b = batches(0), batches(2)
    assert len(a) == 4 and all(torch.equal(x, y) for x, y in zip(a, b))


def test_image_folder_downscale_and_repeat(tmp_path):
    imgs = _frames(4, 120, 160, seed=5)
    for i, im in enumerate(imgs):
        _write_png(tmp_path / f"{i}.png", im)
    cfg = {"name": "images", "root": str(tmp_path), "crop": 32, "val_fraction": 0.25,
           "val_crop": 32, "downscale": 2, "repeat": 5}  # fmt: skip
    train, val = build_datasets(cfg, 1, 32)
    assert len(train) == 3 * 5 and len(val) == 1  # repeat is for training only
    src = train.sources[0]
    small = src.read(4)
    assert small.shape == (60, 80, 3)
    # Area averaging: each pixel is the mean of a 2x2 block of the original.
    block = imgs[0][:2, :2].astype(np.float64).mean(axis=(0, 1))
    assert np.abs(small[0, 0].astype(np.float64) - block).max() <= 1
    a, b = train[(0, (0, 0, 0))]["frames"], train[(1, (0, 0, 1))]["frames"]
    assert a.shape == (1, 3, 32, 32) and not torch.equal(a, b)  # own random crops
    with pytest.raises(IndexError):
        src.read(5)
    for bad in ({"downscale": 0.5}, {"repeat": 0}):
        with pytest.raises(InputError, match="dataset."):
            build_datasets({**cfg, **bad}, 1, 32)


def test_vimeo_chains_are_consecutive_frames_k_apart(tmp_path):
    frames = _fake_vimeo(tmp_path)
    for n, k in ((3, 1), (4, 2)):
        ds = FrameDataset(
            vimeo_clips(tmp_path), n, ref_distance=k, crop=(64, 96),
            hflip=False, vflip=False, reverse=False,
        )  # fmt: skip
        per_clip = 7 - k * (n - 1)
        assert len(ds) == 2 * per_clip
        for i in range(len(ds)):
            clip = ["00001/0001", "00001/0002"][i // per_clip]
            last = k * (n - 1) + i % per_clip
            x = ds[(i, (0, 0, i))]["frames"].permute(0, 2, 3, 1).numpy()
            assert x.shape == (n, 64, 96, 3)
            for j in range(n):
                assert np.array_equal(x[j], frames[clip][last - k * (n - 1 - j)])
    train, val = build_datasets(
        {"name": "vimeo", "root": str(tmp_path), "crop": 64}, 4, 32, True, 2
    )
    assert train[(0, (0, 0, 0))]["frames"].shape[0] == 4
    assert val[0]["frames"].shape[0] == 2


def test_mixed_parts_repeat_their_training_sources(tmp_path):
    """``repeat`` weighs a part of a mixed set (Vimeo against a long video)
    for training; validation keeps each source once."""
    _fake_vimeo(tmp_path / "vimeo")
    _write_video(tmp_path / "clips" / "a.mkv", _frames(20, 64, 96, seed=7))
    parts = {
        "vimeo": {"name": "vimeo", "root": str(tmp_path / "vimeo")},
        "videos": {"name": "video_files", "root": str(tmp_path / "clips"),
                   "val_fraction": 0.25, "cache_dir": str(tmp_path / "cache")},
    }  # fmt: skip
    cfg = {"name": "mixed", "parts": parts, "crop": 64}
    base_train, base_val = build_datasets(cfg, 7, 32)
    assert len(base_train) == 2 * 1 + (15 - 6)  # one chain per septuplet
    parts["vimeo"]["repeat"] = 4
    train, val = build_datasets(cfg, 7, 32)
    assert len(train) == 4 * 2 + (15 - 6) and len(val) == len(base_val)
    names = [s.name for s in train.sources]
    assert names.count(base_train.sources[0].name) == 4
    for bad in (0, 1.5, "2", True):
        parts["vimeo"]["repeat"] = bad
        with pytest.raises(InputError, match="dataset.repeat"):
            build_datasets(cfg, 7, 32)
