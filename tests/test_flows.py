"""Flow estimators, warping, correlation, synthetic pairs, training script.

Every registered flow is run through the same contract. The learned flows are
checked for accuracy with their shipped weights (``weights="default"``; skipped
where absent); a random-init model is exempt from the accuracy checks.
"""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
import torch

from dvc_common import InputError
from flows import backward_warp, build_flow, default_weights, list_flows
from flows.base import load_flow_weights
from flows.correlation import correlation, extension_available
from flows.spynet import confidence_fill, flow_confidence, lucas_kanade_step
from flows.synthetic import SyntheticFlow, skimage_image

FLOWS = list_flows()
LEARNED = [n for n in FLOWS if build_flow(n).differentiable]
# Integer shifts (dx, dy) drawn once from [-12, 12]^2 (numpy seed 6), plus the
# extreme corners.
SHIFTS = [
    tuple(int(v) for v in s) for s in np.random.default_rng(6).integers(-12, 13, (4, 2))
]
SHIFTS += [(12, -12), (-12, 12)]


def _trained(name: str):
    """The estimator with its shipped weights (learned) or as is (classical)."""
    flow = build_flow(name)
    if flow.differentiable:
        if not default_weights(name).is_file():
            pytest.skip(f"no shipped weights for {name}")
        flow = build_flow(name, weights="default")
    return flow.eval()


def _shifted_pair(img: torch.Tensor, dx: int, dy: int, h: int, w: int):
    """Crops with ``cur(p) = ref(p + (dx, dy))``: the backward flow is (dx, dy)."""
    y0, x0 = 40, 40
    ref = img[:, y0 : y0 + h, x0 : x0 + w]
    cur = img[:, y0 + dy : y0 + dy + h, x0 + dx : x0 + dx + w]
    return cur, ref


@pytest.fixture(scope="module")
def astronaut() -> torch.Tensor:
    return skimage_image("astronaut")  # held out of flow training


@pytest.mark.parametrize("name", FLOWS)
def test_output_shape_dtype_and_padding(name):
    flow = build_flow(name).eval()
    cur, ref = torch.rand(2, 3, 37, 53), torch.rand(2, 3, 37, 53)  # not /16
    with torch.no_grad():
        v = flow(cur, ref)
    assert v.shape == (2, 2, 37, 53)
    assert v.dtype == torch.float32 and torch.isfinite(v).all()
    assert flow.registry_name == name and flow.output_stride >= 1
    with pytest.raises(ValueError):
        flow(cur, ref[:, :, :-1])


@pytest.mark.parametrize("name", LEARNED)
def test_learned_flows_are_differentiable(name):
    flow = build_flow(name)
    cur = torch.rand(1, 3, 32, 32, requires_grad=True)
    flow(cur, torch.rand(1, 3, 32, 32)).square().mean().backward()
    assert cur.grad is not None
    assert all(p.grad is not None for p in flow.parameters() if p.requires_grad)


@pytest.mark.parametrize("name", FLOWS)
def test_units_are_input_pixels(name, astronaut):
    """A 6 px shift reads 6 (not 6/stride) at any input size."""
    flow = _trained(name)
    for h, w in ((96, 128), (144, 176)):
        cur, ref = _shifted_pair(astronaut, 6, -4, h, w)
        with torch.no_grad():
            v = flow(cur[None], ref[None])[0, :, 16:-16, 16:-16]
        assert v[0].median() == pytest.approx(6, abs=0.5)
        assert v[1].median() == pytest.approx(-4, abs=0.5)


@pytest.mark.parametrize("name", FLOWS)
def test_zero_motion_on_identical_frames(name, astronaut):
    flow = _trained(name)
    x = astronaut[None, :, 100:196, 150:278]
    with torch.no_grad():
        v = flow(x, x.clone())
    assert v.abs().mean() < 0.05


def test_backward_warp_convention(astronaut):
    """backward_warp(ref, flow) == cur for the flow of an integer shift."""
    cur, ref = _shifted_pair(astronaut, 5, -3, 64, 80)
    flow = torch.tensor([5.0, -3.0]).view(1, 2, 1, 1).expand(1, 2, 64, 80)
    warped = backward_warp(ref[None], flow)[0]
    inside = (slice(None), slice(3, None), slice(0, -5))  # p + flow inside ref
    assert torch.allclose(warped[inside], cur[inside], atol=1e-5)
    wrong = backward_warp(ref[None], -flow)[0]
    assert (wrong[inside] - cur[inside]).abs().mean() > 0.02


