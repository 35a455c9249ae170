"""``dvc-ext eval``: our codecs and the x264 / x265 anchors on test sequences.

One command finds the sequences of a dataset (``configs/dataset/``), prepares
them by a protocol (``configs/protocol/``), codes each with every contender at
every rate point through real files, and writes ``results.json``, CSV tables,
RD plots and ``report.md`` (BD-rate against each reference) into
``output_dir``. See ``configs/eval.yaml`` for every setting.
"""

from __future__ import annotations

import glob
import re
import sys
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dvc_common import InputError

from ..evaluation.anchors import build_anchor
from ..evaluation.protocols import Clip, build_protocol
from ..evaluation.report import write_json, write_report
from ..evaluation.runner import (
    ALL_METRICS,
    RATE_DEFINITION,
    AnchorContender,
    Contender,
    ImageCodecContender,
    SSFContender,
    VideoModelContender,
    aggregate,
    run_evaluation,
)
from ..evaluation.sequences import find_images, find_sequences
from .codec import _plain

_GENERIC_STEMS = {"last", "best", "final", "checkpoint", "model"}
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}.*")


def checkpoint_label(path: str | Path) -> str:
    """A short label for a checkpoint: its run name, else its file name.

    ``runs/res_gaacnn/2025-01-01_10-00-00/checkpoints/last.pth`` -> ``res_gaacnn``;
    ``models/mine_q4.pth`` -> ``mine_q4``.
    """
    p = Path(path)
    stem = p.stem
    if p.parent.name == "checkpoints":
        run = p.parent.parent
        name = run.parent.name if _DATE.fullmatch(run.name) else run.name
        if name:
            return name if stem in _GENERIC_STEMS else f"{name}-{stem}"
    return stem


def _expand(patterns: Any) -> list[Path]:
    if patterns in (None, "", []):
        return []
    if patterns == "???":
        raise InputError("set checkpoints=[PATH, ...]: the checkpoints to compare")
    if isinstance(patterns, (str, Path)):
        patterns = [patterns]
    out: list[Path] = []
    for pat in patterns:
        pat = str(Path(str(pat)).expanduser())
        hits = sorted(glob.glob(pat)) if any(c in pat for c in "*?[") else [pat]
        if not hits:
            raise InputError(f"no checkpoint matches {pat}")
        out += [Path(h) for h in hits]
    return out


def _kind_of(checkpoint: str) -> str:
    if checkpoint in ("default", None):
        return "video"
    from ..checkpoint import load_checkpoint

    return str(load_checkpoint(checkpoint)["kind"])


def build_contenders(cfg: Mapping[str, Any], images: bool) -> list[Contender]:
    """Our models, the anchors and ssf2020 from the ``eval`` config."""
    device, threads = str(cfg.get("device", "cpu")), int(cfg.get("threads", 1))
    specs: dict[str, dict[str, Any]] = {}
    for label, entry in (cfg.get("codecs") or {}).items():
        if entry is None:
            continue
        entry = {"checkpoint": entry} if isinstance(entry, (str, Path)) else dict(entry)
        specs[str(label)] = entry
    for path in _expand(cfg.get("checkpoints")):
        label, k = checkpoint_label(path), 2
        while label in specs:
            label, k = f"{checkpoint_label(path)}-{k}", k + 1
        specs[label] = {"checkpoint": str(path)}
    out: list[Contender] = []
    for label, e in specs.items():
        ckpt = str(e.get("checkpoint", "default"))
        unknown = set(e) - {"checkpoint", "qualities", "flow", "intra", "refine_steps"}
        if unknown:
            raise InputError(f"codec {label}: unknown setting(s) {sorted(unknown)}")
        q = e.get("qualities")
        if _kind_of(ckpt) == "image":
            if e.get("intra") or e.get("refine_steps"):
                raise InputError(
                    f"codec {label}: intra= and refine_steps= are settings of a "
                    "video model's encoder"
                )
            out.append(ImageCodecContender(label, ckpt, q, device, threads))
        else:
            out.append(
                VideoModelContender(
                    label,
                    ckpt,
                    q,
                    device,
                    threads,
                    e.get("flow"),
                    e.get("intra"),
                    refine_steps=int(e.get("refine_steps") or 0),
                )  # fmt: skip
            )
    if not images:
        for name, a in (cfg.get("anchors") or {}).items():
            if a is not None:
                out.append(AnchorContender(build_anchor(str(name), a)))
        ssf = cfg.get("ssf2020") or []
        if ssf:
            out.append(SSFContender("ssf2020", _expand(ssf), device))
    if not out:
        raise InputError("nothing to evaluate: no codec, checkpoint or anchor is set")
    labels = [c.label for c in out]
    dup = sorted({x for x in labels if labels.count(x) > 1})
    if dup:
        raise InputError(f"two contenders share the label(s) {dup}; rename one")
    return out


