"""``dvc-ext compress`` / ``decompress``: video file <-> ``.dvc`` file."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import torch

from dvc_common import InputError, fixed_threads

from .. import bitstream as bs
from ..checkpoint import default_checkpoint, is_derived, load_checkpoint
from ..io import open_video, open_writer
from ..pframe import PRED_MODES, pred_mode_ids
from ..video_codec import CodedFrame, VideoCodec

#: Frames smaller than this cannot pass the codecs' four stride-2 stages sensibly.
MIN_SIDE = 8
#: What ``compress`` chooses between for each P-frame (``pred_modes=[mc]``:
#: DVC's alone). All three: on the held-out validation set they code for less
#: than ``mc`` alone does (docs/bitstream.md, "Prediction modes").
DEFAULT_PRED_MODES = ("mc", "warp", "ref")
_MODE_NAMES = {v: k for k, v in PRED_MODES.items()}


@dataclass
class LoadedModel:
    """A video model ready to code, and where it came from."""

    model: VideoCodec
    source: str
    trained: bool
    meta: dict[str, Any] = field(default_factory=dict)


def _plain(cfg: Any) -> Any:
    if cfg is None or isinstance(cfg, (str, int, float, bool)):
        return cfg
    from omegaconf import DictConfig, ListConfig, OmegaConf

    if isinstance(cfg, (DictConfig, ListConfig)):
        return OmegaConf.to_container(cfg, resolve=True)
    if isinstance(cfg, Mapping):
        return {k: _plain(v) for k, v in cfg.items()}
    return cfg


def default_architecture() -> dict[str, Any]:
    """The default video model's config, from ``configs/codec/default.yaml``."""
    from ..cli import compose

    cfg = compose("train", [])
    return _plain(cfg.codec)


def load_video_model(
    checkpoint: str | Path | None = "default",
    *,
    for_decoding: bool = False,
    device: str = "cpu",
    flow: Mapping[str, Any] | None = None,
    intra: Mapping[str, Any] | None = None,
) -> LoadedModel:
    """Build the video model of a checkpoint ("default": the shipped one).

    Without a shipped default, the default architecture is built with random
    weights and ``trained`` is False: callers must say so to the user.

    Args:
        for_decoding: build no flow network (a decoder never runs one).
        flow: replace the encoder-side flow (e.g. ``{"name": "dis"}``); the
            file fingerprint does not change, so files still decode.
        intra: code I-frames with a classical codec instead of the model's own
            (e.g. ``{"name": "x265-intra", "chroma": "444"}``); a decoder of
            the same model takes it from the file's header by itself.
    """
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"device={device} asked for, but CUDA is not available")
    path = (
        default_checkpoint("video")
        if checkpoint in (None, "default")
        else Path(checkpoint)
    )
    if path is None:
        config, state, meta, trained = default_architecture(), None, {}, False
        source = "default architecture, untrained (random weights)"
    else:
        blob = load_checkpoint(path, "video")
        config, state, meta, trained = (
            blob["config"],
            blob["state_dict"],
            blob["meta"],
            True,
        )
        source = str(path)
    config = dict(config)
    if flow is not None:
        config["pframe"] = {**config["pframe"], "flow": dict(flow)}
    torch.manual_seed(0)  # the untrained fallback is the same model every time
    try:
        model = VideoCodec(**config, for_decoding=for_decoding)
    except (TypeError, KeyError, ValueError) as e:
        raise InputError(f"{source}: the model config does not build: {e}") from None
    if state is not None:
        # Tables derived by update() are rebuilt below; the flow is not the
        # decoder's business, and a replaced flow keeps its own weights.
        drop_flow = for_decoding or flow is not None
        state = {
            k: v
            for k, v in state.items()
            if not is_derived(k) and not (drop_flow and k.startswith("pframe.flow."))
        }
        try:
            missing, unexpected = model.load_state_dict(state, strict=False)
        except RuntimeError as e:
            raise InputError(f"{source}: weights do not fit the model: {e}") from None
        missing = [
            k for k in missing if not is_derived(k) and not k.startswith("pframe.flow.")
        ]
        if missing or unexpected:
            raise InputError(
                f"{source}: weights do not fit the model (missing {missing[:3]}, "
                f"unexpected {unexpected[:3]})"
            )
    if intra is not None:
        intra = dict(_plain(intra))
        try:
            model.replace_intra(intra)
        except (TypeError, KeyError, ValueError) as e:
            raise InputError(f"intra={intra}: {e}") from None
    # Encoder and decoder build identical tables from identical weights.
    with fixed_threads(1):
        model.update(force=True)
    model.eval().to(device)
    return LoadedModel(model, source, trained, meta)


def _untrained_notice(loaded: LoadedModel) -> None:
    if not loaded.trained:
        print(
            "NOTE: no trained default model is installed; coding with an UNTRAINED "
            "model (random weights): the file is real, the quality is not.",
            file=sys.stderr,
        )


def _progress(it, total, enabled: bool, desc: str):
    if not enabled:
        return it
    from tqdm import tqdm

    return tqdm(it, total=total, desc=desc, unit="frame", file=sys.stderr)


