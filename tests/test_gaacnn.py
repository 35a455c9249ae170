"""GAACNN: ablation switches, the GAT's reach, exact round trips, short training."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from codec_utils import real_rate_distortion, smooth_flow
from PIL import Image

from dvc_common import fixed_threads, pad_to_multiple, unpad
from image_codecs import build_codec, codec_class
from image_codecs.gaacnn_layers import (
    ACNNBlock,
    ChannelSpatialAttention,
    GraphAttention,
    grid_graph,
    grid_offsets,
)
from image_codecs.payload import pack_compressed, unpack_compressed

TINY = dict(codec_class("gaacnn").tiny_config)


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models gain nothing from threads, and on a loaded 2-core machine
    two threads ran this file's coding and training over 5x slower (measured:
    coding 8 held-out crops took 7.8 s with 2 threads, 1.3 s with 1)."""
    with fixed_threads(1):
        yield


def _tiny(seed: int = 0, **kw):
    torch.manual_seed(seed)
    return build_codec("gaacnn", **{"in_channels": 3, **TINY, **kw})


def _n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def _load_png(path: Path) -> torch.Tensor:
    a = np.asarray(Image.open(path).convert("RGB"))
    return torch.from_numpy(a.copy()).permute(2, 0, 1).float().div(255)[None]


# -- ablations ---------------------------------------------------------------------
@pytest.mark.parametrize("switch", ["acnn", "attention", "gat"])
def test_ablation_changes_params_and_output(switch):
    full = _tiny().eval()
    abl = _tiny(**{switch: False}).eval()
    assert _n_params(abl) < _n_params(full)
    # The ablated model takes every weight of the full one it still has, so the
    # only difference left is the switched-off part.
    res = abl.load_state_dict(full.state_dict(), strict=False)
    assert not res.missing_keys
    assert res.unexpected_keys
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    # Training-mode forward (the same quantisation noise for both): untrained
    # latents are small, and rounding would hide the difference at this size.
    full.train(), abl.train()
    outs = []
    for m in (full, abl):
        torch.manual_seed(9)
        with torch.no_grad():
            outs.append(m(x))
    a, b = outs
    assert not torch.allclose(a["likelihoods"]["y"], b["likelihoods"]["y"])
    if switch != "gat":  # the GAT is in the hyper path: it changes the rate only
        assert not torch.allclose(a["x_hat"], b["x_hat"])


def test_acnn_block_counts_match_the_paper():
    """Four ACNN blocks in g_a and g_s, two in h_a and h_s; the attention
    closes g_a; a GAT opens h_a and precedes h_s's parameter convolution."""
    model = _tiny()
    for name, count in (("g_a", 4), ("g_s", 4), ("h_a", 2), ("h_s", 2)):
        blocks = [m for m in getattr(model, name) if isinstance(m, ACNNBlock)]
        assert len(blocks) == count and all(b.asymmetric for b in blocks), name
    assert isinstance(model.g_a[-1], ChannelSpatialAttention)
    assert isinstance(model.h_a[0], GraphAttention)
    assert isinstance(model.h_s[-2], GraphAttention)


def test_acnn_block_ablation_is_plain_3x3():
    blk = ACNNBlock(8, asymmetric=False)
    assert [n for n, _ in blk.named_children()] == ["square"]
    x = torch.randn(1, 8, 10, 10)
    assert torch.equal(blk(x), x + F.relu(blk.square(x)))


def test_acnn_block_is_the_sum_of_three_convolutions():
    """The fused kernel computes conv3x1 + conv3x3 + conv1x3, and each of the
    three kernels gets its own gradient."""
    blk = ACNNBlock(8)
    x = torch.randn(2, 8, 11, 7)
    ref = x + F.relu(blk.square(x) + blk.vertical(x) + blk.horizontal(x))
    out = blk(x)
    assert torch.allclose(out, ref, atol=1e-5)
    out.square().sum().backward()
    for conv in (blk.square, blk.vertical, blk.horizontal):
        assert conv.weight.grad is not None and conv.weight.grad.abs().sum() > 0


def test_acnn_block_grad_and_inference_paths_agree():
    blk = ACNNBlock(8)
    x = torch.randn(2, 8, 12, 9)
    with torch.no_grad():
        a = blk(x)
    b = blk(x)
    assert b.requires_grad and torch.equal(a, b.detach())


def test_attention_is_a_learned_linear_weighting():
    """out = x + w_c * channel + w_s * spatial: zero weights give the identity,
    each weight alone gives its own attention, and the two add linearly."""
    att = ChannelSpatialAttention(16)
    x = torch.randn(2, 16, 5, 6)

    def run(wc: float, ws: float) -> torch.Tensor:
        with torch.no_grad():
            att.weights.copy_(torch.tensor([wc, ws]))
            return att(x)

    assert torch.equal(run(0.0, 0.0), x)
    ch, sp, both = run(1.0, 0.0) - x, run(0.0, 1.0) - x, run(0.5, 2.0) - x
    assert ch.abs().max() > 1e-3 and sp.abs().max() > 1e-3
    assert not torch.allclose(ch, sp)
    assert torch.allclose(both, 0.5 * ch + 2.0 * sp, atol=1e-5)


