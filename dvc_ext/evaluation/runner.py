"""Run codecs over clips: encode -> file -> decode -> compare, per rate point.

Every contender writes a real file per (clip, rate point) and is measured on
what its decoder reads back from that file: bpp is ``8 * file size / (frames *
W * H)`` with ``W x H`` the coded (protocol) size, never an estimate. All of them
go through :func:`frame_metrics`, so our codecs and the anchors are measured by
the same code.

Contenders:

* :class:`VideoModelContender`: a dvc-ext video checkpoint (or the default
  model), through :func:`dvc_ext.tasks.codec.compress_file` to a ``.dvc`` file,
  decoded by a separately built decoder (no flow network) from that file. On an
  image it codes one I-frame: the model's intra codec.
* :class:`ImageCodecContender`: a dvc-ext image checkpoint, one I-frame per
  image in a ``.dvc`` file.
* :class:`AnchorContender`: x264 / x265 through PyAV (:mod:`.anchors`).
* :class:`SSFContender`: CompressAI's ``ssf2020`` (Agustsson et al., "Scale-Space
  Flow for End-to-End Optimized Video Compression", CVPR 2020) from trained
  state dicts, one per rate point, stored in a ``.dvc`` container.
"""

from __future__ import annotations

import math
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from dvc_common import InputError, fixed_threads, pad_to_multiple, unpad

from .. import bitstream as bs
from .. import color
from .anchors import AnchorSpec, decode_anchor, encode_anchor
from .metrics import ms_ssim, psnr, psnr_yuv420
from .protocols import Clip, Protocol, SourceFrame, to_8bit

YUV_METRICS = ("psnr_y", "psnr_u", "psnr_v", "psnr_yuv")
ALL_METRICS = ("psnr_rgb", "ms_ssim_rgb", *YUV_METRICS)
#: What "bpp" means in every result.
RATE_DEFINITION = (
    "bpp = 8 * (bytes of the coded file) / (frames * coded width * coded height); "
    "dvc-ext: the whole .dvc file (headers and CRCs included); x264/x265: the raw "
    "elementary stream (.264/.265, Annex B with parameter sets, no container), "
    "equal to the sum of the encoder's packet bytes"
)


# -- metrics ------------------------------------------------------------------------------


def frame_metrics(
    src: SourceFrame,
    protocol: Protocol,
    *,
    rgb: torch.Tensor | None = None,
    planes: tuple | None = None,
    metrics: Sequence[str] = ALL_METRICS,
) -> dict[str, float]:
    """Quality of one decoded frame against its source.

    A decoder gives either RGB (ours: float, rounded here to 8 bits) or 8-bit
    4:2:0 planes (the anchors); the other representation is derived with the
    protocol's conversion, so every codec is measured in both spaces the same
    way. YUV metrics need a Y'CbCr source (not available for images).

    Args:
        src: the source frame.
        protocol: gives the colour conversion.
        rgb: ``3 x H x W`` decoded RGB in [0, 1].
        planes: decoded ``(Y, U, V)`` uint8 planes.
        metrics: names to compute (see :data:`ALL_METRICS`).
    """
    p = protocol
    if rgb is None and planes is None:
        raise ValueError("frame_metrics needs rgb or planes")
    if rgb is None:
        rgb = color.yuv420_to_rgb(
            *(color.from_u8(q)[None] for q in planes),
            p.matrix, p.full_range, p.chroma_upsampling,
        )  # fmt: skip
    rgb = to_8bit(rgb.detach().cpu())
    out: dict[str, float] = {}
    if "psnr_rgb" in metrics:
        out["psnr_rgb"] = psnr(rgb, src.rgb)
    if "ms_ssim_rgb" in metrics:
        out["ms_ssim_rgb"] = ms_ssim(rgb, src.rgb)
    if src.planes is not None and any(m in metrics for m in YUV_METRICS):
        if planes is None:
            y, u, v = color.rgb_to_yuv420(rgb, p.matrix, p.full_range)
            planes = (color.to_u8(y[0]), color.to_u8(u[0]), color.to_u8(v[0]))
        ref = tuple(color.from_u8(q)[None] for q in src.planes)
        dec = tuple(color.from_u8(q)[None] for q in planes)
        out.update({k: v for k, v in psnr_yuv420(ref, dec).items() if k in metrics})
    return out


