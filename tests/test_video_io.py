"""Video I/O: name parsing, readers, writers, atomic output, bad input."""

from __future__ import annotations

import tracemalloc
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

from dvc_common import InputError
from dvc_ext import color
from dvc_ext.io import (
    ImageFolderReader,
    LosslessVideoWriter,
    PNGFolderWriter,
    PyAVReader,
    RawYUVReader,
    RawYUVWriter,
    Y4MReader,
    Y4MWriter,
    open_video,
    open_writer,
    parse_yuv_name,
    yuv420_frame_bytes,
)

HEVC_D = "eval/hevc/BasketballPass_2frames_416x240_50Hz_8bit_P420.yuv"
HEVC_C = "eval/hevc/C_RaceHorses_2frames_832x480_30Hz_8bit_P420.yuv"


def _frames(n: int, h: int, w: int) -> list[torch.Tensor]:
    """Smooth moving test frames (values on the 8-bit grid)."""
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    out = []
    for t in range(n):
        r = 0.5 + 0.4 * torch.sin((xx + 3 * t) / 7.0)
        g = 0.5 + 0.4 * torch.cos((yy - 2 * t) / 5.0)
        b = ((xx + yy + 5 * t) % 37) / 37.0
        out.append((torch.stack([r, g, b]) * 255).round() / 255)
    return out


def _write_yuv(path: Path, frames: list[torch.Tensor], **kw) -> None:
    with RawYUVWriter(path, **kw) as w:
        for f in frames:
            w.write(f)


def _no_temp_left(folder: Path) -> bool:
    return not [p for p in folder.iterdir() if p.name.startswith(".")]


# -- names ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "w", "h", "fps", "bits", "frames"),
    [
        ("BasketballPass_416x240_50.yuv", 416, 240, 50, None, None),
        ("RaceHorses_832x480_30Hz_8bit_P420.yuv", 832, 480, 30, 8, None),
        ("Beauty_1920x1080_120fps_420_8bit_YUV.yuv", 1920, 1080, 120, 8, None),
        ("BasketballPass_2frames_416x240_50Hz_8bit_P420.yuv", 416, 240, 50, 8, 2),
        ("RTn23_80x44p15_f15.yuv", 80, 44, 15, None, 15),
        ("CiscoVT2people_320x192_12fps.yuv", 320, 192, 12, None, None),
        ("Kimono1_1920x1080_24.yuv", 1920, 1080, 24, None, None),
        ("Jockey_3840x2160_120fps_420_10bit_YUV.yuv", 3840, 2160, 120, 10, None),
        ("foreman_cif.yuv", 352, 288, None, None, None),
        ("clip_1280x720_59.94.yuv", 1280, 720, Fraction(60000, 1001), None, None),
        ("whatever.yuv", None, None, None, None, None),
    ],
)
def test_parse_yuv_name(name, w, h, fps, bits, frames):
    n = parse_yuv_name(name)
    assert (n.width, n.height, n.fps, n.bit_depth, n.num_frames) == (
        w, h, fps, bits, frames,
    )  # fmt: skip


# -- raw YUV -------------------------------------------------------------------------


def test_yuv_write_read_round_trip_odd_size(tmp_path):
    frames = _frames(3, 45, 81)
    path = tmp_path / "clip_81x45_25.yuv"
    _write_yuv(path, frames)
    assert path.stat().st_size == 3 * (81 * 45 + 2 * 41 * 23)
    r = open_video(path)
    assert isinstance(r, RawYUVReader)
    i = r.info
    assert (i.width, i.height, i.fps, i.num_frames, i.kind) == (81, 45, 25, 3, "yuv")
    assert "BT.601 limited range" in i.conversion
    got = list(r.frames())
    assert [f.index for f in got] == [0, 1, 2]
    for f, x in zip(got, frames):
        y, u, v = f.yuv_u8
        assert y.shape == (45, 81) and u.shape == v.shape == (23, 41)
        ey, eu, ev = color.rgb_to_yuv420(x, "bt601", False)
        assert np.array_equal(y, color.to_u8(ey[0]))
        assert np.array_equal(u, color.to_u8(eu[0]))
        assert f.rgb.shape == (3, 45, 81)
        assert torch.equal(f.rgb, color.yuv420_to_rgb(*f.yuv, "bt601", False))
        # 4:2:0 loses the sawtooth's chroma edges: measured 0.024 mean error.
        assert float((f.rgb - x).abs().mean()) < 0.04
    # Iterating the reader gives the RGB tensors; start/count select frames.
    assert torch.equal(next(iter(r)), got[0].rgb)
    (second,) = r.frames(start=1, count=1)
    assert second.index == 1 and np.array_equal(second.yuv_u8[0], got[1].yuv_u8[0])