@pytest.mark.parametrize("name", FLOWS)
def test_direction_convention(name, astronaut):
    """The estimated flow warps ref onto cur (not cur onto ref)."""
    flow = _trained(name)
    cur, ref = _shifted_pair(astronaut, 7, 3, 96, 128)
    with torch.no_grad():
        v = flow(cur[None], ref[None])
    good = (backward_warp(ref[None], v) - cur[None])[..., 16:-16, 16:-16]
    bad = (backward_warp(ref[None], -v) - cur[None])[..., 16:-16, 16:-16]
    assert good.abs().mean() < 0.5 * bad.abs().mean()
    assert good.abs().mean() < 0.02


@pytest.mark.parametrize("name", FLOWS)
@pytest.mark.parametrize("image", ["astronaut", "coffee"])
def test_translation_recovery(name, image):
    """Integer shifts up to 12 px: mean EPE away from the borders < 0.5 px."""
    flow = _trained(name)
    img = skimage_image(image)
    pairs = [_shifted_pair(img, dx, dy, 160, 192) for dx, dy in SHIFTS]
    cur = torch.stack([c for c, _ in pairs])
    ref = torch.stack([r for _, r in pairs])
    gt = torch.tensor(SHIFTS, dtype=torch.float32).view(-1, 2, 1, 1)
    with torch.no_grad():
        v = flow(cur, ref)
    epe = (v - gt).norm(dim=1)[:, 16:-16, 16:-16].mean(dim=(1, 2))
    assert epe.max() < 1.0, f"worst shift EPE {epe.max():.3f}"
    assert epe.mean() < 0.5, f"mean EPE {epe.mean():.3f} px"


#: A fixed subset of the natural-translation set (flows/translation_set.py),
#: with the images that were hardest for some estimator when the set was made
#: (flat sky: kodim20; flat petals: kodim07; grey: basketball2).
TRANSLATION_SUBSET = ["kodim03", "kodim07", "kodim19", "kodim20", "kodim23",
                      "rubberwhale1", "basketball2"]  # fmt: skip
#: Estimators whose shipped weights do not yet meet the subset (issue 21):
#: strict, so the mark must go once they do.
TRANSLATION_KNOWN_FAILURES = {"spynet"}


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(
            n,
            marks=pytest.mark.xfail(
                strict=True, reason="shipped weights miss 0.5 px on some images"
            ),
        )
        if n in TRANSLATION_KNOWN_FAILURES
        else n
        for n in FLOWS
    ],
)
def test_translation_of_unseen_natural_images(name, shared_data):
    """Every image of the subset, on its own: mean EPE under 0.5 px."""
    from flows.translation_set import translation_epe, translation_sources

    flow = _trained(name)
    per_image = translation_epe(
        flow, translation_sources(shared_data, TRANSLATION_SUBSET)
    )
    bad = {k: v for k, v in per_image.items() if v >= 0.5}
    assert not bad, f"mean EPE >= 0.5 px on {bad}"


def test_translation_set_is_exact_and_reproducible():
    """The crops are offset by the shift exactly, and an image's shifts are its own."""
    from flows.translation_set import image_shifts, shifted_crops

    img = torch.rand(3, 80, 90)
    shifts = image_shifts("some image", 4)
    assert shifts == image_shifts("some image", 4) != image_shifts("other", 4)
    assert all(max(abs(dx), abs(dy)) <= 12 for dx, dy in shifts)
    cur, ref = shifted_crops(img, shifts, 40, 50, 12)
    gt = (
        torch.tensor(shifts, dtype=torch.float32)
        .view(-1, 2, 1, 1)
        .expand(-1, -1, 40, 50)
    )
    warped = backward_warp(ref, gt.contiguous())
    inner = (slice(None), slice(None), slice(12, -12), slice(12, -12))
    assert torch.allclose(warped[inner], cur[inner], atol=1e-5)
    with pytest.raises(ValueError, match="too small"):
        shifted_crops(img, shifts, 70, 50, 12)


def _load_rgb(path) -> torch.Tensor:
    import cv2

    img = cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    return torch.from_numpy(img).permute(2, 0, 1).float()[None] / 255