def _summarise(
    contender: str,
    clip: Clip,
    point: str,
    param: Any,
    file_bytes: int,
    per_frame: list[dict[str, Any]],
    encode_seconds: float,
    decode_seconds: float,
    path: Path,
) -> dict[str, Any]:
    n = len(per_frame)
    if n != clip.num_frames:
        raise InputError(
            f"{contender} on {clip.name} ({point}): {n} frames decoded, "
            f"{clip.num_frames} coded"
        )
    names = [k for k in per_frame[0] if k not in ("index", "type", "bytes", "decode_s")]
    means = {k: sum(f[k] for f in per_frame) / n for k in names}
    # The I-frames' bytes (frame records; the file's header is in no frame).
    i_bytes = sum(int(f["bytes"]) for f in per_frame if f["type"] == "I")
    return {
        "codec": contender,
        "sequence": clip.name,
        "class": clip.cls,
        "point": point,
        "param": param,
        "frames": n,
        "width": clip.width,
        "height": clip.height,
        "bytes": int(file_bytes),
        "bpp": 8.0 * file_bytes / (n * clip.width * clip.height),
        "i_frame_bytes": i_bytes,
        "i_frame_share": i_bytes / max(int(file_bytes), 1),
        "metrics": means,
        "encode_s_per_frame": encode_seconds / n,
        "decode_s_per_frame": decode_seconds / n,
        "file": path.name,
        "per_frame": per_frame,
    }


# -- contenders -------------------------------------------------------------------------


class Contender:
    """Something evaluated at a list of rate points (see the module docstring)."""

    label: str
    kind: str

    def points(self) -> list[tuple[str, Any]]:
        raise NotImplementedError

    def supports(self, clip: Clip) -> str | None:
        """``None`` if the contender can code ``clip``, else why not."""
        return None

    def run(
        self, clip: Clip, point: tuple[str, Any], workdir: Path, metrics: Sequence[str]
    ) -> dict[str, Any]:
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        return {"label": self.label, "kind": self.kind}


class VideoModelContender(Contender):
    """A dvc-ext video model (a checkpoint path, or ``"default"``).

    Args:
        label: name in the results.
        checkpoint: path or ``"default"``.
        qualities: quality indices to evaluate; ``None``: all of the model's.
        device: ``"cpu"`` or ``"cuda"``.
        threads: torch threads while coding (recorded in the file).
        flow: replace the encoder-side flow (``{"name": "dis"}``).
        intra: code I-frames with a classical codec (``{"name": "x265-intra"}``).
        refine_steps: the encoder refines each I-frame's and residual's latents
            (``compress_file``'s setting; 0: none).
    """

    kind = "dvc-ext"

    def __init__(
        self,
        label: str,
        checkpoint: str | Path = "default",
        qualities: Sequence[int] | None = None,
        device: str = "cpu",
        threads: int = 1,
        flow: Mapping[str, Any] | None = None,
        intra: Mapping[str, Any] | None = None,
        refine_steps: int = 0,
    ) -> None:
        from ..tasks.codec import load_video_model

        self.label = label
        self.refine_steps = int(refine_steps)
        self.enc = load_video_model(checkpoint, device=device, flow=flow, intra=intra)
        # The decoder is the plain model: it takes a classical intra codec from
        # each file's header, as `dvc-ext decompress` does.
        self.dec = load_video_model(checkpoint, for_decoding=True, device=device)
        nq = self.enc.model.num_qualities
        self.qualities = list(range(nq)) if qualities is None else list(qualities)
        bad = [q for q in self.qualities if not 0 <= int(q) < nq]
        if bad:
            raise InputError(
                f"{label}: quality index {bad} out of range 0..{nq - 1} "
                f"({self.enc.source})"
            )
        self.threads = int(threads)

    @property
    def trained(self) -> bool:
        return self.enc.trained

    def points(self) -> list[tuple[str, Any]]:
        return [(f"q{q}", int(q)) for q in self.qualities]

    def describe(self) -> dict[str, Any]:
        m = self.enc.model
        return {
            "label": self.label,
            "kind": self.kind,
            "source": self.enc.source,
            "trained": self.enc.trained,
            "intra_codec": m.intra.registry_name,
            "motion_codec": m.pframe.motion_codec.registry_name,
            "residual_codec": m.pframe.residual_codec.registry_name,
            "num_qualities": m.num_qualities,
            "refine_steps": self.refine_steps,
            "meta": self.enc.meta,
        }

    def run(self, clip, point, workdir, metrics):
        from ..tasks.codec import compress_file

        name, q = point
        src, opts = clip.codec_input(workdir)
        out = workdir / f"{_safe(self.label)}_{_safe(clip.name)}_{name}.dvc"
        summary = compress_file(
            src, out, self.enc, quality=q, intra_period=clip.gop,
            frames=clip.num_frames, threads=self.threads, reader_opts=opts,
            refine_steps=self.refine_steps,
        )  # fmt: skip
        enc_s = summary["frames"] / summary["encode_fps"]
        per_frame, dec_s = [], 0.0
        decoded = decode_dvc(out, self.dec.model, self.dec.source)
        for (x, secs, nbytes, ftype), sf in zip(decoded, clip.frames()):
            m = frame_metrics(sf, clip.protocol, rgb=x, metrics=metrics)
            per_frame.append(_frame_row(sf.index, ftype, nbytes, secs, m))
            dec_s += secs
        return _summarise(
            self.label, clip, name, q, out.stat().st_size, per_frame, enc_s, dec_s, out
        )


