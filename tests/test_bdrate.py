"""Bjontegaard deltas: invariants, a published reference value, bad input."""

from __future__ import annotations

import math
import warnings

import pytest

from dvc_common import InputError
from dvc_ext.evaluation.bdrate import BDOverlapWarning, bd, bd_psnr, bd_rate

# "Test 1" of the FAU-LMS bjontegaard package (C. Herglotz et al., BSD-3-Clause):
# libx265 at two preset settings, rates in kbit/s, PSNR in dB.
RATE_A = [9487.76, 4593.60, 2486.44, 1358.24]
PSNR_A = [40.037, 38.615, 36.845, 34.851]
RATE_T = [9787.80, 4469.00, 2451.52, 1356.24]
PSNR_T = [40.121, 38.651, 36.970, 34.987]

METHODS = ["pchip", "cubic"]


@pytest.mark.parametrize("method", METHODS)
def test_curve_against_itself_is_zero(method):
    assert round(bd_rate(RATE_A, PSNR_A, RATE_A, PSNR_A, method), 2) == 0.0
    assert abs(bd_rate(RATE_A, PSNR_A, RATE_A, PSNR_A, method)) < 1e-9
    assert abs(bd_psnr(RATE_A, PSNR_A, RATE_A, PSNR_A, method)) < 1e-9


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("scale, expected", [(0.9, -10.0), (1.25, 25.0)])
def test_scaled_rates_give_the_scale(method, scale, expected):
    scaled = [r * scale for r in RATE_A]
    value = bd_rate(RATE_A, PSNR_A, scaled, PSNR_A, method)
    assert f"{value:.2f}" == f"{expected:.2f}"
    assert value == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("shift", [0.5, -0.3])
def test_quality_shift_gives_the_matching_bd_psnr(method, shift):
    shifted = [p + shift for p in PSNR_A]
    assert bd_psnr(RATE_A, PSNR_A, RATE_A, shifted, method) == pytest.approx(
        shift, abs=1e-9
    )
    # A better curve at every rate costs fewer bits at equal quality.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BDOverlapWarning)
        rate = bd_rate(RATE_A, PSNR_A, RATE_A, shifted, method)
    assert math.copysign(1, rate) == -math.copysign(1, shift)


def test_published_reference_values():
    # The bjontegaard package 1.3.0 (FAU-LMS), whose pchip reproduces the
    # JVET-T2010 CTC spreadsheet to 10 decimals, gives for "Test 1":
    # pchip -4.417485350589045 % / 0.11969278542479489 dB, cubic -4.420462706 %
    # (the cubic through four points is VCEG-M33's polynomial fit).
    assert bd_rate(RATE_A, PSNR_A, RATE_T, PSNR_T) == pytest.approx(
        -4.417485350589045, abs=1e-9
    )
    assert bd_psnr(RATE_A, PSNR_A, RATE_T, PSNR_T) == pytest.approx(
        0.11969278542479489, abs=1e-9
    )
    assert bd_rate(RATE_A, PSNR_A, RATE_T, PSNR_T, "cubic") == pytest.approx(
        -4.420462706, abs=1e-7
    )


def test_order_of_points_and_sign_symmetry():
    fwd = bd_rate(RATE_A[::-1], PSNR_A[::-1], RATE_T, PSNR_T)
    assert fwd == pytest.approx(bd_rate(RATE_A, PSNR_A, RATE_T, PSNR_T))
    back = bd_rate(RATE_T, PSNR_T, RATE_A, PSNR_A)
    assert fwd < 0 < back


def test_pchip_takes_two_points_cubic_needs_four():
    assert bd_rate(
        RATE_A[:2], PSNR_A[:2], [r * 0.9 for r in RATE_A[:2]], PSNR_A[:2]
    ) == (pytest.approx(-10.0))
    with pytest.raises(InputError, match="at least 4"):
        bd_rate(RATE_A[:3], PSNR_A[:3], RATE_T[:3], PSNR_T[:3], "cubic")


def test_no_overlap_warns_and_gives_nan():
    far = [p + 20 for p in PSNR_A]
    with pytest.warns(BDOverlapWarning, match="do not overlap"):
        assert math.isnan(bd_rate(RATE_A, PSNR_A, RATE_A, far))
    with pytest.warns(BDOverlapWarning, match="overlap on only"):
        bd_rate(RATE_A, PSNR_A, RATE_A, [p + 4 for p in PSNR_A])
    with warnings.catch_warnings():
        warnings.simplefilter("error", BDOverlapWarning)
        bd_rate(RATE_A, PSNR_A, RATE_T, PSNR_T)  # full overlap: silent


def test_bd_result_carries_both_overlaps():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BDOverlapWarning)
        res = bd(RATE_A, PSNR_A, [r * 0.9 for r in RATE_A], PSNR_A)
    assert res.rate == pytest.approx(-10.0)
    assert res.rate_overlap == 1.0 and 0 < res.psnr_overlap < 1
    assert res.as_dict()["method"] == "pchip"


@pytest.mark.parametrize(
    "args, match",
    [
        (([1, 2], [30, 31, 32], [1, 2], [30, 31]), "pair up"),
        (([1, -2, 3], [30, 31, 32], [1, 2, 3], [30, 31, 32]), "positive"),
        (([1, 2, float("nan")], [30, 31, 32], [1, 2, 3], [30, 31, 32]), "finite"),
        (([1, 2, 3], [30, 30, 32], [1, 2, 3], [30, 31, 32]), "same quality"),
        (([1], [30], [1, 2], [30, 31]), "at least 2"),
    ],
)
def test_bad_input_is_refused(args, match):
    with pytest.raises(InputError, match=match):
        bd_rate(*args)


def test_unknown_method():
    with pytest.raises(InputError, match="pchip"):
        bd_rate(RATE_A, PSNR_A, RATE_T, PSNR_T, method="akima")