@pytest.mark.parametrize("name", FLOWS)
@pytest.mark.parametrize("pair", ["rubberwhale", "basketball"])
def test_warping_beats_zero_flow_on_middlebury(name, pair, shared_data):
    """Real motion (test data only): the warp lowers the photometric error."""
    flow = _trained(name)
    root = shared_data / "eval" / "flow_pairs"
    ref, cur = _load_rgb(root / f"{pair}1.png"), _load_rgb(root / f"{pair}2.png")
    with torch.no_grad():
        v = flow(cur, ref)
    zero = (ref - cur).abs().mean()
    warped = (backward_warp(ref, v) - cur).abs().mean()
    assert warped < 0.8 * zero, f"warped {warped:.4f} vs zero-flow {zero:.4f}"


def test_lucas_kanade_step_recovers_a_subpixel_shift(astronaut):
    """SpyNet's LK input: the residual that warps ``warped`` onto ``cur``."""
    ref = torch.nn.functional.avg_pool2d(astronaut[None], 4)  # smooth, 128 x 128
    for dx, dy in ((0.4, -0.3), (-0.25, 0.5)):
        shift = torch.tensor([dx, dy]).view(1, 2, 1, 1).expand(1, 2, 128, 128)
        cur = backward_warp(ref, shift)
        step = lucas_kanade_step(cur, ref, 5)[0, :2, 8:-8, 8:-8]
        # One linearised step on real texture under-shoots, never overshoots.
        for got, want in ((step[0].median(), dx), (step[1].median(), dy)):
            assert 0.3 < got / want < 1.05, f"LK step {got:.3f} for {want}"
    same = lucas_kanade_step(ref, ref.clone(), 5)
    assert same.shape == (1, 3, 128, 128) and torch.isfinite(same).all()
    assert same[:, :2].abs().max() == 0


def test_confidence_fill_takes_flow_from_textured_neighbours():
    """SpyNet's fill: flat boxes and single edges get their flow from the
    textured surroundings; textured ones keep their own."""
    torch.manual_seed(0)
    img = torch.rand(1, 3, 32, 64)
    img[..., 44:] = 0.5  # flat strip on the right
    edge = torch.zeros(1, 3, 32, 32)
    edge[..., 16:] = 1.0  # one vertical edge: the aperture problem
    conf = flow_confidence(img, tau=1e-3)
    assert conf[..., 4:-4, 4:36].min() > 0.5 and conf[..., 48:].max() == 0
    assert flow_confidence(edge, tau=1e-3).max() < 1e-3
    flow = torch.zeros(1, 2, 32, 64)
    flow[:, 0, :, :48], flow[:, 1, :, :48] = 3.0, -2.0  # the flat part reads 0: wrong
    filled = confidence_fill(flow, conf, sigma=8.0)  # reaches 3 sigma: 24 px
    want = torch.tensor([3.0, -2.0]).view(1, 2, 1, 1)
    assert (filled[..., 4:-4, 4:36] - want).abs().max() < 0.1
    assert (filled[..., 48:] - want).abs().max() < 0.05
    assert torch.equal(confidence_fill(flow, torch.ones_like(conf), 6.0), flow)
    # Nothing confident in reach: the flow stays as it was (not pulled to zero).
    assert torch.allclose(confidence_fill(flow, torch.zeros_like(conf), 6.0), flow)


def _fill_pyramids(off, *filled):
    """Give each ``filled`` model ``off``'s weights; run the first at an odd
    size with gradients (shape kept, gradients finite); return the pyramids
    of ``off`` and each ``filled`` model on one 32x48 pair."""
    for f in filled:
        f.load_state_dict(off.state_dict())
    cur = torch.rand(2, 3, 37, 53, requires_grad=True)
    ref = torch.rand(2, 3, 37, 53)
    v = filled[0](cur, ref)
    assert v.shape == (2, 2, 37, 53)
    v.square().mean().backward()
    assert torch.isfinite(cur.grad).all() and cur.grad.abs().sum() > 0
    with torch.no_grad():
        return [f.flow_pyramid(cur[:, :, :32, :48], ref[:, :, :32, :48])
                for f in (off, *filled)]  # fmt: skip