def decode_dvc(
    path: Path, model: torch.nn.Module, source: str = "the model"
) -> Iterator[tuple[torch.Tensor, float, int, str]]:
    """Decode a ``.dvc`` file frame by frame, as ``dvc-ext decompress`` does.

    Yields ``(rgb 3xHxW on the CPU, decode seconds, record bytes, "I"/"P")``.

    Raises:
        ModelMismatchError: the file was written by another model.
    """
    from ..video_codec import CodedFrame

    reader = bs.BitstreamReader(path)
    h = reader.header
    model.adopt_intra(h.intra_codec)
    bs.check_fingerprint(h, model.fingerprint(), source)
    info: list[tuple[int, str]] = []

    def records() -> Iterator[CodedFrame]:
        last = reader.header_bytes
        for rec in reader:
            info.append((reader.counts.total - last, bs.FRAME_TYPES[rec.frame_type]))
            last = reader.counts.total
            yield CodedFrame(rec.frame_type, rec.quality, rec.substreams)

    with fixed_threads(h.coding_threads):
        frames = model.decode(records(), h.height, h.width)
        k = 0
        while True:
            t0 = time.perf_counter()
            x = next(frames, None)
            if x is None:
                return
            x = x.cpu()  # waits for a GPU, so the time is the decoder's
            secs = time.perf_counter() - t0
            yield x, secs, info[k][0], info[k][1]
            k += 1


