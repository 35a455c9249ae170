"""Colour conversion: known code values, round trips, matrices, 8-bit helpers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dvc_common import InputError
from dvc_ext import color


def _flat(rgb: tuple[float, float, float], h: int = 4, w: int = 4) -> torch.Tensor:
    return torch.tensor(rgb, dtype=torch.float32).view(3, 1, 1).expand(3, h, w)


def _natural(h: int = 64, w: int = 96) -> torch.Tensor:
    """A smooth synthetic 'natural' image (gradients, a disc, mild texture), so
    the test runs without the shared data."""
    yy, xx = torch.meshgrid(
        torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij"
    )
    disc = (((yy - 0.5) ** 2 + (xx - 0.4) ** 2) < 0.06).float()
    tex = 0.05 * torch.sin(40 * xx) * torch.cos(30 * yy)
    r = 0.2 + 0.6 * xx + 0.1 * disc + tex
    g = 0.3 + 0.4 * yy - 0.2 * disc + tex
    b = 0.7 - 0.5 * xx * yy + 0.2 * disc
    return torch.stack([r, g, b]).clamp(0, 1)


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(10 * torch.log10(1 / ((a - b) ** 2).mean()))


@pytest.mark.parametrize("matrix", ["bt601", "bt709"])
@pytest.mark.parametrize(
    ("full_range", "white", "black", "grey"),
    [(False, 235.0, 16.0, 125.5), (True, 255.0, 0.0, 127.5)],
)
def test_known_greys(matrix, full_range, white, black, grey):
    x = torch.stack([_flat((1, 1, 1)), _flat((0, 0, 0)), _flat((0.5, 0.5, 0.5))])
    y, u, v = color.rgb_to_yuv420(x, matrix, full_range)
    assert y.shape == (3, 1, 4, 4) and u.shape == v.shape == (3, 1, 2, 2)
    codes = (y[:, 0, 0, 0] * 255).tolist()
    assert codes == pytest.approx([white, black, grey], abs=1e-3)
    assert torch.allclose(u * 255, torch.full_like(u, 128.0), atol=1e-3)
    assert torch.allclose(v * 255, torch.full_like(v, 128.0), atol=1e-3)
    back = color.yuv420_to_rgb(y, u, v, matrix, full_range)
    assert torch.allclose(back, x, atol=1e-5)


def test_known_red_bt601_vs_bt709():
    # ITU-R BT.601 limited range: pure red is Y 81, Cb 90, Cr 240 (8-bit codes).
    y, u, v = color.rgb_to_yuv420(_flat((1, 0, 0)), "bt601", False)
    assert float(y[0, 0, 0] * 255) == pytest.approx(81.48, abs=0.01)
    assert float(u[0, 0, 0] * 255) == pytest.approx(90.20, abs=0.01)
    assert float(v[0, 0, 0] * 255) == pytest.approx(240.0, abs=0.01)
    # BT.709: Y = 16 + 219 * 0.2126 = 62.56.
    y7, u7, _ = color.rgb_to_yuv420(_flat((1, 0, 0)), "bt709", False)
    assert float(y7[0, 0, 0] * 255) == pytest.approx(62.56, abs=0.01)
    assert float(u7[0, 0, 0] * 255) == pytest.approx(102.34, abs=0.01)


def test_matrices_differ_on_natural_image():
    x = _natural()
    y6, u6, v6 = color.rgb_to_yuv420(x, "bt601")
    y7, u7, v7 = color.rgb_to_yuv420(x, "bt709")
    assert (y6 - y7).abs().mean() * 255 > 1.0
    # Decoding with the wrong matrix is a visible error, the right one is not.
    right = color.yuv420_to_rgb(y6, u6, v6, "bt601")
    wrong = color.yuv420_to_rgb(y6, u6, v6, "bt709")
    assert _psnr(right, x) > _psnr(wrong, x) + 3


@pytest.mark.parametrize("matrix", ["bt601", "bt709"])
@pytest.mark.parametrize("full_range", [False, True])
def test_block_constant_chroma_round_trip_is_exact(matrix, full_range):
    # Where chroma is constant in each 2x2 block, 4:2:0 loses nothing: the only
    # error left is float rounding (and clamping, avoided by mid-range colours).
    base = torch.rand(3, 8, 12) * 0.6 + 0.2
    luma_detail = (torch.rand(1, 16, 24) - 0.5) * 0.2
    x = base.repeat_interleave(2, 1).repeat_interleave(2, 2) + luma_detail
    y, u, v = color.rgb_to_yuv420(x, matrix, full_range)
    back = color.yuv420_to_rgb(y, u, v, matrix, full_range, "nearest")
    assert (back - x).abs().max() < 1e-5


def test_synthetic_round_trip_bounds():
    # Measured 35.7 dB (nearest) and 37.0 dB (bilinear) on this image.
    x = _natural()
    y, u, v = color.rgb_to_yuv420(x)
    near = _psnr(color.yuv420_to_rgb(y, u, v, chroma_upsampling="nearest"), x)
    bil = _psnr(color.yuv420_to_rgb(y, u, v, chroma_upsampling="bilinear"), x)
    assert 33 < near < bil


@pytest.mark.parametrize("name", ["kodim01", "kodim13", "kodim23"])
def test_kodak_round_trip_bounds(shared_data, name):
    # RGB -> 4:2:0 -> RGB on natural photos: measured 42.8..45.9 dB (nearest),
    # 44.2..47.9 dB (bilinear) on these three.
    import cv2

    a = cv2.imread(str(shared_data / f"eval/kodak/{name}.png"))[:, :, ::-1]
    x = torch.from_numpy(a.copy()).permute(2, 0, 1).float() / 255
    y, u, v = color.rgb_to_yuv420(x, "bt601", False)
    near = _psnr(color.yuv420_to_rgb(y, u, v, "bt601", False, "nearest"), x)
    bil = _psnr(color.yuv420_to_rgb(y, u, v, "bt601", False, "bilinear"), x)
    assert 40 < near <= bil


def test_yuv_rgb_yuv_is_identity_with_nearest(shared_data):
    from dvc_ext.io import open_video

    path = shared_data / "eval/hevc/BasketballPass_2frames_416x240_50Hz_8bit_P420.yuv"
    f = next(open_video(path).frames())
    y0, u0, v0 = f.yuv_u8
    rgb = color.yuv420_u8_to_rgb(y0, u0, v0, "bt601", False, "nearest")
    y1, u1, v1 = color.rgb_to_yuv420_u8(rgb, "bt601", False)
    # RGB rounding and clamping of out-of-gamut codes move a few samples.
    for a, b in ((y0, y1), (u0, u1), (v0, v1)):
        d = np.abs(a.astype(int) - b.astype(int))
        assert (d <= 1).mean() > 0.99
    # Natural-image RGB round trip through 4:2:0 (the Kodak-like content of a
    # real frame): 8-bit RGB -> YUV -> RGB.
    rgb2 = color.yuv420_u8_to_rgb(y1, u1, v1)
    mse = np.mean((rgb.astype(float) - rgb2.astype(float)) ** 2)
    assert 10 * np.log10(255**2 / mse) > 40


def test_matches_opencv_bt601_limited(shared_data):
    import cv2

    path = shared_data / "eval/hevc/BasketballPass_2frames_416x240_50Hz_8bit_P420.yuv"
    raw = np.fromfile(path, np.uint8, count=416 * 240 * 3 // 2).reshape(360, 416)
    ref = cv2.cvtColor(raw, cv2.COLOR_YUV2RGB_I420).astype(int)
    y, u, v = raw[:240], raw[240:300].reshape(120, 208), raw[300:].reshape(120, 208)
    ours = color.yuv420_u8_to_rgb(y, u, v, "bt601", False, "nearest").astype(int)
    assert np.abs(ours - ref).max() <= 2
    assert (ours == ref).mean() > 0.9
    # And the forward direction (luma only: OpenCV's chroma filter differs).
    y2, _, _ = color.rgb_to_yuv420_u8(ref.astype(np.uint8), "bt601", False)
    ref_yuv = cv2.cvtColor(ref.astype(np.uint8), cv2.COLOR_RGB2YUV_I420)
    assert np.abs(y2.astype(int) - ref_yuv[:240]).max() <= 1


@pytest.mark.parametrize(("h", "w"), [(5, 7), (1, 1), (2, 3), (45, 81)])
def test_odd_sizes_and_batches(h, w):
    x = torch.rand(2, 3, h, w)
    y, u, v = color.rgb_to_yuv420(x, "bt709", True)
    assert y.shape == (2, 1, h, w)
    assert u.shape == v.shape == (2, 1, (h + 1) // 2, (w + 1) // 2)
    for up in ("nearest", "bilinear"):
        back = color.yuv420_to_rgb(y, u, v, "bt709", True, up)
        assert back.shape == x.shape
        assert back.min() >= 0 and back.max() <= 1
    # Each batch element is converted on its own.
    y1, u1, _ = color.rgb_to_yuv420(x[1], "bt709", True)
    assert torch.allclose(y1, y[1]) and torch.allclose(u1, u[1])


def test_u8_helpers_agree_with_float():
    x = (_natural(30, 42) * 255).round().to(torch.uint8)
    rgb = x.permute(1, 2, 0).numpy().copy()
    y, u, v = color.rgb_to_yuv420_u8(rgb, "bt709", False)
    assert y.dtype == np.uint8 and y.shape == (30, 42) and u.shape == (15, 21)
    yf, uf, _ = color.rgb_to_yuv420(x.float() / 255, "bt709", False)
    assert np.abs(y.astype(float) - yf[0].numpy() * 255).max() <= 0.5 + 1e-4
    assert np.abs(u.astype(float) - uf[0].numpy() * 255).max() <= 0.5 + 1e-4
    out = color.yuv420_u8_to_rgb(y, u, v, "bt709", False)
    assert out.shape == (30, 42, 3) and out.dtype == np.uint8


def test_bad_arguments():
    with pytest.raises(InputError, match="unknown colour matrix 'bt2020'"):
        color.rgb_to_yuv420(torch.rand(3, 4, 4), "bt2020")
    with pytest.raises(InputError, match=r"\[3,H,W\]"):
        color.rgb_to_yuv420(torch.rand(4, 4))
    with pytest.raises(InputError, match="float"):
        color.rgb_to_yuv420(torch.zeros(3, 4, 4, dtype=torch.uint8))
    y, u, v = color.rgb_to_yuv420(torch.rand(3, 4, 4))
    with pytest.raises(InputError, match="plane shapes do not match"):
        color.yuv420_to_rgb(y, u[..., :1], v)
    with pytest.raises(InputError, match="up-sampling"):
        color.yuv420_to_rgb(y, u, v, chroma_upsampling="bicubic")
    assert "BT.709 full range" in color.describe("bt709", True)
