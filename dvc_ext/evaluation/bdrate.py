"""Bjontegaard delta rate and delta PSNR between two rate-distortion curves.

G. Bjontegaard, "Calculation of average PSNR differences between RD-curves",
ITU-T VCEG-M33, Austin, 2001; and "Improvements of the BD-PSNR model",
VCEG-AI11, 2008. The piecewise cubic (PCHIP) variant is the one of the JCT-VC /
JVET common-test-condition spreadsheets (JCTVC-L1100, JVET-T2010).

BD-rate: log-rate is interpolated as a function of quality for each curve; the
mean horizontal gap over the quality interval where both curves exist, as a
percentage ``100 * (exp(mean(log R_test - log R_anchor)) - 1)``. Negative means
the test codec needs fewer bits for the same quality. BD-PSNR: the same with
the axes swapped (quality as a function of log-rate), in dB; positive means the
test codec is better.

Methods:

* ``"pchip"`` (default): piecewise cubic Hermite interpolation through the
  points (Fritsch-Carlson monotone slopes, SciPy's ``PchipInterpolator``),
  integrated exactly. Needs two points or more; it never overshoots between
  points, so one odd point cannot swing the result as the classic fit can.
* ``"cubic"``: the classic VCEG-M33 fit, a least-squares cubic polynomial
  (exact interpolation with four points), integrated exactly. Needs four points.

Where the quality (or rate) ranges of the two curves overlap on less than
``min_overlap`` of their union, a :class:`BDOverlapWarning` says so; without any
overlap the delta is undefined and is returned as NaN (with the warning).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from dvc_common import InputError

METHODS = ("pchip", "cubic")
#: Below this fraction of the union of both ranges, the overlap is warned about.
DEFAULT_MIN_OVERLAP = 0.5


class BDOverlapWarning(UserWarning):
    """The two curves share little or none of their quality (or rate) range."""


@dataclass(frozen=True)
class BDResult:
    """A Bjontegaard comparison of a test curve against an anchor.

    Attributes:
        rate: BD-rate in percent (NaN without overlap).
        psnr: BD-PSNR in dB, or BD-quality in the metric's units (NaN without
            overlap).
        rate_overlap: overlap of the quality ranges, as a fraction of their
            union (the BD-rate integration interval).
        psnr_overlap: overlap of the log-rate ranges, as a fraction of their
            union (the BD-PSNR integration interval).
        method: ``"pchip"`` or ``"cubic"``.
    """

    rate: float
    psnr: float
    rate_overlap: float
    psnr_overlap: float
    method: str

    def as_dict(self) -> dict[str, float | str]:
        return {
            "bd_rate": self.rate,
            "bd_psnr": self.psnr,
            "rate_overlap": self.rate_overlap,
            "psnr_overlap": self.psnr_overlap,
            "method": self.method,
        }


def _points(
    rate: Sequence[float], dist: Sequence[float], what: str, method: str
) -> tuple[np.ndarray, np.ndarray]:
    r = np.asarray(rate, dtype=np.float64).ravel()
    d = np.asarray(dist, dtype=np.float64).ravel()
    if r.shape != d.shape:
        raise InputError(
            f"{what}: {r.size} rates but {d.size} quality values; they must pair up"
        )
    need = 4 if method == "cubic" else 2
    if r.size < need:
        raise InputError(
            f"{what}: {r.size} rate point(s); the {method} method needs at least {need}"
        )
    if not (np.all(np.isfinite(r)) and np.all(np.isfinite(d))):
        raise InputError(f"{what}: rates and quality values must be finite")
    if np.any(r <= 0):
        raise InputError(f"{what}: rates must be positive, got {r.tolist()}")
    return np.log(r), d


def _check_method(method: str) -> None:
    if method not in METHODS:
        raise InputError(f"unknown BD method {method!r}; choices: {', '.join(METHODS)}")


def _overlap(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float]:
    """``(low, high, fraction of the union)`` of the ranges of ``a`` and ``b``."""
    lo, hi = max(a.min(), b.min()), min(a.max(), b.max())
    union = max(a.max(), b.max()) - min(a.min(), b.min())
    frac = max(hi - lo, 0.0) / union if union > 0 else 0.0
    return lo, hi, frac


def _mean_on(x: np.ndarray, y: np.ndarray, lo: float, hi: float, method: str) -> float:
    """Mean of the interpolant of ``y(x)`` over ``[lo, hi]``."""
    order = np.argsort(x, kind="stable")
    x, y = x[order], y[order]
    if np.any(np.diff(x) <= 0):
        raise InputError(
            "two rate points have the same quality (or rate): the curve cannot be "
            f"interpolated ({x.tolist()})"
        )
    if method == "pchip":
        from scipy.interpolate import PchipInterpolator

        integral = float(PchipInterpolator(x, y).integrate(lo, hi))
    else:
        # A cubic of log-rate in the quality, as VCEG-M33 (np.polyfit is
        # conditioned well enough here: four to a few dozen points).
        poly = np.polynomial.Polynomial.fit(x, y, 3)
        anti = poly.integ()
        integral = float(anti(hi) - anti(lo))
    return integral / (hi - lo)


def _warn(what: str, frac: float, min_overlap: float, label: str) -> None:
    if frac <= 0:
        warnings.warn(
            f"{label}: the curves' {what} ranges do not overlap; the BD value is "
            f"undefined (NaN). Add rate points so that the ranges meet.",
            BDOverlapWarning,
            stacklevel=3,
        )
    elif frac < min_overlap:
        warnings.warn(
            f"{label}: the curves' {what} ranges overlap on only {100 * frac:.0f}% "
            f"of their union; the BD value extrapolates nothing but describes only "
            f"that part of the curves.",
            BDOverlapWarning,
            stacklevel=3,
        )


def bd_rate(
    rate_anchor: Sequence[float],
    dist_anchor: Sequence[float],
    rate_test: Sequence[float],
    dist_test: Sequence[float],
    method: str = "pchip",
    min_overlap: float = DEFAULT_MIN_OVERLAP,
    label: str = "BD-rate",
) -> float:
    """BD-rate of the test curve against the anchor, in percent.

    Args:
        rate_anchor, dist_anchor: the anchor's rates (any positive unit: bpp,
            kbit/s) and qualities (PSNR in dB, MS-SSIM ...; higher is better).
        rate_test, dist_test: the same for the codec under test.
        method: ``"pchip"`` (default) or ``"cubic"``.
        min_overlap: warn below this fraction of quality-range overlap.
        label: names the comparison in the warning.

    Returns:
        Percent rate change at equal quality (negative: the test saves bits);
        NaN when the quality ranges do not overlap.

    Raises:
        InputError: unpaired, too few, non-finite or non-positive values, an
            unknown method, or repeated quality values.
    """
    _check_method(method)
    la, da = _points(rate_anchor, dist_anchor, "anchor", method)
    lt, dt = _points(rate_test, dist_test, "test", method)
    lo, hi, frac = _overlap(da, dt)
    _warn("quality", frac, min_overlap, label)
    if frac <= 0:
        return math.nan
    diff = _mean_on(dt, lt, lo, hi, method) - _mean_on(da, la, lo, hi, method)
    return 100.0 * math.expm1(diff)


def bd_psnr(
    rate_anchor: Sequence[float],
    dist_anchor: Sequence[float],
    rate_test: Sequence[float],
    dist_test: Sequence[float],
    method: str = "pchip",
    min_overlap: float = DEFAULT_MIN_OVERLAP,
    label: str = "BD-PSNR",
) -> float:
    """BD-PSNR (mean quality gain at equal rate) of the test curve, in the
    quality's units (dB for PSNR); NaN when the rate ranges do not overlap.

    Arguments and errors as in :func:`bd_rate`.
    """
    _check_method(method)
    la, da = _points(rate_anchor, dist_anchor, "anchor", method)
    lt, dt = _points(rate_test, dist_test, "test", method)
    lo, hi, frac = _overlap(la, lt)
    _warn("rate", frac, min_overlap, label)
    if frac <= 0:
        return math.nan
    return _mean_on(lt, dt, lo, hi, method) - _mean_on(la, da, lo, hi, method)


def bd(
    rate_anchor: Sequence[float],
    dist_anchor: Sequence[float],
    rate_test: Sequence[float],
    dist_test: Sequence[float],
    method: str = "pchip",
    min_overlap: float = DEFAULT_MIN_OVERLAP,
    label: str = "BD",
) -> BDResult:
    """Both deltas and both overlaps in one :class:`BDResult`."""
    _check_method(method)
    la, da = _points(rate_anchor, dist_anchor, "anchor", method)
    lt, dt = _points(rate_test, dist_test, "test", method)
    args = (rate_anchor, dist_anchor, rate_test, dist_test, method, min_overlap)
    return BDResult(
        rate=bd_rate(*args, label=label),
        psnr=bd_psnr(*args, label=label),
        rate_overlap=_overlap(da, dt)[2],
        psnr_overlap=_overlap(la, lt)[2],
        method=method,
    )