class ImageCodecContender(Contender):
    """A dvc-ext image checkpoint: each image is one I-frame in a ``.dvc`` file."""

    kind = "image"

    def __init__(
        self,
        label: str,
        checkpoint: str | Path,
        qualities: Sequence[int] | None = None,
        device: str = "cpu",
        threads: int = 1,
    ) -> None:
        from image_codecs import build_codec

        from ..checkpoint import is_derived, load_checkpoint

        blob = load_checkpoint(checkpoint, "image")
        config = dict(blob["config"])
        try:
            codec = build_codec(**config)
        except (TypeError, KeyError, ValueError) as e:
            raise InputError(
                f"{checkpoint}: the codec config does not build: {e}"
            ) from None
        # Entropy-coder tables are not stored (update() rebuilds them), so the
        # plain nn.Module loader is used: CompressAI's wants them present.
        state = {k: v for k, v in blob["state_dict"].items() if not is_derived(k)}
        try:
            missing, unexpected = torch.nn.Module.load_state_dict(
                codec, state, strict=False
            )
        except RuntimeError as e:
            raise InputError(f"{checkpoint}: weights do not fit: {e}") from None
        missing = [k for k in missing if not is_derived(k)]
        if missing or unexpected:
            raise InputError(
                f"{checkpoint}: weights do not fit the codec (missing {missing[:3]}, "
                f"unexpected {unexpected[:3]})"
            )
        with fixed_threads(1):
            codec.update(force=True)
        self.codec = codec.eval().to(device)
        self.config, self.label, self.source = config, label, str(checkpoint)
        self.threads, self.device = int(threads), device
        nq = codec.num_qualities
        self.qualities = list(range(nq)) if qualities is None else list(qualities)
        self.fingerprint = bs.fingerprint(self.codec, self.config)

    def points(self):
        return [(f"q{q}", int(q)) for q in self.qualities]

    def describe(self):
        return {"label": self.label, "kind": self.kind, "source": self.source,
                "trained": True, "intra_codec": self.codec.registry_name}  # fmt: skip

    def run(self, clip, point, workdir, metrics):
        from image_codecs.payload import pack_compressed, unpack_compressed

        name, q = point
        quality = q if self.codec.num_qualities > 1 else None
        out = workdir / f"{_safe(self.label)}_{_safe(clip.name)}_{name}.dvc"
        per_frame, enc_s, dec_s = [], 0.0, 0.0
        header = bs.Header(
            width=clip.width, height=clip.height, intra_period=1, quality=q,
            color_format="rgb", coding_threads=self.threads,
            intra_codec=self.codec.registry_name, fingerprint=self.fingerprint,
        )  # fmt: skip
        sources = list(clip.frames())
        with fixed_threads(self.threads), torch.no_grad():
            t0 = time.perf_counter()
            with bs.BitstreamWriter(out) as w:
                w.write_header(header)
                for sf in sources:
                    x, _ = pad_to_multiple(
                        sf.rgb[None].to(self.device), self.codec.downsampling_factor
                    )
                    comp = self.codec.compress(x, quality=quality)
                    w.write_frame(bs.FRAME_I, q, [pack_compressed(comp)])
            enc_s = time.perf_counter() - t0
            reader = bs.BitstreamReader(out)
            bs.check_fingerprint(reader.header, self.fingerprint, self.source)
            last = reader.header_bytes
            for rec, sf in zip(reader, sources):
                t0 = time.perf_counter()
                strings, shape = unpack_compressed(rec.substreams[0])
                x_hat = self.codec.decompress(strings, shape, quality=quality)["x_hat"]
                _, pads = pad_to_multiple(sf.rgb[None], self.codec.downsampling_factor)
                x_hat = unpad(x_hat, pads)[0].clamp(0, 1).cpu()
                secs = time.perf_counter() - t0
                dec_s += secs
                nbytes, last = reader.counts.total - last, reader.counts.total
                m = frame_metrics(sf, clip.protocol, rgb=x_hat, metrics=metrics)
                per_frame.append(_frame_row(sf.index, "I", nbytes, secs, m))
        return _summarise(
            self.label, clip, name, q, out.stat().st_size, per_frame, enc_s, dec_s, out
        )


class AnchorContender(Contender):
    """x264 / x265 at each CRF of an :class:`AnchorSpec`."""

    kind = "anchor"

    def __init__(self, spec: AnchorSpec) -> None:
        self.spec, self.label = spec, spec.name

    def points(self):
        return [(f"crf{c}", int(c)) for c in self.spec.crf]

    def supports(self, clip):
        if not clip.yuv_source:
            return "the video anchors code 4:2:0 sources only"
        return None

    def describe(self):
        return {
            "label": self.label,
            "kind": self.kind,
            **self.spec.as_dict(),
            "command": self.spec.command(self.spec.crf[0], 10)
            .replace(f"-crf {self.spec.crf[0]}", "-crf CRF")
            .replace("keyint=10", "keyint=GOP"),
        }

    def run(self, clip, point, workdir, metrics):
        from .anchors import ELEMENTARY

        name, crf = point
        suffix = ELEMENTARY[self.spec.codec][1]
        out = workdir / f"{_safe(self.label)}_{_safe(clip.name)}_{name}{suffix}"
        stream = encode_anchor(
            (sf.planes for sf in clip.frames()), self.spec, crf, clip.gop, out, clip.fps
        )
        key = set(stream.keyframes)
        per_frame, dec_s = [], 0.0
        for (planes, secs), sf in zip(
            decode_anchor(out, self.spec.codec), clip.frames()
        ):
            m = frame_metrics(sf, clip.protocol, planes=planes, metrics=metrics)
            ftype = "I" if sf.index in key else "P/B"
            nbytes = stream.frame_bytes[sf.index]
            per_frame.append(_frame_row(sf.index, ftype, nbytes, secs, m))
            dec_s += secs
        return _summarise(
            self.label, clip, name, crf, stream.bytes, per_frame,
            stream.encode_seconds, dec_s, out,
        )  # fmt: skip


