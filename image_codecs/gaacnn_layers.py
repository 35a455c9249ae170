"""Building blocks of GAACNN (Tang et al., IEEE TCSVT 2023).

- :class:`ACNNBlock`: the asymmetric convolution block (3x1, 3x3 and 1x3 kernels,
  ReLU, residual), or a plain residual 3x3 block for the ablation.
- :class:`ChannelSpatialAttention`: channel attention and spatial (position)
  attention on the latent, combined by a learned linear weighting.
- :class:`GraphAttention`: graph attention (GAT) over latent positions on a
  fixed multi-scale grid graph, in plain torch (one gather per edge, in blocks
  of positions), so memory grows linearly with the number of positions.

Z. Tang, H. Wang, X. Yi, Y. Zhang, S. Kwong, C.-C. J. Kuo, "Joint Graph Attention
and Asymmetric Convolutional Neural Network for Deep Image Compression", IEEE
TCSVT 33(1), 2023. Our own implementation from the paper's description.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = [
    "ACNNBlock",
    "AddConstant",
    "ChannelSpatialAttention",
    "GraphAttention",
    "grid_graph",
    "grid_offsets",
]


class ACNNBlock(nn.Module):
    """Asymmetric convolution block: ``x + ReLU(conv3x1(x) + conv3x3(x) + conv1x3(x))``.

    The two 1-D kernels add to the square kernel's response, strengthening its
    centre row and column (the "skeleton" of the 3x3 kernel), which is how the
    paper's Fig. 2 refines local key features. With ``asymmetric=False`` it is
    ``x + ReLU(conv3x3(x))``: the ablation with plain square convolutions.

    The three convolutions are linear and share their input, so their sum is
    one 3x3 convolution whose kernel is the square kernel plus the 1-D kernels
    on its centre column and row (the additivity X. Ding et al.'s ACNet, ICCV
    2019, builds on). The block runs that one convolution, in training too:
    the three kernels stay separate parameters and each gets its own gradient
    through the sum, at a third of the cost.

    Shapes: ``B x C x H x W`` in and out.

    Args:
        channels: C.
        asymmetric: include the 3x1 and 1x3 branches.
    """

    def __init__(self, channels: int, asymmetric: bool = True) -> None:
        super().__init__()
        self.asymmetric = bool(asymmetric)
        self.square = nn.Conv2d(channels, channels, 3, padding=1)
        if self.asymmetric:
            self.vertical = nn.Conv2d(channels, channels, (3, 1), padding=(1, 0))
            self.horizontal = nn.Conv2d(channels, channels, (1, 3), padding=(0, 1))

    def fused_kernel(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The one 3x3 kernel (C x C x 3 x 3) and bias (C) the block applies."""
        if not self.asymmetric:
            return self.square.weight, self.square.bias
        weight = (
            self.square.weight
            + F.pad(self.vertical.weight, (1, 1, 0, 0))
            + F.pad(self.horizontal.weight, (0, 0, 1, 1))
        )
        bias = self.square.bias + self.vertical.bias + self.horizontal.bias
        return weight, bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.conv2d(x, *self.fused_kernel(), padding=1)
        if not torch.is_grad_enabled():
            # Inference: in place, so a 1080p frame's full-resolution
            # activations are held fewer times; the same values as below.
            return F.relu_(h).add_(x)
        return F.relu(h) + x


class AddConstant(nn.Module):
    """``x + value``: a fixed shift (no parameters), shapes unchanged."""

    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = float(value)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.value if self.value else x

    def extra_repr(self) -> str:
        return f"value={self.value}"