def compress_file(
    input: str | Path,
    output: str | Path,
    loaded: LoadedModel,
    *,
    quality: int | None = None,
    intra_period: int = 10,
    frames: int | None = None,
    start: int = 0,
    threads: int = 1,
    reader_opts: Mapping[str, Any] | None = None,
    progress: bool = False,
    pred_modes: Sequence[str] = DEFAULT_PRED_MODES,
    refine_steps: int = 0,
) -> dict[str, Any]:
    """Compress a video file to a ``.dvc`` file; returns a summary dict.

    ``pred_modes``: the P-frames' prediction modes the encoder chooses from,
    frame by frame, by the rate point's training objective (``lambda * MSE +
    bpp``, lambda from the checkpoint's ``meta.lambdas``); ``["mc"]`` is DVC's
    alone and writes files a 1.0 decoder reads. A checkpoint without its
    lambdas codes with ``mc`` only.

    ``refine_steps``: refine the latents of every I-frame and P-frame residual
    for that frame (``VideoCodec.encode``), by the same objective; a file the
    same decoder reads, at a lower cost, for a slower encoder.

    The summary has ``frames``, ``width``, ``height``, ``bytes`` (the file
    size), ``bpp``, ``encode_fps``, the byte split ``counts``, ``pred_modes``
    (how many P-frames used each mode) and ``psnr`` of the encoder's
    reconstruction (equal to the decoder's output).
    """
    model = loaded.model
    reader = open_video(input, **dict(reader_opts or {}))
    info = reader.info
    if min(info.width, info.height) < MIN_SIDE:
        raise InputError(
            f"{input}: {info.width}x{info.height} is too small (at least "
            f"{MIN_SIDE}x{MIN_SIDE} pixels)"
        )
    q = model.num_qualities // 2 if quality is None else int(quality)
    if not 0 <= q < model.num_qualities:
        raise InputError(f"quality must be in 0..{model.num_qualities - 1}, got {q}")
    if frames is not None and frames < 1:
        raise InputError(f"frames must be >= 1, got {frames}")
    if start < 0:
        raise InputError(f"start must be >= 0, got {start}")
    if info.num_frames and start >= info.num_frames:
        raise InputError(f"start={start}, but {input} has {info.num_frames} frames")
    try:
        modes = [_MODE_NAMES[i] for i in pred_mode_ids(pred_modes)]
    except ValueError as e:
        raise InputError(f"pred_modes: {e}") from None
    lambdas = loaded.meta.get("lambdas") or []
    lam = float(lambdas[q]) if len(lambdas) == model.num_qualities else None
    if lam is None:
        modes = ["mc"]
    if int(refine_steps) < 0:
        raise InputError(f"refine_steps must be >= 0, got {refine_steps}")
    if refine_steps and lam is None:
        raise InputError(
            "refine_steps needs the rate points' lambdas, and this checkpoint "
            "records none (meta.lambdas)"
        )
    if refine_steps and loaded.meta.get("metric", "mse") != "mse":
        raise InputError(
            "refine_steps minimises lambda * MSE + bpp; this checkpoint was "
            f"trained for {loaded.meta.get('metric')!r}"
        )
    left = None if info.num_frames is None else info.num_frames - start
    total = left if frames is None else min(frames, left or frames)
    header = bs.Header(
        width=info.width,
        height=info.height,
        intra_period=max(0, int(intra_period)),
        fps=Fraction(info.fps) if info.fps else None,
        color_format="yuv420" if info.matrix is not None else "rgb",
        matrix=info.matrix or "bt601",
        full_range=bool(info.full_range),
        quality=q,
        coding_threads=int(threads),
        intra_codec=model.intra.registry_name,
        motion_codec=model.pframe.motion_codec.registry_name,
        residual_codec=model.pframe.residual_codec.registry_name,
        fingerprint=model.fingerprint(),
        flags=bs.FLAG_PRED_MODES if modes != ["mc"] else 0,
    )
    device = next(model.parameters()).device
    used = dict.fromkeys(PRED_MODES, 0)
    sq_err, n_px, count = 0.0, 0, 0
    t0 = time.perf_counter()

    def source() -> Iterator[torch.Tensor]:
        for frame in reader.frames(start, frames):
            yield frame.rgb

    with bs.BitstreamWriter(output) as writer, fixed_threads(int(threads)):
        writer.write_header(header)
        coded = model.encode(
            source(),
            q,
            intra_period,
            pred_modes=modes,
            lam=lam,
            refine_steps=int(refine_steps),
        )
        for cf, x_hat, x in _progress(coded, total, progress, "compress"):
            writer.write_frame(cf.frame_type, cf.quality, cf.substreams)
            if cf.frame_type == bs.FRAME_P:
                used["mc"] += 1
            elif cf.frame_type == bs.FRAME_PM:
                used[_MODE_NAMES[cf.substreams[0][0]]] += 1
            x = x.to(device)
            sq_err += float(((x_hat - x) ** 2).sum())
            n_px += x.numel()
            count += 1
        if count == 0:
            raise InputError(f"{input} has no frames")
    elapsed = time.perf_counter() - t0
    size = Path(output).stat().st_size
    counts = writer.counts.as_dict()
    mse = sq_err / max(n_px, 1)
    return {
        "input": str(input),
        "output": str(output),
        "model": loaded.source,
        "trained": loaded.trained,
        "frames": count,
        "width": info.width,
        "height": info.height,
        "quality": q,
        "intra_period": int(intra_period),
        "bytes": size,
        "bpp": size * 8 / (count * info.width * info.height),
        "psnr_rgb": float("inf")
        if mse == 0
        else 10 * torch.log10(torch.tensor(1 / mse)).item(),
        "encode_fps": count / elapsed,
        "counts": counts,
        "pred_modes": used,
        "refine_steps": int(refine_steps),
        "conversion": info.conversion,
    }