def test_spynet_fill_in_the_pyramid():
    """The fill runs inside the pyramid at odd sizes, keeps gradients finite,
    acts at the levels it is set for and no others, and refuses bad settings."""
    torch.manual_seed(0)
    off = build_flow("spynet")
    for level in off.nets:  # random, non-zero corrections at every level
        torch.nn.init.normal_(level.net[-1].weight, std=0.05)
    on, finest = (
        build_flow("spynet", fill_sigma=sig, fill_tau=3)
        for sig in ((0, 0, 5, 8, 8), (4, 0, 0, 0, 0))
    )
    pyramids = _fill_pyramids(off, on, finest)
    (a, _), (b, _), (c, _) = (p[0] for p in pyramids)  # stride 16
    assert not torch.allclose(a, b) and torch.equal(a, c)
    assert not torch.allclose(pyramids[0][-1][0], pyramids[2][-1][0])
    for bad in ({"fill_sigma": float("nan")}, {"fill_sigma": float("inf")},
                {"fill_tau": 0.0}, {"fill_sigma": True}, {"fill_sigma": (1, 2)}):  # fmt: skip
        with pytest.raises(ValueError, match="fill"):
            build_flow("spynet", **bad)


def test_pwcnet_fill_at_the_steps_it_is_set_for():
    """PWC-Net's fill (stride 16 in the shipped config) changes that step and
    what follows, not the steps before it; gradients stay finite; bad
    settings are refused."""
    torch.manual_seed(0)
    off = build_flow("pwcnet")
    for dec in off.decoders:  # random, non-zero corrections at every step
        for m in dec.modules():
            if isinstance(m, torch.nn.Conv2d):
                torch.nn.init.normal_(m.weight, std=0.05)
    coarse, third = (build_flow("pwcnet", fill_sigma=sig, fill_tau=0.3)
                     for sig in ((8, 0, 0, 0), (0, 0, 5, 0)))  # fmt: skip
    a, b, c = _fill_pyramids(off, coarse, third)
    assert not torch.allclose(a[0][0], b[0][0]) and not torch.allclose(
        a[-1][0], b[-1][0]
    )
    assert torch.equal(a[0][0], c[0][0]) and torch.equal(a[1][0], c[1][0])
    assert not torch.allclose(a[2][0], c[2][0])
    for bad in ({"fill_sigma": float("nan")}, {"fill_tau": -1.0},
                {"fill_sigma": (1, 2, 3, 4, 5)}):  # fmt: skip
        with pytest.raises(ValueError, match="fill"):
            build_flow("pwcnet", **bad)
    shipped = build_flow("pwcnet", weights="default")
    assert shipped.fill_sigma == (8.0, 0.0, 0.0, 0.0) and shipped.fill_tau == 0.3
    with pytest.raises(InputError, match="fill_sigma"):
        build_flow("pwcnet", weights="default", fill_sigma=0.0)


def _naive_correlation(f1, f2, d):
    b, c, h, w = f1.shape
    out = torch.zeros(b, (2 * d + 1) ** 2, h, w, dtype=f1.dtype)
    for k, (dy, dx) in enumerate(
        (dy, dx) for dy in range(-d, d + 1) for dx in range(-d, d + 1)
    ):
        for y in range(h):
            for x in range(w):
                if 0 <= y + dy < h and 0 <= x + dx < w:
                    out[:, k, y, x] = (f1[:, :, y, x] * f2[:, :, y + dy, x + dx]).mean(
                        1
                    )
    return out


def test_correlation_matches_definition():
    f1, f2 = torch.randn(2, 4, 5, 6), torch.randn(2, 4, 5, 6)
    out = correlation(f1, f2, 2, backend="torch")
    assert out.shape == (2, 25, 5, 6)
    assert torch.allclose(out, _naive_correlation(f1, f2, 2), atol=1e-6)
    # Shift f2 by (dx, dy) = (1, -1): the peak sits at that displacement.
    f2s = torch.roll(f1, shifts=(1, 1), dims=(2, 3))  # f2(p) = f1(p - (1, 1))
    peak = correlation(f1, f2s, 2, backend="torch")[:, :, 2:-2, 2:-2].mean((0, 2, 3))
    assert int(peak.argmax()) == (1 + 2) * 5 + (1 + 2)


def test_correlation_gradcheck():
    f1 = torch.randn(1, 2, 3, 4, dtype=torch.float64, requires_grad=True)
    f2 = torch.randn(1, 2, 3, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: correlation(a, b, 1), (f1, f2))


