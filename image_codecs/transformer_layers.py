"""Transformer blocks for the image codecs: Swin-style windowed self-attention,
patch merging / splitting, and the chunk context transformer.

The Swin design (Z. Liu et al., "Swin Transformer: Hierarchical Vision
Transformer using Shifted Windows", ICCV 2021) is read from the paper: attention
inside non-overlapping ``w x w`` windows, every second block with the windows
shifted by ``w // 2`` (a cyclic roll plus a mask so that tokens only attend to
tokens that were neighbours before the roll), and a learned relative position
bias per head. Feature maps whose size is not a multiple of ``w`` are padded
inside the block and the padded tokens are masked out as keys, so any size works
and the result does not depend on what the padding holds.

Tensors inside the transforms are channels-last (``B x H x W x C``) because
every linear layer and LayerNorm acts on the last dimension.
"""

from __future__ import annotations

import functools

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = [
    "ChunkContextTransformer",
    "PatchMerging",
    "PatchSplit",
    "SwinBlock",
    "SwinStage",
    "WindowAttention",
]

# Large negative logit for masked keys. Finite, so a row whose keys are all
# masked (only possible for a padded query, whose output is discarded) gives a
# uniform softmax instead of NaN.
_MASKED = -1e4


class WindowAttention(nn.Module):
    """Multi-head self-attention inside ``w x w`` windows with relative bias.

    Args:
        dim: token channels C.
        num_heads: attention heads (``dim`` must be divisible by it).
        window: window side w (tokens).
    """

    def __init__(self, dim: int, num_heads: int, window: int) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.window = window
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.bias_table = nn.Parameter(torch.zeros(num_heads, (2 * window - 1) ** 2))
        nn.init.trunc_normal_(self.bias_table, std=0.02)
        ys, xs = torch.meshgrid(
            torch.arange(window), torch.arange(window), indexing="ij"
        )
        c = torch.stack([ys.flatten(), xs.flatten()])  # 2 x w^2
        rel = c[:, :, None] - c[:, None, :] + window - 1  # 2 x w^2 x w^2
        self.register_buffer(
            "rel_index", rel[0] * (2 * window - 1) + rel[1], persistent=False
        )

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """Attention over windows.

        Args:
            x: ``(B * nW) x w^2 x C`` window tokens.
            mask: ``nW x w^2 x w^2`` additive logits (0 or a large negative) or
                None.

        Returns:
            Tensor shaped like ``x``.
        """
        Bw, n, C = x.shape
        h = self.num_heads
        qkv = self.qkv(x).reshape(Bw, n, 3, h, C // h).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = (q * self.scale) @ k.transpose(-2, -1)  # Bw x h x n x n
        attn = attn + self.bias_table[:, self.rel_index][None]
        if mask is not None:
            nW = mask.shape[0]
            attn = attn.view(Bw // nW, nW, h, n, n) + mask[None, :, None]
            attn = attn.view(Bw, h, n, n)
        out = attn.softmax(dim=-1) @ v  # Bw x h x n x C/h
        return self.proj(out.transpose(1, 2).reshape(Bw, n, C))


@functools.lru_cache(maxsize=64)
def _window_mask(
    H: int, W: int, window: int, shift: int, device: torch.device
) -> torch.Tensor | None:
    """Additive attention mask of the (padded, rolled) windows, or None.

    A token may attend to another only if both were in the same region before
    the cyclic roll and both are real (not padding). Regions get labels; any
    two tokens with different labels are masked.

    Returns:
        ``nW x w^2 x w^2`` tensor, or None when nothing needs masking. Cached
        per size (every block of a stage, and every training step, asks for
        the same one); callers must not modify it.
    """
    Hp = -(-H // window) * window
    Wp = -(-W // window) * window
    if shift == 0 and Hp == H and Wp == W:
        return None
    labels = torch.zeros(Hp, Wp, dtype=torch.long, device=device)
    if shift > 0:
        cuts = (slice(0, -window), slice(-window, -shift), slice(-shift, None))
        n = 0
        for hs in cuts:
            for ws in cuts:
                labels[hs, ws] = n
                n += 1
    pad = torch.ones(Hp, Wp, dtype=torch.bool, device=device)
    pad[:H, :W] = False
    if shift > 0:
        pad = torch.roll(pad, shifts=(-shift, -shift), dims=(0, 1))
    labels = labels + 16 * pad.long()
    win = labels.view(Hp // window, window, Wp // window, window)
    win = win.permute(0, 2, 1, 3).reshape(-1, window * window)
    differ = win[:, :, None] != win[:, None, :]
    return differ.float() * _MASKED


class SwinBlock(nn.Module):
    """Pre-norm Swin block: (shifted) window attention and an MLP, residual.

    Args:
        dim: channels C.
        num_heads: attention heads.
        window: window side w.
        shifted: shift the windows by ``w // 2`` (odd blocks of a stage).
        mlp_ratio: hidden width of the MLP as a multiple of C.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        window: int,
        shifted: bool,
        mlp_ratio: float = 2.0,
    ) -> None:
        super().__init__()
        self.window = window
        self.shift = window // 2 if shifted else 0
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, num_heads, window)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(
            nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``B x H x W x C`` -> ``B x H x W x C`` (any H, W)."""
        B, H, W, C = x.shape
        w = self.window
        # A map that fits in one window gains nothing from shifting it.
        shift = self.shift if (H > w or W > w) else 0
        h = self.norm1(x)
        ph, pw = (-H) % w, (-W) % w
        if ph or pw:
            h = F.pad(h, (0, 0, 0, pw, 0, ph))
        Hp, Wp = H + ph, W + pw
        if shift:
            h = torch.roll(h, shifts=(-shift, -shift), dims=(1, 2))
        win = h.view(B, Hp // w, w, Wp // w, w, C).permute(0, 1, 3, 2, 4, 5)
        win = win.reshape(-1, w * w, C)
        out = self.attn(win, _window_mask(H, W, w, shift, x.device))
        out = out.view(B, Hp // w, Wp // w, w, w, C).permute(0, 1, 3, 2, 4, 5)
        out = out.reshape(B, Hp, Wp, C)
        if shift:
            out = torch.roll(out, shifts=(shift, shift), dims=(1, 2))
        x = x + out[:, :H, :W]
        return x + self.mlp(self.norm2(x))


class SwinStage(nn.Sequential):
    """``depth`` Swin blocks, alternating regular and shifted windows."""

    def __init__(self, dim: int, depth: int, num_heads: int, window: int) -> None:
        super().__init__(
            *(
                SwinBlock(dim, num_heads, window, shifted=i % 2 == 1)
                for i in range(depth)
            )
        )


class PatchMerging(nn.Module):
    """2x down-sampling: each 2x2 patch's channels concatenated, (norm,) linear.

    ``B x H x W x C_in`` -> ``B x H/2 x W/2 x C_out`` (H, W even).

    Args:
        in_dim: C_in.
        out_dim: C_out.
        norm: LayerNorm before the linear map, as in Swin. A codec may leave it
            out: the norm removes each patch's mean and amplitude, which an
            image codec must carry through.
    """

    def __init__(self, in_dim: int, out_dim: int, norm: bool = True) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(4 * in_dim) if norm else nn.Identity()
        self.reduction = nn.Linear(4 * in_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, H, W, C = x.shape
        x = x.view(B, H // 2, 2, W // 2, 2, C).permute(0, 1, 3, 2, 4, 5)
        return self.reduction(self.norm(x.reshape(B, H // 2, W // 2, 4 * C)))


class PatchSplit(nn.Module):
    """2x up-sampling, the inverse of :class:`PatchMerging`: (norm,) linear to
    four tokens' channels, spread over a 2x2 patch.

    ``B x H x W x C_in`` -> ``B x 2H x 2W x C_out``; ``norm`` as in
    :class:`PatchMerging`.
    """

    def __init__(self, in_dim: int, out_dim: int, norm: bool = True) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(in_dim) if norm else nn.Identity()
        self.expand = nn.Linear(in_dim, 4 * out_dim)
        self.out_dim = out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, H, W, _ = x.shape
        C = self.out_dim
        x = self.expand(self.norm(x)).view(B, H, W, 2, 2, C)
        return x.permute(0, 1, 3, 2, 4, 5).reshape(B, 2 * H, 2 * W, C)


class _ContextLayer(nn.Module):
    """Queries attend to themselves and to fixed context tokens; then an MLP.

    Keys come from layer-normalised tokens (stable logits); values from the
    tokens as they are, so a decoded value's amplitude reaches the output
    linearly. Normalised values would keep only each token's direction, and
    the mean of a latent element could then follow its decoded neighbours'
    values only through a saturating nonlinearity (measured: on latents whose
    second channel group repeats the first, that model saved no bits at all
    in 300 steps).
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.norm_q = nn.LayerNorm(dim)
        self.norm_c = nn.LayerNorm(dim)
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(
            nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim)
        )

    def forward(
        self, x: torch.Tensor, ctx: torch.Tensor, logits_bias: torch.Tensor
    ) -> torch.Tensor:
        """x: ``B x n x P x d``; ctx: ``B x n x K_c x d``;
        logits_bias: ``n x heads x P x (P + K_c)``."""
        B, n, P, d = x.shape
        h = self.num_heads
        xn = self.norm_q(x)
        keys = torch.cat([xn, self.norm_c(ctx)], dim=2)  # B x n x K x d
        values = torch.cat([x, ctx], dim=2)
        K = keys.shape[2]
        q = self.q(xn).view(B, n, P, h, d // h).transpose(2, 3)
        k = self.k(keys).view(B, n, K, h, d // h).transpose(2, 3)
        v = self.v(values).view(B, n, K, h, d // h).transpose(2, 3)
        attn = (q * self.scale) @ k.transpose(-2, -1)  # B x n x h x P x K
        attn = (attn + logits_bias[None]).softmax(dim=-1)
        out = (attn @ v).transpose(2, 3).reshape(B, n, P, d)
        x = x + self.proj(out)
        return x + self.mlp(self.norm2(x))


class ChunkContextTransformer(nn.Module):
    """The transformer of the chunk context model.

    For each chunk being coded, its ``P`` query tokens (hyperprior features at
    the chunk's latent positions) attend, in every layer, to themselves and to
    ``K_c`` context tokens embedded once: the decoded values of the chunks in
    the sliding window, one token per latent position ("local" tokens), plus
    one summary token per window chunk. A query sees local tokens only within
    ``+-radius`` latent positions of itself (the same neighbourhood whatever
    the chunk size, so a model trained on small crops behaves the same on
    large images) and every summary token (so every chunk in the window
    informs every position). Attention logits get a learned bias per head,
    indexed by the key's kind (:attr:`KINDS`) and, for local keys, the latent
    offset from query to key. Keys marked invalid (padding, chunks before the
    first) are masked.

    The bias starts at ``-locality`` times the Chebyshev distance of the
    offset (summary tokens: as at distance 1), so at initialisation each
    query attends mostly to its own position, in its own chunk and in the
    window's chunks: the co-located element of the previous channel group,
    the most informative context of a channel-conditional model, reaches the
    output from the first step instead of after the bias has been learned.
    The output is the residual stream itself, not normalised: the entropy
    parameters read amplitudes from it.

    Args:
        dim: token width d.
        depth: layers.
        num_heads: heads per layer.
        radius: reach of the local attention in latent positions.
        mlp_ratio: hidden width of the MLPs as a multiple of d.
        locality: initial logit penalty per latent position of distance.
    """

    #: Key kinds: the chunk's own hyperprior tokens; decoded positions of a
    #: chunk of the same / an earlier channel group; summaries of such chunks.
    KINDS = ("own", "same-group", "other-group", "same-summary", "other-summary")

    def __init__(
        self,
        dim: int,
        depth: int,
        num_heads: int,
        radius: int = 3,
        mlp_ratio: float = 2.0,
        locality: float = 2.0,
    ) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        if radius < 0:
            raise ValueError(f"radius must be >= 0, got {radius}")
        self.num_heads = num_heads
        self.radius = radius
        r = torch.arange(-radius, radius + 1)
        dist = torch.maximum(r[:, None].abs(), r[None, :].abs()).float()
        init = -float(locality) * dist.flatten()
        init = init[None].repeat(len(self.KINDS), 1)
        init[3:] = -float(locality)  # summaries (only their centre entry is used)
        self.bias_table = nn.Parameter(init.flatten()[None].repeat(num_heads, 1))
        with torch.no_grad():
            self.bias_table.add_(0.02 * torch.randn_like(self.bias_table))
        self.layers = nn.ModuleList(
            _ContextLayer(dim, num_heads, mlp_ratio) for _ in range(depth)
        )

    def logits_bias(
        self,
        q_coords: torch.Tensor,
        k_coords: torch.Tensor,
        k_kind: torch.Tensor,
        k_valid: torch.Tensor,
        k_local: torch.Tensor,
    ) -> torch.Tensor:
        """Learned bias plus the key mask.

        Args:
            q_coords: ``n x P x 2`` latent (row, col) of the queries.
            k_coords: ``n x K x 2`` of the keys (ignored for non-local keys).
            k_kind: ``n x K`` long, index into :attr:`KINDS`.
            k_valid: ``n x K`` bool.
            k_local: ``n x K`` bool: the key is seen only within ``radius``.

        Returns:
            ``n x heads x P x K`` additive logits.
        """
        r = self.radius
        side = 2 * r + 1
        off = k_coords[:, None] - q_coords[:, :, None]  # n x P x K x 2
        near = (off.abs() <= r).all(dim=-1)
        local = k_local[:, None]
        off = off.clamp(-r, r) * local[..., None]
        idx = k_kind[:, None] * side * side + (off[..., 0] + r) * side + off[..., 1] + r
        bias = self.bias_table[:, idx].permute(1, 0, 2, 3)
        ok = k_valid[:, None] & (near | ~local)
        return bias + (~ok)[:, None].float() * _MASKED

    def forward(
        self, x: torch.Tensor, ctx: torch.Tensor, logits_bias: torch.Tensor
    ) -> torch.Tensor:
        """x: ``B x n x P x d`` queries; ctx: ``B x n x K_c x d``; the bias from
        :meth:`logits_bias` with ``K = P + K_c``. Returns ``B x n x P x d``."""
        for layer in self.layers:
            x = layer(x, ctx, logits_bias)
        return x