class SSFContender(Contender):
    """CompressAI's ``ssf2020`` from trained state dicts (one per rate point).

    The state dicts are CompressAI's (as its model zoo distributes them);
    frames are padded to a multiple of 128 by edge replication and decoded
    frames cropped back.
    """

    kind = "ssf2020"
    MULTIPLE = 128  # 16 (analysis) x 8 (hyperprior)

    def __init__(
        self, label: str, checkpoints: Sequence[str | Path], device: str = "cpu"
    ) -> None:
        if not checkpoints:
            raise InputError(f"{label}: no ssf2020 checkpoint given")
        self.label = label
        self.paths = [Path(p).expanduser() for p in checkpoints]
        for p in self.paths:
            if not p.is_file():
                raise InputError(f"{label}: checkpoint not found: {p}")
        self.device = device
        self._cache: tuple[int, Any, bytes] | None = None

    def points(self):
        return [(f"m{i}", i) for i in range(len(self.paths))]

    def supports(self, clip):
        return None if clip.num_frames >= 1 else "no frames"

    def describe(self):
        return {"label": self.label, "kind": self.kind, "trained": True,
                "source": [str(p) for p in self.paths]}  # fmt: skip

    def _model(self, i: int) -> tuple[Any, bytes]:
        if self._cache is not None and self._cache[0] == i:
            return self._cache[1], self._cache[2]
        from compressai.models.video import ScaleSpaceFlow
        from compressai.zoo.pretrained import load_pretrained

        try:
            state = torch.load(self.paths[i], map_location="cpu", weights_only=True)
        except Exception as e:  # not a tensor file
            raise InputError(
                f"{self.paths[i]} is not a readable state dict ({e})"
            ) from None
        if isinstance(state, dict) and "state_dict" in state:
            state = state["state_dict"]
        try:
            model = ScaleSpaceFlow.from_state_dict(load_pretrained(state))
        except (RuntimeError, KeyError) as e:
            raise InputError(
                f"{self.paths[i]}: not an ssf2020 state dict ({e})"
            ) from None
        with fixed_threads(1):
            model.update(force=True)
        model = model.eval().to(self.device)
        fp = bs.fingerprint(model, {"architecture": "ssf2020"})
        self._cache = (i, model, fp)
        return model, fp

    def run(self, clip, point, workdir, metrics):
        from image_codecs.payload import pack_compressed, unpack_compressed

        name, i = point
        model, fp = self._model(i)
        out = workdir / f"{_safe(self.label)}_{_safe(clip.name)}_{name}.dvc"
        header = bs.Header(
            width=clip.width, height=clip.height, intra_period=max(clip.gop, 0),
            quality=i, color_format="rgb", intra_codec="ssf2020",
            motion_codec="ssf2020", residual_codec="ssf2020", fingerprint=fp,
        )  # fmt: skip

        def part(out_: dict, key: str) -> bytes:
            return pack_compressed(
                {"strings": out_["strings"][key], "shape": out_["shape"][key]}
            )

        t0 = time.perf_counter()
        with torch.no_grad(), bs.BitstreamWriter(out) as w:
            w.write_header(header)
            ref = None
            for k, sf in enumerate(clip.frames()):
                x, _ = pad_to_multiple(sf.rgb[None].to(self.device), self.MULTIPLE)
                if ref is None or (clip.gop > 0 and k % clip.gop == 0):
                    ref, o = model.encode_keyframe(x)
                    w.write_frame(bs.FRAME_I, i, [pack_compressed(o)])
                else:
                    ref, o = model.encode_inter(x, ref)
                    subs = [part(o, "motion"), part(o, "residual")]
                    w.write_frame(bs.FRAME_P, i, subs)
        enc_s = time.perf_counter() - t0
        reader = bs.BitstreamReader(out)
        bs.check_fingerprint(reader.header, fp, "the ssf2020 checkpoint")
        per_frame, dec_s, ref, last = [], 0.0, None, reader.header_bytes
        probe = torch.zeros(1, 1, clip.height, clip.width)
        _, pads = pad_to_multiple(probe, self.MULTIPLE)
        with torch.no_grad():
            for rec, sf in zip(reader, clip.frames()):
                t0 = time.perf_counter()
                subs = [unpack_compressed(s) for s in rec.substreams]
                if rec.frame_type == bs.FRAME_I:
                    strings, shape = subs[0]
                    ref = model.decode_keyframe(strings, tuple(shape))
                else:
                    (ms, msh), (rs, rsh) = subs
                    ref = model.decode_inter(
                        ref, {"motion": ms, "residual": rs},
                        {"motion": tuple(msh), "residual": tuple(rsh)},
                    )  # fmt: skip
                x = unpad(ref, pads)[0].clamp(0, 1).cpu()
                secs = time.perf_counter() - t0
                dec_s += secs
                nbytes, last = reader.counts.total - last, reader.counts.total
                m = frame_metrics(sf, clip.protocol, rgb=x, metrics=metrics)
                ftype = bs.FRAME_TYPES[rec.frame_type]
                per_frame.append(_frame_row(sf.index, ftype, nbytes, secs, m))
        return _summarise(
            self.label, clip, name, i, out.stat().st_size, per_frame, enc_s, dec_s, out
        )