def test_correlation_rejects_bad_input():
    with pytest.raises(ValueError):
        correlation(torch.zeros(1, 2, 4, 4), torch.zeros(1, 2, 4, 5), 1)
    with pytest.raises(ValueError):
        correlation(torch.zeros(1, 2, 4, 4), torch.zeros(1, 2, 4, 4), 1, "cudnn")


@pytest.mark.skipif(
    not extension_available(), reason="spatial_correlation_sampler absent"
)
def test_correlation_extension_matches_torch():
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    f1 = torch.randn(2, 8, 12, 14, device=dev)
    f2 = torch.randn(2, 8, 12, 14, device=dev)
    a = correlation(f1, f2, 3, backend="torch")
    b = correlation(f1, f2, 3, backend="extension")
    assert torch.allclose(a, b, atol=1e-5)


@pytest.mark.parametrize("kind", ["translation", "affine", "piecewise"])
def test_synthetic_ground_truth_is_exact(kind, astronaut):
    gen = SyntheticFlow([astronaut], size=(64, 80), photometric=False)
    rng = np.random.default_rng(3)
    for _ in range(3):
        cur, ref, flow = gen.sample(rng, kind)
        assert cur.shape == ref.shape == (3, 64, 80) and flow.shape == (2, 64, 80)
        warped = backward_warp(ref[None], flow[None])[0]
        ys, xs = torch.meshgrid(torch.arange(64), torch.arange(80), indexing="ij")
        px, py = xs + flow[0], ys + flow[1]
        inside = (px >= 0) & (px <= 79) & (py >= 0) & (py <= 63)
        err = (warped - cur).abs().mean(0)[inside]
        if kind == "piecewise":  # exact except where a layer is occluded
            assert (err < 0.02).float().mean() > 0.5 and err.median() < 0.01
        else:
            assert err.mean() < 0.01


def test_synthetic_static_share(astronaut):
    """static=1: zero flow, same view; static=0 leaves the default stream as is."""
    still = SyntheticFlow([astronaut], size=(48, 64), static=1.0)
    cur, ref, flow = still.sample(np.random.default_rng(1))
    assert not flow.any() and (cur - ref).abs().mean() < 0.05
    moving = SyntheticFlow([astronaut], size=(48, 64), photometric=False)
    a = SyntheticFlow([astronaut], size=(48, 64), photometric=False, static=0.0)
    for x, y in zip(
        moving.sample(np.random.default_rng(2)), a.sample(np.random.default_rng(2))
    ):
        assert torch.equal(x, y)
    assert moving.sample(np.random.default_rng(2))[2].abs().mean() > 0.1
    with pytest.raises(InputError, match="static"):
        SyntheticFlow([astronaut], static=1.5)


def test_synthetic_texture_patches_move_with_the_scene(astronaut):
    """texture=1: every pair gets a periodic or flat patch that the exact flow
    carries; texture=0 leaves the default stream as is."""
    plain = SyntheticFlow([astronaut], size=(64, 80), photometric=False)
    tex = SyntheticFlow([astronaut], size=(64, 80), photometric=False, texture=1.0)
    ys, xs = torch.meshgrid(torch.arange(64), torch.arange(80), indexing="ij")
    integer_pairs = 0
    for seed in range(12):
        c0, r0, f0 = plain.sample(np.random.default_rng(seed), "translation")
        cur, ref, flow = tex.sample(np.random.default_rng(seed), "translation")
        assert torch.equal(flow, f0)  # the patch is drawn after the motion
        painted = (ref - r0).abs().amax(0) > 1e-6
        assert painted.float().mean() > 0.03
        if torch.equal(flow, flow.round()):
            integer_pairs += 1
            warped = backward_warp(ref[None], flow[None])[0]
            px, py = xs + flow[0], ys + flow[1]
            inside = (px >= 0) & (px <= 79) & (py >= 0) & (py <= 63)
            assert (warped - cur).abs().amax(0)[inside].max() < 1e-4
    assert integer_pairs >= 2
    with pytest.raises(InputError, match="texture"):
        SyntheticFlow([astronaut], texture=-0.1)