# -- the GAT's reach -----------------------------------------------------------------
def _footprint(
    module: nn.Module, x: torch.Tensor, pos: tuple[int, int]
) -> torch.Tensor:
    """H' x W' bool: output positions that change when x changes at ``pos``."""
    x2 = x.clone()
    x2[:, :, pos[0], pos[1]] += 1.0
    with torch.no_grad():
        d = (module(x2) - module(x)).abs().sum(dim=(0, 1))
    return d > 0


def _replace_gat(module: nn.Module, make) -> nn.Module:
    """A copy of ``module`` with every GraphAttention replaced by ``make(C)``."""
    module = copy.deepcopy(module)
    for name, child in list(module.named_children()):
        if isinstance(child, GraphAttention):
            setattr(module, name, make(child.proj.in_channels))
    return module


def _conv3x3(c: int) -> nn.Module:
    return nn.Conv2d(c, c, 3, padding=1)


@pytest.mark.parametrize("path", ["h_s", "h_a"])
def test_gat_reaches_beyond_convolutions(path):
    """Perturb one latent position; hyper outputs change beyond the conv RF.

    The reference receptive field is the hyper transform's own convolutions with
    a 3x3 convolution in each GAT's place; a GAT on a 3x3 grid graph stays inside
    it (so this test fails for such a graph), the default graph does not.
    """
    model = _tiny(seed=1).eval()
    g = torch.Generator().manual_seed(5)
    if path == "h_s":  # z_hat (12 x 12) -> entropy parameters at y's 48 x 48
        module, x, pos = (
            model.h_s,
            torch.randn(1, TINY["N"], 12, 12, generator=g),
            (6, 6),
        )
    else:  # y (48 x 48) -> z (12 x 12)
        module, x, pos = (
            model.h_a,
            torch.randn(1, TINY["M"], 48, 48, generator=g),
            (24, 24),
        )
    conv_rf = _footprint(_replace_gat(module, _conv3x3), x, pos)
    local = _footprint(
        _replace_gat(module, lambda c: GraphAttention(c, dilations=())), x, pos
    )
    reach = _footprint(module, x, pos)
    assert conv_rf.any() and not conv_rf.all()
    assert not (local & ~conv_rf).any(), "a 3x3 grid graph must stay inside the conv RF"
    outside = reach & ~conv_rf
    assert outside.any(), "GAT did not reach beyond the convolutions' receptive field"
    # ... and far beyond it, not just at its border: Chebyshev distance of the
    # farthest changed position from the conv RF's bounding box.
    ys, xs = torch.nonzero(conv_rf, as_tuple=True)
    oy, ox = torch.nonzero(outside, as_tuple=True)
    dy = torch.maximum(ys.min() - oy, oy - ys.max()).clamp_min(0)
    dx = torch.maximum(xs.min() - ox, ox - xs.max()).clamp_min(0)
    far = int(torch.maximum(dy, dx).max())
    assert far >= (4 if path == "h_s" else 2), far


def test_grid_graph_offsets():
    offs = grid_offsets(1, (3, 9, 27))
    assert offs[0] == (0, 0) and len(offs) == len(set(offs)) == 9 + 3 * 8
    assert max(max(abs(a), abs(b)) for a, b in offs) == 27
    assert grid_offsets(1, ()) == [(0, 0)] + [
        (a, b) for a in (-1, 0, 1) for b in (-1, 0, 1) if (a, b) != (0, 0)
    ]
    with pytest.raises(ValueError):
        grid_offsets(1, (0,))


def test_gat_small_maps_and_batch_independence():
    """Maps smaller than the dilations work; batch elements do not mix."""
    gat = GraphAttention(12, heads=4)
    x = torch.randn(2, 12, 5, 7)
    out = gat(x)
    assert out.shape == x.shape and torch.isfinite(out).all()
    assert torch.allclose(gat(x[1:]), out[1:], atol=1e-6)


def test_gat_blocks_of_positions_change_nothing():
    """Gathering neighbours in blocks of positions (bounded memory) gives the
    same result as in one block, values and gradients."""
    gat = GraphAttention(8, heads=4)
    with torch.no_grad():
        gat.offset_bias.normal_()
    x = torch.randn(1, 8, 9, 30, requires_grad=True)
    one = gat(x)
    (g_one,) = torch.autograd.grad(one.square().sum(), x)
    gat.block_elems = 8 * 33 * 7  # 7 positions per block
    many = gat(x)
    (g_many,) = torch.autograd.grad(many.square().sum(), x)
    assert torch.allclose(one, many, atol=1e-6)
    assert torch.allclose(g_one, g_many, atol=1e-5)