def test_yuv_explicit_size_and_rate_override_name(tmp_path):
    path = tmp_path / "seq_64x32_30.yuv"
    # Two 32x16 frames (2 x 768 bytes) are half a 64x32 frame: refused by name.
    _write_yuv(path, _frames(2, 16, 32))
    with pytest.raises(InputError, match="not a whole number of 64x32"):
        open_video(path)
    r = open_video(path, width=32, height=16, fps=12.5)
    assert (r.info.width, r.info.height, r.info.num_frames) == (32, 16, 2)
    assert r.info.fps == Fraction(25, 2)


def test_yuv_bad_inputs(tmp_path):
    with pytest.raises(InputError, match="no such file.*missing_416x240_50.yuv"):
        open_video(tmp_path / "missing_416x240_50.yuv")
    p = tmp_path / "noname.yuv"
    p.write_bytes(bytes(100))
    with pytest.raises(InputError, match="cannot tell the frame size of .*noname.yuv"):
        open_video(p)
    p = tmp_path / "x_16x16_30.yuv"
    p.write_bytes(bytes(yuv420_frame_bytes(16, 16) * 2 + 5))
    with pytest.raises(InputError, match=r"x_16x16_30.yuv: 773 bytes is not a whole"):
        open_video(p)
    p = tmp_path / "x_16x16_30_10bit.yuv"
    p.write_bytes(bytes(16 * 16 * 3))
    with pytest.raises(InputError, match="10-bit YUV is not supported yet"):
        open_video(p)
    p = tmp_path / "x_16x16_30_444.yuv"
    p.write_bytes(bytes(16 * 16 * 3))
    with pytest.raises(InputError, match="YUV 444 is not supported"):
        open_video(p)
    p = tmp_path / "empty_16x16_30.yuv"
    p.write_bytes(b"")
    with pytest.raises(InputError, match="empty"):
        open_video(p)
    p = tmp_path / "huge_20000x16_30.yuv"
    p.write_bytes(bytes(10))
    with pytest.raises(InputError, match="out of range"):
        open_video(p)
    p = tmp_path / "ok_2x2_30.yuv"
    p.write_bytes(bytes(yuv420_frame_bytes(2, 2)))
    with pytest.raises(InputError, match="unknown colour matrix"):
        open_video(p, matrix="bt2020")


def test_tiny_frames(tmp_path):
    path = tmp_path / "t_1x1_5.yuv"
    _write_yuv(path, [torch.full((3, 1, 1), 0.5)])
    (f,) = open_video(path).frames()
    assert f.rgb.shape == (3, 1, 1)
    assert torch.allclose(f.rgb, torch.full((3, 1, 1), 0.5), atol=1 / 255)