def test_faint_patches_carry_grain_that_moves_with_the_scene(astronaut):
    """The 'faint' kind: a ramp plus a few grey levels of grain, a function of
    source coordinates, so painting at p + d equals shifting the painted image."""
    from flows.synthetic import _paint

    tex = SyntheticFlow(
        [astronaut], size=(64, 80), photometric=False, texture=1.0, faint=0.25
    )
    rng = np.random.default_rng(3)
    kinds = [tex._texture_patch(rng, 0.0, 0.0, 1.0) for _ in range(200)]
    assert {p["kind"] for p in kinds} == {"stripes", "grid", "flat", "faint"}
    patch = next(p for p in kinds if p["kind"] == "faint")
    patch["rect"] = (0.0, 0.0, 80.0, 64.0)
    ys, xs = torch.meshgrid(torch.arange(64.0), torch.arange(80.0), indexing="ij")
    img = torch.zeros(3, 64, 80)
    faint = _paint(img, patch, xs, ys)
    flat = _paint(img, {**patch, "kind": "flat"}, xs, ys)
    grain = (faint - flat)[0]
    assert 0 < grain.abs().max() <= patch["amp"] * math.sqrt(8) + 1e-6
    assert grain.std() > 0.2 * patch["amp"]  # grain, not a constant offset
    moved = _paint(img, patch, xs + 3, ys - 2)
    assert torch.allclose(moved[:, 2:, :-3], faint[:, :-2, 3:], atol=1e-5)
    # faint=0 keeps the earlier mix and its random stream
    old = SyntheticFlow([astronaut], size=(64, 80), texture=1.0)
    assert all(
        old._texture_patch(np.random.default_rng(i), 0.0, 0.0, 1.0)["kind"] != "faint"
        for i in range(50)
    )
    with pytest.raises(InputError, match="faint"):
        SyntheticFlow([astronaut], faint=1.5)


def test_photo_sources_reduce_and_refuse_eval(tmp_path):
    import cv2

    from flows.synthetic import photo_sources

    photos = tmp_path / "photos" / "sub"
    photos.mkdir(parents=True)
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (60, 90, 3), dtype=np.uint8)
    cv2.imwrite(str(photos / "a.png"), img)
    got = photo_sources(tmp_path / "photos", downscale=3, repeat=2)
    assert len(got) == 2 and got[0] is got[1]
    assert tuple(got[0].shape) == (3, 20, 30)
    # area reduction: each output pixel is the mean of a 3x3 block (RGB order)
    block = img[:3, :3, ::-1].reshape(-1, 3).mean(0) / 255
    assert torch.allclose(got[0][:, 0, 0], torch.tensor(block).float(), atol=1 / 255)
    evald = tmp_path / "eval" / "x"
    evald.mkdir(parents=True)
    cv2.imwrite(str(evald / "a.png"), img)
    with pytest.raises(InputError, match="eval"):
        photo_sources(evald)
    with pytest.raises(InputError, match="no .jpg"):
        photo_sources(tmp_path / "photos" / "none")


def test_train_script_runs_and_resumes(tmp_path):
    from flows.train import main

    out = tmp_path / "spynet.pth"
    common = ["--flow", "spynet", "--out", str(out), "--crop", "32", "--batch", "2"]
    common += ["--data", str(tmp_path / "none"), "--log-every", "1", "--heldout", "2"]
    main([*common, "--steps", "2"])
    # bf16 autocast resumes the same run (a setting of the steps, not the state).
    main([*common, "--steps", "3", "--precision", "bf16"])
    rows = list(csv.DictReader(open(out.with_suffix(".csv"))))
    assert [int(r["step"]) for r in rows] == [1, 2, 3]
    blob = torch.load(out, weights_only=True)
    assert blob["config"]["step"] == 3
    assert "heldout_epe_px" in out.with_suffix(".yaml").read_text()
    build_flow("spynet", weights=out)
    # --init starts a new run (a fine-tuning) from those weights.
    tuned = tmp_path / "tuned.pth"
    args = ["--flow", "spynet", "--out", str(tuned), "--crop", "32", "--batch", "2",
            "--data", str(tmp_path / "none"), "--heldout", "0", "--steps", "1",
            "--static", "0.5", "--lr", "0"]  # fmt: skip
    main([*args, "--init", str(out)])
    start = torch.load(out, weights_only=True)["state_dict"]
    got = torch.load(tuned, weights_only=True)["state_dict"]
    assert all(torch.equal(got[k].float(), start[k].float()) for k in start)
    with pytest.raises(InputError, match="--init"):
        main(
            [
                *args[:3],
                str(tmp_path / "t2.pth"),
                *args[4:],
                "--init",
                str(tmp_path / "x"),
            ]
        )