def test_gat_runs_on_a_1080p_latent():
    """The default h_s GAT (C = 288) on a 1920x1088 frame's 68 x 120 latent:
    every dilation is active, and the output is finite."""
    gat = GraphAttention(288, heads=4).eval()
    active, index, valid = grid_graph(gat.offsets, 68, 120)
    assert len(active) == len(gat.offsets) == 33
    # Far rings reach 27 positions: a corner node keeps its 3 inward edges.
    assert int(valid[:, 0].sum()) == 1 + 3 + 3 * 3
    x = torch.randn(1, 288, 68, 120, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = gat(x)
    assert out.shape == x.shape and torch.isfinite(out).all()


def test_input_offset_defaults():
    assert _tiny().input_offset == 0.5
    assert _tiny(in_channels=2).input_offset == 0.0
    assert _tiny(input_offset=0.0).input_offset == 0.0


# -- exact round trips through bytes ------------------------------------------------
def _round_trip(model, x: torch.Tensor) -> tuple[int, torch.Tensor, torch.Tensor]:
    xp, pads = pad_to_multiple(x, model.downsampling_factor)
    with torch.no_grad():
        enc = model.compress(xp)
        data = pack_compressed(enc)
        strings, shape = unpack_compressed(bytes(data))
        dec = model.decompress(strings, shape)
    assert torch.equal(dec["x_hat"], enc["x_hat"])
    return len(data), unpad(dec["x_hat"], pads), unpad(enc["x_hat"], pads)


def test_flow_round_trip_through_bytes():
    model = _tiny(in_channels=2).eval()
    model.update(force=True)
    flow = smooth_flow(96)[..., :80, :]
    n, dec, enc = _round_trip(model, flow)
    assert n > 0 and dec.shape == flow.shape and torch.equal(dec, enc)


def test_kodak_round_trip_through_bytes(shared_data):
    x = _load_png(shared_data / "eval" / "kodak" / "kodim23.png")[..., 100:260, 200:392]
    model = _tiny().eval()
    model.update(force=True)
    n, dec, _ = _round_trip(model, x)
    assert n > 0 and dec.shape == x.shape


# -- short training on real crops -----------------------------------------------------
STEPS = 60
BATCH = 4
LAMBDA = 0.01


def _vimeo(shared_data: Path, listfile: str, frames: tuple[str, ...]) -> list:
    root = shared_data / "train" / "vimeo_septuplet"
    clips = (root / listfile).read_text().split()
    return [_load_png(root / "sequences" / c / f) for c in clips for f in frames]


def _crops(images, n: int, size: int, g: torch.Generator) -> torch.Tensor:
    out = []
    for _ in range(n):
        im = images[int(torch.randint(len(images), (1,), generator=g))]
        y = int(torch.randint(im.shape[-2] - size + 1, (1,), generator=g))
        x = int(torch.randint(im.shape[-1] - size + 1, (1,), generator=g))
        out.append(im[..., y : y + size, x : x + size])
    return torch.cat(out)


@pytest.mark.slow
def test_short_training_improves_rate_and_distortion(shared_data):
    """A few dozen steps on Vimeo crops beat the initialisation on held-out crops.

    Both the real payload size and the decoded MSE must improve: the untrained
    latent (about one quantisation step in amplitude) costs more bits than the
    trained one at this lambda, and decodes to noise around mid-grey.
    """
    train = _vimeo(shared_data, "sep_trainlist.txt", ("im1.png", "im7.png"))
    held_out = _crops(
        _vimeo(shared_data, "sep_testlist.txt", ("im4.png",)),
        8,
        128,
        torch.Generator().manual_seed(1),
    )
    model = _tiny()
    bpp0, mse0 = real_rate_distortion(model, held_out)

    g = torch.Generator().manual_seed(0)
    net = [p for n, p in model.named_parameters() if not n.endswith(".quantiles")]
    aux = [p for n, p in model.named_parameters() if n.endswith(".quantiles")]
    opt, aux_opt = torch.optim.Adam(net, lr=2e-3), torch.optim.Adam(aux, lr=1e-2)
    model.train()
    for _ in range(STEPS):
        x = _crops(train, BATCH, 64, g)
        out = model(x)
        bpp = model.rate_bits(out["likelihoods"]) / (64 * 64)
        loss = LAMBDA * 255**2 * F.mse_loss(out["x_hat"], x) + bpp.mean()
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net, 1.0)
        opt.step()
        aux_opt.zero_grad()
        model.aux_loss().backward()
        aux_opt.step()

    bpp1, mse1 = real_rate_distortion(model, held_out)
    assert bpp1 < bpp0, (bpp0, bpp1)
    assert mse1 < mse0, (mse0, mse1)