def test_ctc_class_d_and_c(shared_data):
    for rel, w, h, fps in ((HEVC_D, 416, 240, 50), (HEVC_C, 832, 480, 30)):
        path = shared_data / rel
        r = open_video(path)
        assert (r.info.width, r.info.height, r.info.fps, r.info.num_frames) == (
            w, h, fps, 2,
        )  # fmt: skip
        frames = list(r.frames())
        raw = np.fromfile(path, np.uint8)
        fb = yuv420_frame_bytes(w, h)
        for k, f in enumerate(frames):
            y, u, v = f.yuv_u8
            assert np.array_equal(y.ravel(), raw[k * fb : k * fb + w * h])
            assert np.array_equal(v.ravel(), raw[(k + 1) * fb - u.size : (k + 1) * fb])
            yf, uf, vf = f.yuv
            assert yf.shape == (1, h, w) and uf.shape == (1, h // 2, w // 2)
            assert 0.1 < float(f.rgb.mean()) < 0.9


def test_odd_size_and_y4m_formats(shared_data):
    r = open_video(shared_data / "formats/RTn23_80x44p15_f15.yuv")
    assert (r.info.width, r.info.height, r.info.fps, r.info.num_frames) == (
        80,
        44,
        15,
        15,
    )
    frames = list(r.frames(start=13))
    assert [f.index for f in frames] == [13, 14]
    r = open_video(shared_data / "formats/CiscoVT2people_160x96_6fps.yuv")
    assert (r.info.width, r.info.height, r.info.num_frames) == (160, 96, 5)
    r = open_video(shared_data / "formats/rav1e_small_input_64x64.y4m")
    assert isinstance(r, Y4MReader)
    assert (r.info.width, r.info.height, r.info.num_frames) == (64, 64, 5)
    frames = list(r.frames())
    assert len(frames) == 5 and frames[0].yuv_u8[1].shape == (32, 32)
    assert list(r.frames(start=4))[0].index == 4


def test_streaming_1080p_memory(tmp_path):
    # No real 1080p clip ships with the shared data: a synthetic one checks the
    # size handling and that reading holds about one frame at a time.
    n, w, h = 6, 1920, 1080
    fb = yuv420_frame_bytes(w, h)
    path = tmp_path / "Synthetic_1920x1080_50.yuv"
    frame = np.random.default_rng(0).integers(16, 236, fb, dtype=np.uint8).tobytes()
    with open(path, "wb") as f:
        for _ in range(n):
            f.write(frame)
    r = open_video(path)
    tracemalloc.start()
    try:
        count = 0
        for frame in r.frames():
            assert frame.yuv_u8[0].shape == (h, w)
            count += 1
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == n
    # The frame being read and the previous one (still referenced by the loop
    # variable): about 2 of the 6 frames.
    assert peak < 2.5 * fb


# -- Y4M -----------------------------------------------------------------------------


def test_y4m_round_trip_and_tags(tmp_path):
    frames = _frames(3, 20, 30)
    path = tmp_path / "out.y4m"
    with Y4MWriter(
        path, fps=Fraction(30000, 1001), matrix="bt709", full_range=True
    ) as w:
        for x in frames:
            w.write(x)
    head = path.read_bytes().split(b"\n", 1)[0]
    assert head == b"YUV4MPEG2 W30 H20 F30000:1001 Ip A1:1 C420jpeg XCOLORRANGE=FULL"
    r = open_video(path, matrix="bt709")
    assert r.info.full_range is True and r.info.fps == Fraction(30000, 1001)
    assert r.info.num_frames == 3
    for f, x in zip(r.frames(), frames):
        ey, _, ev = color.rgb_to_yuv420(x, "bt709", True)
        assert np.array_equal(f.yuv_u8[0], color.to_u8(ey[0]))
        assert np.array_equal(f.yuv_u8[2], color.to_u8(ev[0]))


def test_y4m_variants_and_errors(tmp_path):
    body = bytes(yuv420_frame_bytes(4, 2))
    # FRAME parameters make the count unknown up front; the frames still read.
    p = tmp_path / "params.dat"
    p.write_bytes(b"YUV4MPEG2 W4 H2 F25:1 C420mpeg2\n" + (b"FRAME Ixyz\n" + body) * 3)
    r = open_video(p)  # dispatched on content, not the name
    assert isinstance(r, Y4MReader) and r.info.num_frames is None
    assert len(list(r.frames())) == 3
    for cs in ("444", "422", "mono", "420p10"):
        p = tmp_path / f"c{cs}.y4m"
        p.write_bytes(f"YUV4MPEG2 W4 H2 F25:1 C{cs}\n".encode() + b"FRAME\n" + body)
        with pytest.raises(InputError, match=f"colour space C{cs} is not supported"):
            open_video(p)
    p = tmp_path / "trunc.y4m"
    p.write_bytes(b"YUV4MPEG2 W4 H2 F25:1\nFRAME\n" + body + b"FRAME\n" + body[:3])
    with pytest.raises(InputError, match="truncated in frame 1"):
        list(open_video(p).frames())
    p = tmp_path / "nosize.y4m"
    p.write_bytes(b"YUV4MPEG2 F25:1\n")
    with pytest.raises(InputError, match="lacks a valid W or H"):
        open_video(p)


# -- containers, images --------------------------------------------------------------


def test_pyav_carphone(shared_data):
    r = open_video(shared_data / "train/videos/carphone_pristine.mp4")
    assert isinstance(r, PyAVReader)
    i = r.info
    assert (i.width, i.height, i.num_frames) == (176, 144, 120)
    assert i.fps == Fraction(30000, 1001)
    frames = list(r.frames(count=3))
    assert len(frames) == 3
    assert frames[0].yuv_u8[1].shape == (72, 88)
    assert frames[2].rgb.shape == (3, 144, 176)
    (f2,) = r.frames(start=2, count=1)
    assert torch.equal(f2.rgb, frames[2].rgb)


def test_lossless_mp4_round_trip(tmp_path):
    frames = _frames(3, 36, 50)
    path = tmp_path / "lossless.mp4"
    w = open_writer(path, fps=24)
    assert isinstance(w, LosslessVideoWriter)
    with w:
        for x in frames:
            w.write(x)
    r = open_video(path)
    assert (r.info.width, r.info.height, r.info.fps) == (50, 36, 24)
    got = list(r)
    assert len(got) == 3
    for a, b in zip(got, frames):
        assert np.array_equal(color.to_u8(a), color.to_u8(b))
    assert _no_temp_left(tmp_path)


def test_png_folder_round_trip_and_replace(tmp_path):
    frames = _frames(3, 17, 23)
    out = tmp_path / "frames"
    w = open_writer(out)
    assert isinstance(w, PNGFolderWriter)
    with w:
        for x in frames:
            w.write(x)
    assert sorted(p.name for p in out.iterdir()) == [
        "im00001.png", "im00002.png", "im00003.png",
    ]  # fmt: skip
    r = open_video(out)
    assert isinstance(r, ImageFolderReader) and r.info.num_frames == 3
    for a, b in zip(r, frames):
        assert torch.equal(a, b)  # frames are on the 8-bit grid
    # An earlier PNG output is replaced; a folder with other files is not.
    with open_writer(out) as w:
        w.write(frames[0])
    assert [p.name for p in out.iterdir()] == ["im00001.png"]
    (out / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="refusing to replace"):
        with open_writer(out) as w:
            w.write(frames[0])
    assert (out / "notes.txt").exists() and _no_temp_left(tmp_path)


def test_image_folder_natural_order_and_single_image(shared_data):
    r = open_video(shared_data / "eval/images/BasketballDrill_832x448")
    assert (r.info.width, r.info.height, r.info.num_frames) == (832, 448, 3)
    r = open_video(shared_data / "eval/images/stmalo_fracape.png")  # RGBA
    (f,) = r.frames()
    assert f.rgb.shape == (3, 512, 768)


def test_image_folder_natural_sort(tmp_path):
    import cv2

    for i in (1, 2, 10):
        cv2.imwrite(str(tmp_path / f"im{i}.png"), np.full((2, 2, 3), i, np.uint8))
    vals = [int(round(float(x[0, 0, 0]) * 255)) for x in open_video(tmp_path)]
    assert vals == [1, 2, 10]


# -- writers: atomicity and errors ---------------------------------------------------


@pytest.mark.parametrize("name", ["a.yuv", "a.y4m", "a.mp4", "a.mkv", "pngs"])
def test_writers_leave_nothing_on_error(tmp_path, name):
    target = tmp_path / name
    with pytest.raises(RuntimeError, match="boom"):
        with open_writer(target, fps=10) as w:
            w.write(torch.rand(3, 8, 8))
            w.write(torch.rand(3, 8, 8))
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    # An existing output survives a failed rewrite untouched.
    with open_writer(target) as w:
        w.write(torch.zeros(3, 8, 8))
    before = {p.name for p in tmp_path.rglob("*")}
    with pytest.raises(InputError, match="frame 1 is 4x8"):
        with open_writer(target) as w:
            w.write(torch.zeros(3, 8, 8))
            w.write(torch.zeros(3, 8, 4))
    assert {p.name for p in tmp_path.rglob("*")} == before


def test_writer_bad_arguments(tmp_path):
    with pytest.raises(InputError, match="unsupported output type '.gif'"):
        open_writer(tmp_path / "x.gif")
    with pytest.raises(InputError, match="does not exist"):
        open_writer(tmp_path / "nope" / "x.yuv")
    with pytest.raises(InputError, match="no frames to write"):
        with open_writer(tmp_path / "x.yuv"):
            pass
    assert not (tmp_path / "x.yuv").exists()
    with pytest.raises(InputError, match=r"\[3,H,W\]"):
        with open_writer(tmp_path / "x.yuv") as w:
            w.write(torch.rand(1, 8, 8))


def test_yuv_writer_keeps_source_planes(tmp_path, shared_data):
    # A Frame that carries 4:2:0 planes is copied as is: a byte-exact excerpt.
    src = shared_data / HEVC_D
    out = tmp_path / "copy_416x240_50.yuv"
    with open_writer(out) as w:
        for f in open_video(src).frames():
            w.write(f)
    assert out.read_bytes() == src.read_bytes()


# -- dispatch and bad input ----------------------------------------------------------


def test_open_video_bad_inputs(tmp_path):
    with pytest.raises(InputError, match="no such file or folder: .*nothing.mp4"):
        open_video(tmp_path / "nothing.mp4")
    p = tmp_path / "notes.mp4"
    p.write_text("this is not a video\n" * 20)
    with pytest.raises(InputError, match="notes.mp4 is not a video file"):
        open_video(p)
    p = tmp_path / "empty.mkv"
    p.write_bytes(b"")
    with pytest.raises(InputError, match="empty"):
        open_video(p)
    (tmp_path / "sub").mkdir()
    with pytest.raises(InputError, match="no image frames"):
        open_video(tmp_path / "sub")
    p = tmp_path / "a.y4m"
    p.write_bytes(b"YUV4MPEG2 W4 H2\n")
    with pytest.raises(InputError, match="width/height apply only to raw .yuv"):
        open_video(p, width=4, height=2)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG but broken")
    with pytest.raises(InputError, match="cannot read image .*bad.png"):
        open_video(bad)