class ChannelSpatialAttention(nn.Module):
    """Channel and spatial self-attention, linearly weighted (the paper's Fig. 3).

    Channel attention relates the C feature maps to each other. With ``F = x``
    flattened to ``C x n`` (n = H*W positions) and ``F~`` its rows centred and
    scaled to unit norm, ``A_c = softmax(tau * F~ F~^T)`` (C x C: the channels'
    correlation coefficients, sharpened by a learned temperature ``tau``) and
    ``out_c = A_c V_c(x)`` with a 1x1 value projection ``V_c``. Correlations,
    not raw inner products: they do not grow with the latent's amplitude or
    the image size, so the softmax neither saturates while the latent grows in
    training nor changes character between training crops and 1080p frames.

    Spatial attention relates positions: queries and keys are 1x1 projections
    to ``C / reduction`` channels, values to C channels, ``out_s = softmax(Q K^T
    / sqrt(d)) V`` over all n positions (``scaled_dot_product_attention``, whose
    CPU and CUDA kernels do not materialise the n x n matrix).

    The result is ``x + w_c * out_c + w_s * out_s`` with learned scalars ``w_c``
    and ``w_s`` (the learned linear weighting). They start small
    (``init_weight``), not 0: the block starts close to the identity, so it does
    not disturb the transform's first steps, yet it already contributes (and
    its projections get gradients) at initialisation.

    Shapes: ``B x C x H x W`` in and out.

    Args:
        channels: C.
        reduction: query/key channel reduction for spatial attention.
        init_weight: initial value of ``w_c`` and ``w_s``.
    """

    def __init__(self, channels: int, reduction: int = 8, init_weight: float = 0.1):
        super().__init__()
        d = max(channels // reduction, 4)
        self.query = nn.Conv2d(channels, d, 1)
        self.key = nn.Conv2d(channels, d, 1)
        self.value = nn.Conv2d(channels, channels, 1)
        self.channel_value = nn.Conv2d(channels, channels, 1)
        #: log of the channel attention's temperature tau (tau = 1 at start).
        self.log_temperature = nn.Parameter(torch.zeros(()))
        #: (w_c, w_s): the learned linear weighting of the two attentions.
        self.weights = nn.Parameter(torch.full((2,), float(init_weight)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        f = x.flatten(2)  # B x C x n
        f = F.normalize(f - f.mean(dim=-1, keepdim=True), dim=-1, eps=1e-6)
        energy = torch.bmm(f, f.transpose(1, 2)) * self.log_temperature.exp()
        out_c = torch.bmm(energy.softmax(dim=-1), self.channel_value(x).flatten(2))

        q = self.query(x).flatten(2).transpose(1, 2)[:, None]  # B x 1 x n x d
        k = self.key(x).flatten(2).transpose(1, 2)[:, None]
        v = self.value(x).flatten(2).transpose(1, 2)[:, None]  # B x 1 x n x C
        out_s = F.scaled_dot_product_attention(q, k, v)[:, 0].transpose(1, 2)

        wc, ws = self.weights[0], self.weights[1]
        return x + (wc * out_c + ws * out_s).reshape(b, c, h, w)


def grid_offsets(radius: int = 1, dilations: Sequence[int] = (3, 9, 27)) -> list:
    """Neighbour offsets ``(dy, dx)`` of the GAT graph, self loop first.

    The local window ``[-radius, radius]^2`` plus, for each dilation d, the eight
    points ``(d*a, d*b)``, ``a, b in {-1, 0, 1}``: an a-trous pattern whose
    reach grows geometrically while the degree grows by 8 per scale.
    """
    if radius < 0 or any(int(d) < 1 for d in dilations):
        raise ValueError(f"bad graph: radius {radius}, dilations {tuple(dilations)}")
    offs = [(0, 0)]
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            offs.append((dy, dx))
    for d in dilations:
        for a in (-1, 0, 1):
            for b in (-1, 0, 1):
                offs.append((int(d) * a, int(d) * b))
    seen: set = set()
    return [o for o in offs if not (o in seen or seen.add(o))]


@functools.lru_cache(maxsize=32)
def grid_graph(
    offsets: tuple[tuple[int, int], ...], h: int, w: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The edges of the grid graph on an ``h x w`` map, as gather indexes.

    Only offsets that reach inside the map from at least one node are kept
    (the others carry no edge; skipping them changes no result).

    Returns:
        ``(active, index, valid)``: ``active`` (K long) the kept offsets'
        positions in ``offsets``; ``index`` (K x h*w long) the flat position of
        each node's k-th neighbour (the node itself where that lies outside the
        map); ``valid`` (K x h*w bool) whether it lies inside.
    """
    keep = [k for k, (dy, dx) in enumerate(offsets) if abs(dy) < h and abs(dx) < w]
    off = torch.tensor([offsets[k] for k in keep], dtype=torch.long)  # K x 2
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    ny = ys.flatten()[None] + off[:, :1]
    nx = xs.flatten()[None] + off[:, 1:]
    valid = (ny >= 0) & (ny < h) & (nx >= 0) & (nx < w)
    self_index = torch.arange(h * w)[None].expand_as(ny)
    index = torch.where(valid, ny * w + nx, self_index)
    return torch.tensor(keep, dtype=torch.long), index, valid


class GraphAttention(nn.Module):
    """Graph attention (Velickovic et al., ICLR 2018) over latent positions.

    **The graph.** Nodes are the H x W positions of a feature map; node
    features are the C channels there. The graph is fixed by the map's size
    (never by its values, so encoder and decoder build the same one from the
    same shape): node (i, j) links to (i + dy, j + dx) for every offset of
    :func:`grid_offsets`, by default the 3x3 window plus 8-point rings at
    dilations 3, 9 and 27 (33 neighbours incl. itself; edges leaving the map
    are dropped). One layer therefore reaches 27 positions away (432 pixels at
    the latent's 16x down-sampling), far beyond the receptive field of the
    hyper path's convolutions, while the degree stays 33 whatever the size. A
    k-nearest-neighbour graph in feature space would need all-pairs distances
    (O((HW)^2), 8160^2 for a 1080p latent) and a value-dependent graph that
    the decoder would have to rebuild bit-exactly; this one needs neither.

    **The attention**, per head h and edge i <- j, as in GAT plus a learned
    bias per offset::

        e_ij   = LeakyReLU(a_dst . W x_i + a_src . W x_j + b[h, offset(i, j)])
        alpha  = softmax_j(e_ij)                     (over the neighbours of i)
        x_i'   = x_i + P ELU(sum_j alpha_ij W x_j)   (P: 1x1 projection)

    The offset bias lets the layer learn which directions and distances
    matter. ``P`` starts at a tenth of PyTorch's default scale, so the layer
    starts close to the identity (yet not at it: its other weights get
    gradients from the first step).

    **Memory.** Neighbour features are gathered row by row (one contiguous
    row of ``B*C`` features per edge) in blocks of positions whose gathered
    features stay under ``block_elems`` elements (16 MB by default). Without
    gradients (coding) memory is O(H W C) for the features, O(K H W heads)
    for the attention weights (K = 33 neighbours), and one block. For a
    1920x1080 frame (padded to 1920x1088: a 68 x 120 latent, 8160 nodes) and
    C = 288 (the default codec's h_s layer) that is 9.4 MB of features, 4.3
    MB of weights and the block: one call raised the process's peak resident
    memory by 80 MB (measured with ``resource.getrusage``, torch 2.14 CPU;
    allocator slack included). In training every block is kept for the
    backward pass: O(K H W C), 0.3 MB per 64x64 crop at C = 288.

    Shapes: ``B x C x H x W`` in and out.

    Args:
        channels: C.
        heads: attention heads (reduced to a divisor of C).
        radius: local window radius.
        dilations: ring distances of the long-range neighbours.
        negative_slope: of the LeakyReLU on the scores.
        block_elems: gathered elements per block of positions.
    """

    def __init__(
        self,
        channels: int,
        heads: int = 4,
        radius: int = 1,
        dilations: Sequence[int] = (3, 9, 27),
        negative_slope: float = 0.2,
        block_elems: int = 1 << 22,
    ) -> None:
        super().__init__()
        self.heads = math.gcd(int(channels), int(heads))
        self.offsets = tuple(grid_offsets(radius, dilations))
        self.negative_slope = float(negative_slope)
        self.block_elems = int(block_elems)
        self.proj = nn.Conv2d(channels, channels, 1, bias=False)
        # Grouped 1x1 convs: one attention vector per head over its channels.
        self.att_dst = nn.Conv2d(channels, self.heads, 1, groups=self.heads, bias=False)
        self.att_src = nn.Conv2d(channels, self.heads, 1, groups=self.heads, bias=False)
        self.offset_bias = nn.Parameter(torch.zeros(self.heads, len(self.offsets)))
        self.out = nn.Conv2d(channels, channels, 1)
        with torch.no_grad():
            self.out.weight.mul_(0.1)
            self.out.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        n, nh = h * w, self.heads
        active, index, valid = grid_graph(self.offsets, h, w)
        active, index = active.to(x.device), index.to(x.device)
        valid = valid.to(x.device)
        wx = self.proj(x)
        s_dst = self.att_dst(wx).flatten(2)  # B x heads x n
        s_src = self.att_src(wx).flatten(2)
        scores = s_src[:, :, index] + s_dst[:, :, None]  # B x heads x K x n
        scores = scores + self.offset_bias[:, active][None, :, :, None]
        scores = F.leaky_relu(scores, self.negative_slope)
        # The self loop is always valid, so no row is empty, and edges that
        # leave the map get weight exactly 0.
        alpha = scores.masked_fill(~valid, float("-inf")).softmax(dim=2)

        # Node-major features (n x B*C): gathering a neighbour copies one
        # contiguous row, far faster than indexing the last dimension.
        feats = wx.flatten(2).permute(2, 0, 1).reshape(n, b * c)
        weights = alpha.permute(2, 3, 0, 1)[..., None]  # K x n x B x heads x 1
        k_count = index.shape[0]
        step = max(1, self.block_elems // max(1, b * c * k_count))
        parts = []
        for s in range(0, n, step):
            idx = index[:, s : s + step]
            nb = feats.index_select(0, idx.reshape(-1))
            nb = nb.view(k_count, idx.shape[1], b, nh, c // nh)
            parts.append((nb * weights[:, s : s + step]).sum(dim=0))
        agg = torch.cat(parts, dim=0) if len(parts) > 1 else parts[0]
        agg = agg.reshape(n, b, c).permute(1, 2, 0).reshape(b, c, h, w)
        return x + self.out(F.elu(agg))