def decompress_file(
    input: str | Path,
    output: str | Path,
    loaded: LoadedModel,
    *,
    matrix: str | None = None,
    full_range: bool | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Decode a ``.dvc`` file to a video file; returns a summary dict.

    Raises:
        BitstreamError: a damaged or truncated file (nothing is left at
            ``output``).
        ModelMismatchError: the file was written by another model.
    """
    reader = bs.BitstreamReader(input)
    h = reader.header
    loaded.model.adopt_intra(h.intra_codec)
    bs.check_fingerprint(h, loaded.model.fingerprint(), f"the model {loaded.source}")
    writer = open_writer(
        output,
        fps=h.fps,
        matrix=matrix or h.matrix,
        full_range=h.full_range if full_range is None else full_range,
    )
    t0 = time.perf_counter()
    count = 0
    try:
        with fixed_threads(h.coding_threads):
            coded = (CodedFrame(r.frame_type, r.quality, r.substreams) for r in reader)
            frames = loaded.model.decode(coded, h.height, h.width)
            for x in _progress(frames, h.frame_count, progress, "decompress"):
                writer.write(x.cpu())
                count += 1
    except BaseException:
        writer.abort()
        raise
    writer.close()
    elapsed = time.perf_counter() - t0
    return {
        "input": str(input),
        "output": str(output),
        "frames": count,
        "width": h.width,
        "height": h.height,
        "decode_fps": count / elapsed,
        "counts": reader.counts.as_dict(),
    }


def _reader_opts(cfg: Any) -> dict[str, Any]:
    opts: dict[str, Any] = {}
    for key in ("width", "height", "fps"):
        if cfg.get(key) is not None:
            opts[key] = cfg[key]
    color = cfg.get("color") or {}
    if color.get("matrix") is not None:
        opts["matrix"] = color["matrix"]
    if color.get("full_range") is not None:
        opts["full_range"] = bool(color["full_range"])
    return opts


def _print_summary(s: dict[str, Any], verb: str) -> None:
    c = s["counts"]
    bits = {k: 8 * v for k, v in c.items()}
    print(f"{verb}: {s['input']} -> {s['output']}")
    print(f"  frames {s['frames']}  {s['width']}x{s['height']}  bytes {c['total']}")
    if "bpp" in s:
        print(
            f"  bpp {s['bpp']:.4f}  PSNR(RGB) {s['psnr_rgb']:.2f} dB  encode {s['encode_fps']:.2f} frames/s"
        )
    else:
        print(f"  decode {s['decode_fps']:.2f} frames/s")
    print(
        "  bits: header {header}  frame headers/CRC {frame_overhead}  intra {intra}  "
        "motion {motion}  residual {residual}".format(**bits)
    )
    if s.get("pred_modes"):
        print("  P-frame predictions: " + "  ".join(
            f"{k} {v}" for k, v in s["pred_modes"].items()))  # fmt: skip


def compress(cfg: Any) -> dict[str, Any]:
    """The ``compress`` verb (``cfg``: the composed ``configs/compress.yaml``)."""
    loaded = load_video_model(
        cfg.checkpoint,
        device=cfg.device,
        flow=_plain(cfg.get("flow")),
        intra=_plain(cfg.get("intra")),
    )
    _untrained_notice(loaded)
    summary = compress_file(
        cfg.input,
        cfg.output,
        loaded,
        quality=cfg.quality,
        intra_period=cfg.intra_period,
        frames=cfg.frames,
        start=int(cfg.get("start") or 0),
        threads=cfg.threads,
        pred_modes=list(cfg.get("pred_modes") or DEFAULT_PRED_MODES),
        refine_steps=int(cfg.get("refine_steps") or 0),
        reader_opts=_reader_opts(cfg),
        progress=bool(cfg.progress),
    )
    _print_summary(summary, "compress")
    return summary


def decompress(cfg: Any) -> dict[str, Any]:
    """The ``decompress`` verb (``cfg``: the composed ``configs/decompress.yaml``)."""
    loaded = load_video_model(cfg.checkpoint, for_decoding=True, device=cfg.device)
    _untrained_notice(loaded)
    color = cfg.get("color") or {}
    summary = decompress_file(
        cfg.input,
        cfg.output,
        loaded,
        matrix=color.get("matrix"),
        full_range=color.get("full_range"),
        progress=bool(cfg.progress),
    )
    _print_summary(summary, "decompress")
    return summary