def _frame_row(
    index: int, ftype: str, nbytes: int, secs: float, m: dict[str, float]
) -> dict[str, Any]:
    return {"index": index, "type": ftype, "bytes": int(nbytes), "decode_s": secs, **m}


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in str(name))


# -- the loop ------------------------------------------------------------------------------


def _progress(total: int, enabled: bool):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="point", file=sys.stderr, dynamic_ncols=True)


def run_evaluation(
    clips: Sequence[Clip],
    contenders: Sequence[Contender],
    metrics: Sequence[str],
    *,
    workdir: str | Path | None = None,
    keep_files: bool = False,
    progress: bool = False,
    on_point: Callable[[dict[str, Any]], None] | None = None,
    log: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """Every contender at every rate point on every clip.

    Args:
        clips: the prepared clips.
        contenders: the codecs and anchors.
        metrics: quality metrics to compute.
        workdir: where the coded files go; a temporary folder if ``None``.
        keep_files: keep the coded files in ``workdir`` (else each is deleted
            once measured; the cropped source copies always are).
        progress: a progress bar over (clip, contender, rate point).
        on_point: called with each finished result (e.g. to save partials).
        log: receives notes (skipped combinations).

    Returns:
        One result dict per (clip, contender, point) (see :func:`_summarise`),
        without skipped combinations.
    """
    log = log or (lambda s: print(s, file=sys.stderr))
    jobs = [
        (clip, c, pt)
        for clip in clips
        for c in contenders
        if c.supports(clip) is None
        for pt in c.points()
    ]
    for clip in clips:
        for c in contenders:
            why = c.supports(clip)
            if why is not None:
                log(f"skipped {c.label} on {clip.name}: {why}")
    bar = _progress(len(jobs), progress)
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(
        prefix="dvc-ext-eval-", dir=workdir
    ) as scratch, torch.no_grad():  # fmt: skip
        out_dir = Path(workdir) if (keep_files and workdir) else Path(scratch)
        current = None
        for clip, c, pt in jobs:
            if bar is not None:
                bar.set_description(f"{clip.name} {c.label} {pt[0]}")
            if current is not clip:
                _drop_sources(Path(scratch))
                current = clip
            # The cropped source copy (if any) lives in scratch, shared by all.
            r = c.run(clip, pt, Path(scratch), metrics)
            coded = Path(scratch) / r["file"]
            if keep_files and out_dir != Path(scratch):
                coded.replace(out_dir / r["file"])
            else:
                coded.unlink(missing_ok=True)
            results.append(r)
            if on_point is not None:
                on_point(r)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(
                    bpp=f"{r['bpp']:.3f}",
                    psnr=f"{r['metrics'].get('psnr_rgb', math.nan):.2f}",
                )
    if bar is not None:
        bar.close()
    return results


def _drop_sources(folder: Path) -> None:
    for p in folder.glob("*frames.yuv"):
        p.unlink(missing_ok=True)


def aggregate(results: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (class, codec, point): the mean bpp, metrics and times over the
    class's sequences (rows only where the codec has every sequence of the
    class at that point)."""
    results = list(results)
    seqs: dict[str, set[str]] = {}
    for r in results:
        seqs.setdefault(r["class"], set()).add(r["sequence"])
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for r in results:
        groups.setdefault((r["class"], r["codec"], r["point"]), []).append(r)
    out = []
    for (cls, codec, point), rs in groups.items():
        if {r["sequence"] for r in rs} != seqs[cls]:
            continue
        n = len(rs)
        keys = set.intersection(*(set(r["metrics"]) for r in rs))
        out.append(
            {
                "class": cls,
                "codec": codec,
                "point": point,
                "param": rs[0]["param"],
                "sequences": n,
                "bpp": sum(r["bpp"] for r in rs) / n,
                "metrics": {k: sum(r["metrics"][k] for r in rs) / n for k in keys},
                "encode_s_per_frame": sum(r["encode_s_per_frame"] for r in rs) / n,
                "decode_s_per_frame": sum(r["decode_s_per_frame"] for r in rs) / n,
            }
        )
    return out