def _progress_enabled(value: Any) -> bool:
    if value in ("auto", None):
        return sys.stderr.isatty()
    return bool(value)


def _clips(cfg: Mapping[str, Any], protocol) -> tuple[list[Clip], dict[str, Any]]:
    ds = cfg["dataset"]
    kind = ds.get("kind", "sequences")
    root = ds.get("root")
    if root in (None, "???"):
        raise InputError(f"set dataset.root: the folder of the {ds.get('name')} data")
    if kind == "images":
        label = ds.get("label") or ds.get("name")
        paths = find_images(root, ds.get("limit"))
        clips = [Clip(p, protocol, "image", None, p.stem, label) for p in paths]
        return clips, {"images": [str(p) for p in paths], "missing": []}
    if kind != "sequences":
        raise InputError(
            f"dataset {ds.get('name')} has kind {kind!r}; eval reads 'sequences' or "
            f"'images' datasets (uvg, hevc_b..e, kodak)"
        )
    classes = ds.get("classes")
    if not classes:
        raise InputError(f"dataset {ds.get('name')} lists no sequence classes")
    search = find_sequences(root, classes, ds.get("sequences"))
    print(search.summary(), file=sys.stderr)
    clips = [Clip.from_found(f, protocol, cfg.get("frames")) for f in search.found]
    info = {
        "missing": [f"{s.cls}/{s.name}" for s in search.missing],
        "skipped": [f"{p}: {why}" for p, why in search.skipped],
    }
    return clips, info


def _versions() -> dict[str, str]:
    import av
    import torch

    out = {"torch": torch.__version__, "av": av.__version__}
    try:
        out["libavcodec"] = ".".join(map(str, av.library_versions["libavcodec"]))
    except (KeyError, TypeError, AttributeError):
        pass
    try:
        from importlib.metadata import version

        out["dvc-ext"] = version("dvc-ext")
    except Exception:  # not installed as a distribution (a source checkout)
        pass
    return out


