"""Small helpers the codec tests share: natural test images, a quick trainer, and
the real rate and distortion of a batch coded to bytes."""

from __future__ import annotations

import numpy as np
import skimage.data
import torch
import torch.nn.functional as F

from image_codecs import build_codec, codec_class
from image_codecs.payload import pack_compressed

# Rate points for quick training: lambda of the MSE term per quality index.
LAMBDAS = (0.002, 0.008, 0.03, 0.12)


def natural_image(size: int = 256) -> torch.Tensor:
    """A 1 x 3 x size x size crop of scikit-image's astronaut, in [0, 1]."""
    a = skimage.data.astronaut()
    off = (a.shape[0] - size) // 2
    crop = np.ascontiguousarray(a[off : off + size, off : off + size])
    return torch.from_numpy(crop).permute(2, 0, 1).float().div(255)[None]


def smooth_flow(size: int = 256) -> torch.Tensor:
    """A 1 x 2 x size x size smooth synthetic flow field, in pixels."""
    yy, xx = torch.meshgrid(
        torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij"
    )
    return torch.stack([3 * torch.sin(2 * xx) + 2 * yy, 2 * torch.cos(3 * yy) - xx])[
        None
    ]


def random_crops(
    x: torch.Tensor, n: int, size: int, gen: torch.Generator
) -> torch.Tensor:
    """``n`` random ``size`` x ``size`` crops of a 1 x C x H x W tensor."""
    h, w = x.shape[-2:]
    ys = torch.randint(0, h - size + 1, (n,), generator=gen).tolist()
    xs = torch.randint(0, w - size + 1, (n,), generator=gen).tolist()
    return torch.cat([x[..., a : a + size, b : b + size] for a, b in zip(ys, xs)])


def quick_train(
    model,
    data: torch.Tensor,
    steps: int,
    crop: int = 64,
    batch: int = 4,
    lr: float = 1e-3,
    lmbda: float | None = None,
    seed: int = 0,
    precision: str = "fp32",
) -> None:
    """Train ``model`` on random crops of ``data`` for ``steps`` steps.

    ``precision="bf16"`` runs the forward under CPU bf16 autocast, as
    ``dvc-ext train precision=bf16`` does.

    L = lambda * 255^2 * MSE + bpp, CompressAI's objective; with a variable-rate
    model each batch element draws a quality index and its lambda from
    ``LAMBDAS``. The aux (quantile) loss gets its own optimizer, as CompressAI does.
    """
    gen = torch.Generator().manual_seed(seed)
    net_params = [
        p for n, p in model.named_parameters() if not n.endswith(".quantiles")
    ]
    aux_params = [p for n, p in model.named_parameters() if n.endswith(".quantiles")]
    opt = torch.optim.Adam(net_params, lr=lr)
    aux_opt = torch.optim.Adam(aux_params, lr=1e-2) if aux_params else None
    Q = model.num_qualities
    model.train()
    for _ in range(steps):
        x = random_crops(data, batch, crop, gen)
        if Q > 1:
            q = torch.randint(0, Q, (batch,), generator=gen)
            lam = torch.tensor(LAMBDAS)[torch.linspace(0, len(LAMBDAS) - 1, Q).long()][
                q
            ]
        else:
            q = None
            lam = torch.full((batch,), LAMBDAS[2] if lmbda is None else lmbda)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            out = model(x, quality=q)
        bpp = model.rate_bits(out["likelihoods"]) / (crop * crop)
        mse = F.mse_loss(out["x_hat"].float(), x, reduction="none").flatten(1).mean(1)
        loss = (lam * 255**2 * mse + bpp).mean()
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net_params, 1.0)
        opt.step()
        if aux_opt is not None:
            aux_opt.zero_grad()
            model.aux_loss().backward()
            aux_opt.step()
    model.eval()
    model.update(force=True)


def real_rate_distortion(model, x: torch.Tensor) -> tuple[float, float]:
    """(bits per pixel of the real payloads, MSE of the decoded images) of ``x``."""
    model.eval()
    model.update(force=True)
    with torch.no_grad():
        enc = model.compress(x)
        dec = model.decompress(enc["strings"], enc["shape"])["x_hat"]
    nbytes = sum(len(pack_compressed(enc, i)) for i in range(x.shape[0]))
    return nbytes * 8 / x[:, 0].numel(), F.mse_loss(dec, x).item()


def make_image_checkpoint(path, name: str, num_qualities: int, in_channels: int = 3,
                          seed: int = 0):  # fmt: skip
    """An untrained image checkpoint of ``name`` at its tiny sizes; returns ``path``."""
    from dvc_ext.checkpoint import save_checkpoint

    cfg = {"name": name, **codec_class(name).tiny_config}
    cfg.update(in_channels=in_channels, num_qualities=num_qualities)
    torch.manual_seed(seed)
    codec = build_codec(**cfg)
    return save_checkpoint(path, "image", cfg, codec.state_dict(), {})