def test_train_one_level_leaves_the_others(tmp_path):
    """--level K (SpyNet's level-by-level training) changes nets[K] only."""
    from flows.train import main

    start, out = tmp_path / "start.pth", tmp_path / "level.pth"
    common = ["--flow", "spynet", "--crop", "32", "--batch", "2", "--heldout", "0"]
    common += ["--data", str(tmp_path / "none"), "--levels", "3"]
    main([*common, "--steps", "1", "--out", str(start)])
    main([*common, "--steps", "2", "--level", "1", "--init", str(start)]
         + ["--out", str(out)])  # fmt: skip
    before = torch.load(start, weights_only=True)["state_dict"]
    after = torch.load(out, weights_only=True)["state_dict"]
    changed = {k.split(".")[1] for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"1"}
    with pytest.raises(InputError, match="--level 3"):
        main([*common, "--steps", "1", "--level", "3", "--out", str(tmp_path / "x")])
    with pytest.raises(InputError, match="--level"):
        main(["--flow", "pwcnet", "--steps", "1", "--level", "0", "--out",
              str(tmp_path / "y"), "--crop", "32", "--batch", "2"])  # fmt: skip


def test_pwcnet_grows_a_context_net(tmp_path):
    """--context N --init W adds PWC-Net's context net to weights without one: it
    starts as the identity (same flow as W), trains, and is then recorded."""
    from flows.train import main

    common = ["--flow", "pwcnet", "--crop", "64", "--batch", "2", "--heldout", "0"]
    common += ["--data", str(tmp_path / "none")]
    plain, grown = tmp_path / "plain.pth", tmp_path / "grown.pth"
    main([*common, "--steps", "1", "--out", str(plain)])
    base = build_flow("pwcnet", weights=plain).eval()
    start = build_flow("pwcnet", context=8)
    load_flow_weights(start, plain, grown={"context": "context_net."})
    cur, ref = torch.rand(1, 3, 64, 80), torch.rand(1, 3, 64, 80)
    with torch.no_grad():
        assert torch.equal(start.eval()(cur, ref), base(cur, ref))
    main([*common, "--steps", "2", "--context", "8", "--init", str(plain),
          "--out", str(grown)])  # fmt: skip
    flow = build_flow("pwcnet", weights=grown)
    assert flow.context == 8 and flow.context_net is not None
    after = torch.load(grown, weights_only=True)["state_dict"]
    assert after["context_net.net.6.weight"].abs().sum() > 0  # it trained
    with pytest.raises(InputError, match="records context=8"):
        build_flow("pwcnet", weights=grown, context=0)
    with pytest.raises(InputError, match="records context=0"):
        build_flow("pwcnet", weights=plain, context=8)  # not grown: refused


@pytest.mark.parametrize("name", LEARNED)
def test_shipped_weights_are_small_and_documented(name):
    path = default_weights(name)
    if not path.is_file():
        pytest.skip(f"no shipped weights for {name}")
    assert path.stat().st_size < 3 * 2**20
    assert path.with_suffix(".yaml").is_file() and path.with_suffix(".csv").is_file()


def test_checkpoint_records_its_architecture(tmp_path):
    """A spynet checkpoint loads by path alone; a contradicting setting is refused."""
    from flows.train import main

    out = tmp_path / "iter.pth"
    main(["--flow", "spynet", "--levels", "3", "--iters", "1", "2", "3",
          "--fill-sigma", "0", "2", "4", "--fill-tau", "3",
          "--steps", "1", "--crop", "32", "--batch", "2", "--heldout", "0",
          "--data", str(tmp_path / "none"), "--out", str(out)])  # fmt: skip
    flow = build_flow("spynet", weights=out)
    assert flow.levels == 3 and flow.iters == (1, 2, 3)
    assert flow.fill_sigma == (0.0, 2.0, 4.0) and flow.fill_tau == 3.0
    with pytest.raises(InputError, match="iters"):
        build_flow("spynet", weights=out, iters=1)
    with pytest.raises(InputError, match="fill_sigma"):
        build_flow("spynet", weights=out, fill_sigma=0.0)
    with pytest.raises(InputError, match="not 'pwcnet'"):
        build_flow("pwcnet", weights=out)
    with pytest.raises(ValueError, match="iters"):
        build_flow("spynet", levels=3, iters=(1, 2))