def evaluate(cfg: Any) -> dict[str, Any]:
    """The ``eval`` verb (``cfg``: the composed ``configs/eval.yaml``).

    Returns:
        ``{"results", "classes", "bd", "paths", "output_dir"}``.

    Raises:
        InputError: no data under ``dataset.root``, bad settings, unreadable
            checkpoints.
    """
    c = _plain(cfg)
    protocol = build_protocol(c["protocol"])
    metric = c.get("bd_metric") or protocol.bd_metric
    metrics = [m for m in protocol.metrics if c.get("ms_ssim", True) or "ssim" not in m]
    if metric not in ALL_METRICS:
        raise InputError(f"bd_metric {metric!r}: choose from {list(ALL_METRICS)}")
    if metric not in metrics:
        metrics.append(metric)
    method = c.get("bd_method", "pchip")
    clips, data_info = _clips(c, protocol)
    images = all(cl.family == "image" for cl in clips)
    if images:
        metrics = [m for m in metrics if m in ("psnr_rgb", "ms_ssim_rgb")]
        if metric not in metrics:
            metric = "psnr_rgb"
    contenders = build_contenders(c, images)
    for con in contenders:
        if con.describe().get("trained") is False:
            print(
                f"NOTE: {con.label} is an UNTRAINED model (random weights): its "
                f"numbers show the pipeline runs, not what the codec can do.",
                file=sys.stderr,
            )
    out_dir = Path(str(c.get("output_dir") or "results/eval")).expanduser()
    out_dir.mkdir(parents=True, exist_ok=True)
    references = [str(r) for r in (c.get("references") or [])]
    labels = [con.label for con in contenders]
    missing_refs = [r for r in references if r not in labels]
    if missing_refs:
        print(
            f"note: reference(s) {missing_refs} are not evaluated in this run "
            f"(contenders: {labels})",
            file=sys.stderr,
        )
    meta = {
        "dataset": c["dataset"].get("name"),
        "dataset_root": str(c["dataset"].get("root")),
        "protocol": protocol.as_dict(),
        "rate_definition": RATE_DEFINITION,
        "metrics": metrics,
        "metric_notes": (
            "PSNR per frame then averaged (peak 255 on 8-bit values); RGB frames "
            "rounded to 8 bits on both sides; YUV PSNR on 8-bit 4:2:0 planes, "
            "weighted (6Y+U+V)/8; a codec that outputs RGB is converted to 4:2:0 "
            "with the protocol's matrix for the YUV metrics, a codec that outputs "
            "4:2:0 (the anchors) to RGB with the same conversion as the source"
        ),
        "bd_method": method,
        "bd_metric": metric,
        "references": references,
        "codecs": [con.describe() for con in contenders],
        "clips": [cl.describe() for cl in clips],
        "frames_cap": c.get("frames"),
        "device": c.get("device"),
        "threads": c.get("threads"),
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "versions": _versions(),
        **data_info,
    }
    partial = out_dir / "results.partial.json"
    done: list[dict[str, Any]] = []

    def save_partial(r: dict[str, Any]) -> None:
        done.append(r)
        write_json(partial, {"meta": meta, "results": done})

    workdir = out_dir / "bitstreams" if c.get("keep_bitstreams") else out_dir
    workdir.mkdir(exist_ok=True)
    t0 = time.perf_counter()
    results = run_evaluation(
        clips,
        contenders,
        metrics,
        workdir=workdir,
        keep_files=bool(c.get("keep_bitstreams")),
        progress=_progress_enabled(c.get("progress", "auto")),
        on_point=save_partial,
    )
    meta["elapsed_s"] = time.perf_counter() - t0
    classes = aggregate(results)
    plot_metrics = list(dict.fromkeys([metric, "psnr_rgb"]))
    plot_metrics = [m for m in plot_metrics if m in metrics]
    rep = write_report(
        out_dir, meta, results, classes, references, metric, method,
        bool(c.get("plots", True)), plot_metrics,
    )  # fmt: skip
    partial.unlink(missing_ok=True)
    _print_outcome(rep, results, out_dir, metric)
    return {
        "results": results,
        "classes": classes,
        "bd": rep["bd"],
        "paths": rep["paths"],
        "output_dir": out_dir,
    }


def _print_outcome(rep: dict[str, Any], results, out_dir: Path, metric: str) -> None:
    p = rep["paths"]
    print(f"eval: {len(results)} rate points in {out_dir}")
    print(f"  JSON      {p['json']}")
    print(f"  CSV       {p['csv']} (per frame: {p['frames_csv'].name})")
    print(f"  BD-rate   {p['markdown']} (all metrics: {p['bd_csv'].name})")
    if p.get("plots"):
        print(f"  plots     {len(p['plots'])} PNG in {p['plots'][0].parent}")
    shown = [
        b
        for b in rep["bd"]
        if b["metric"] == metric and b["scope"] in ("sequence", "class-mean")
    ]
    for b in shown:
        where = b["sequence"] or f"{b['class']} (mean)"
        v = b["bd_rate"]
        txt = "n/a" if v is None or v != v else f"{v:+.2f}%"
        print(f"  BD-rate {b['codec']} vs {b['reference']} on {where}: {txt}")
