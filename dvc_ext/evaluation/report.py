"""Evaluation outputs: JSON, CSV, RD plots (PNG) and a Markdown BD-rate table.

Every file is written to a temporary name beside its target and renamed, so an
interrupted run leaves no half-written result.
"""

from __future__ import annotations

import csv
import io
import json
import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from dvc_common import atomic_write_bytes

from .bdrate import BDOverlapWarning, bd


def _clean(o: Any) -> Any:
    """JSON-safe copy: NaN / inf become ``None`` (JSON has no NaN)."""
    if isinstance(o, float):
        return o if math.isfinite(o) else None
    if isinstance(o, Mapping):
        return {str(k): _clean(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_clean(v) for v in o]
    if isinstance(o, Path):
        return str(o)
    return o


def write_json(path: str | Path, payload: Any) -> Path:
    text = json.dumps(_clean(payload), indent=1, allow_nan=False, default=str)
    return atomic_write_bytes(Path(path), (text + "\n").encode())


def write_csv(path: str | Path, rows: Sequence[Mapping[str, Any]]) -> Path:
    cols: list[str] = []
    for r in rows:
        cols += [k for k in r if k not in cols]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if v is None else v) for k, v in r.items()})
    return atomic_write_bytes(Path(path), buf.getvalue().encode())


def point_rows(results: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One flat row per (sequence, codec, rate point)."""
    rows = []
    for r in results:
        row = {k: r[k] for k in ("sequence", "class", "codec", "point", "param",
                                 "frames", "width", "height", "bytes", "bpp")}  # fmt: skip
        row["i_frame_share"] = r.get("i_frame_share")
        row.update(r["metrics"])
        row["encode_s_per_frame"] = r["encode_s_per_frame"]
        row["decode_s_per_frame"] = r["decode_s_per_frame"]
        rows.append(row)
    return rows


def frame_rows(results: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One flat row per decoded frame."""
    rows = []
    for r in results:
        for f in r["per_frame"]:
            rows.append(
                {"sequence": r["sequence"], "codec": r["codec"], "point": r["point"],
                 "frame": f["index"], "type": f["type"], "bytes": f["bytes"],
                 "bpp": 8 * f["bytes"] / (r["width"] * r["height"]),
                 **{k: v for k, v in f.items()
                    if k not in ("index", "type", "bytes")}}
            )  # fmt: skip
    return rows


# -- curves and BD ---------------------------------------------------------------------


def curves(
    rows: Iterable[Mapping[str, Any]], key: str, metric: str
) -> dict[tuple[str, str], tuple[list[float], list[float]]]:
    """``{(group, codec): (bpp, quality)}`` sorted by rate; ``key`` is
    ``"sequence"`` or ``"class"``."""
    out: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for r in rows:
        if metric in r["metrics"]:
            out.setdefault((r[key], r["codec"]), []).append(
                (r["bpp"], r["metrics"][metric])
            )
    return {
        k: ([p[0] for p in sorted(v)], [p[1] for p in sorted(v)])
        for k, v in out.items()
    }


def bd_rows(
    results: Sequence[Mapping[str, Any]],
    classes: Sequence[Mapping[str, Any]],
    references: Sequence[str],
    metric: str,
    method: str = "pchip",
) -> list[dict[str, Any]]:
    """BD-rate / BD-quality of every codec against every reference.

    Per sequence, and per class twice: the mean of the sequences' BD-rates
    (the common-test-condition convention, ``scope="class-mean"``) and the BD
    of the class-average curves (``scope="class-curve"``, what RD plots of
    averaged curves show). Warnings about overlap are kept in ``note``.
    """
    out: list[dict[str, Any]] = []
    per_seq = curves(results, "sequence", metric)
    cls_of = {r["sequence"]: r["class"] for r in results}
    codecs = list(dict.fromkeys(r["codec"] for r in results))
    for ref in references:
        for codec in codecs:
            if codec == ref:
                continue
            seq_vals: dict[str, list[float]] = {}
            for (seq, c), (rate, q) in per_seq.items():
                if c != codec or (seq, ref) not in per_seq:
                    continue
                row = _bd_row(per_seq[(seq, ref)], (rate, q), method, metric)
                row.update(reference=ref, codec=codec, scope="sequence",
                           sequence=seq, **{"class": cls_of[seq]})  # fmt: skip
                out.append(row)
                seq_vals.setdefault(cls_of[seq], []).append(row["bd_rate"])
            for cls, vals in seq_vals.items():
                finite = [v for v in vals if v is not None and math.isfinite(v)]
                out.append({
                    "reference": ref, "codec": codec, "scope": "class-mean",
                    "sequence": None, "class": cls, "metric": metric,
                    "method": method, "sequences": len(vals),
                    "bd_rate": sum(finite) / len(finite) if finite else math.nan,
                    "note": "" if len(finite) == len(vals) else
                    f"{len(vals) - len(finite)} sequence(s) without overlap left out",
                })  # fmt: skip
            cls_curves = curves(classes, "class", metric)
            for (cls, c), rq in cls_curves.items():
                if c != codec or (cls, ref) not in cls_curves:
                    continue
                row = _bd_row(cls_curves[(cls, ref)], rq, method, metric)
                row.update(reference=ref, codec=codec, scope="class-curve",
                           sequence=None, **{"class": cls})  # fmt: skip
                out.append(row)
    return out


def _bd_row(anchor, test, method: str, metric: str) -> dict[str, Any]:
    ra, qa = anchor
    rt, qt = test
    need = 4 if method == "cubic" else 2
    if min(len(ra), len(rt)) < need:
        return {"metric": metric, "method": method, "bd_rate": math.nan,
                "bd_quality": math.nan,
                "note": f"fewer than {need} rate points"}  # fmt: skip
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", BDOverlapWarning)
        try:
            res = bd(ra, qa, rt, qt, method, label="")
        except Exception as e:  # e.g. two points of equal quality
            return {"metric": metric, "method": method, "bd_rate": math.nan,
                    "bd_quality": math.nan, "note": str(e)}  # fmt: skip
    notes = sorted({str(w.message).lstrip(": ").split(";")[0] for w in caught})
    return {
        "metric": metric,
        "method": method,
        "bd_rate": res.rate,
        "bd_quality": res.psnr,
        "rate_overlap": res.rate_overlap,
        "quality_overlap": res.psnr_overlap,
        "note": "; ".join(notes),
    }


# -- plots --------------------------------------------------------------------------------


def plot_rd(
    path: str | Path,
    data: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    title: str,
    ylabel: str,
) -> Path:
    """One RD plot (bpp vs quality), one line per codec, as a PNG."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.8), dpi=110)
    try:
        for codec, (rate, q) in data.items():
            ax.plot(rate, q, marker="o", markersize=4, linewidth=1.5, label=codec)
        ax.set_xlabel("bpp")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
    finally:
        plt.close(fig)
    return atomic_write_bytes(Path(path), buf.getvalue())


METRIC_LABELS = {
    "psnr_rgb": "PSNR RGB (dB)",
    "psnr_yuv": "PSNR YUV 6:1:1 (dB)",
    "psnr_y": "PSNR Y (dB)",
    "psnr_u": "PSNR U (dB)",
    "psnr_v": "PSNR V (dB)",
    "ms_ssim_rgb": "MS-SSIM RGB",
}


def plot_all(
    folder: str | Path,
    results: Sequence[Mapping[str, Any]],
    classes: Sequence[Mapping[str, Any]],
    metrics: Sequence[str],
    untrained: Iterable[str] = (),
) -> list[Path]:
    """RD plots per sequence and per class for each metric (``untrained``:
    labels marked as such in the legends)."""
    folder = Path(folder)
    untrained = set(untrained)
    paths = []
    for key, rows, prefix in (
        ("sequence", results, "seq"),
        ("class", classes, "class"),
    ):
        for metric in metrics:
            groups: dict[str, dict[str, tuple]] = {}
            for (group, codec), rq in curves(rows, key, metric).items():
                shown = f"{codec} (untrained)" if codec in untrained else codec
                groups.setdefault(group, {})[shown] = rq
            for group, data in groups.items():
                name = f"rd_{prefix}_{_slug(group)}_{metric}.png"
                title = f"{group} ({'class average' if key == 'class' else key})"
                paths.append(
                    plot_rd(
                        folder / name, data, title, METRIC_LABELS.get(metric, metric)
                    )
                )
    return paths


def _slug(s: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in str(s))


# -- markdown ------------------------------------------------------------------------------


def _share(v: Any) -> float | None:
    return None if v is None else 100.0 * float(v)


def _pct(v: Any) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "n/a"
    return f"{v:+.2f}%"


def markdown(
    meta: Mapping[str, Any],
    results: Sequence[Mapping[str, Any]],
    classes: Sequence[Mapping[str, Any]],
    bdr: Sequence[Mapping[str, Any]],
    references: Sequence[str],
    metric: str,
) -> str:
    """The Markdown report: settings, BD-rate tables, RD points."""
    lines = [f"# dvc-ext evaluation: {meta.get('dataset', '')}", ""]
    p = meta.get("protocol", {})
    lines += [
        f"- protocol: **{p.get('name')}** ({p.get('conversion', '')})",
        f"- rate: {meta.get('rate_definition', '')}",
        f"- BD: {meta.get('bd_method')} interpolation on {metric}; negative BD-rate "
        f"= fewer bits than the reference at equal quality",
    ]
    for c in meta.get("codecs", []):
        if c.get("kind") in ("dvc-ext", "image") and not c.get("trained", True):
            lines.append(
                f"- **{c['label']}: UNTRAINED model (random weights)**; its "
                f"numbers show that the pipeline runs, not what the codec can do"
            )
    if meta.get("missing"):
        lines.append(
            f"- missing sequences (not evaluated): {', '.join(meta['missing'])}"
        )
    lines.append("")
    seqs = list(dict.fromkeys((r["class"], r["sequence"]) for r in results))
    codecs = list(dict.fromkeys(r["codec"] for r in results))
    for ref in references:
        others = [c for c in codecs if c != ref]
        if ref not in codecs or not others:
            continue
        lines += [f"## BD-rate against {ref} ({metric})", ""]
        lines.append("| sequence | class | " + " | ".join(others) + " |")
        lines.append("|---|---|" + "---|" * len(others))
        table = {
            (b["scope"], b["sequence"] or b["class"], b["codec"]): b
            for b in bdr
            if b["reference"] == ref
        }
        for cls, seq in seqs:
            vals = [
                _pct(table.get(("sequence", seq, c), {}).get("bd_rate")) for c in others
            ]
            lines.append(f"| {seq} | {cls} | " + " | ".join(vals) + " |")
        for cls in dict.fromkeys(c for c, _ in seqs):
            vals = [
                _pct(table.get(("class-mean", cls, c), {}).get("bd_rate"))
                for c in others
            ]
            lines.append(f"| **mean** | {cls} | " + " | ".join(vals) + " |")
        notes = sorted({f"{b['codec']} on {b['sequence'] or b['class']}: {b['note']}"
                        for b in table.values() if b.get("note")})  # fmt: skip
        if notes:
            lines += [""] + [f"- note: {n}" for n in notes]
        lines.append("")
    lines += ["## Rate points", ""]
    lines.append(
        "| sequence | codec | point | bpp | I-frames % of bytes | PSNR RGB | PSNR YUV "
        "| MS-SSIM | enc s/frame | dec s/frame |"
    )
    lines.append("|---|---|---|---|---|---|---|---|---|---|")

    def num(v: Any, fmt: str) -> str:
        return "" if v is None else format(v, fmt)

    for r in results:
        m = r["metrics"]
        lines.append(
            f"| {r['sequence']} | {r['codec']} | {r['point']} | {r['bpp']:.4f} | "
            f"{num(_share(r.get('i_frame_share')), '.1f')} | "
            f"{num(m.get('psnr_rgb'), '.2f')} | {num(m.get('psnr_yuv'), '.2f')} | "
            f"{num(m.get('ms_ssim_rgb'), '.4f')} | {r['encode_s_per_frame']:.3f} | "
            f"{r['decode_s_per_frame']:.3f} |"
        )
    lines.append("")
    return "\n".join(lines)


def write_report(
    folder: str | Path,
    meta: Mapping[str, Any],
    results: Sequence[Mapping[str, Any]],
    classes: Sequence[Mapping[str, Any]],
    references: Sequence[str],
    metric: str,
    method: str = "pchip",
    plots: bool = True,
    plot_metrics: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Write every output into ``folder``; returns the BD rows and the paths.

    Files: ``results.json`` (everything, per frame included), ``points.csv``,
    ``frames.csv``, ``classes.csv``, ``bd.csv``, ``report.md`` and
    ``plots/rd_*.png``.
    """
    folder = Path(folder)
    metrics_present = sorted({k for r in results for k in r["metrics"]})
    bdr: list[dict[str, Any]] = []
    for m in dict.fromkeys([metric, *metrics_present]):
        bdr += bd_rows(results, classes, references, m, method)
    paths: dict[str, Any] = {}
    payload = {
        "meta": dict(meta),
        "bd": bdr,
        "classes": list(classes),
        "results": list(results),
    }
    paths["json"] = write_json(folder / "results.json", payload)
    paths["csv"] = write_csv(folder / "points.csv", point_rows(results))
    paths["frames_csv"] = write_csv(folder / "frames.csv", frame_rows(results))
    paths["classes_csv"] = write_csv(
        folder / "classes.csv",
        [
            {k: v for k, v in c.items() if k != "metrics"} | c["metrics"]
            for c in classes
        ],
    )
    paths["bd_csv"] = write_csv(folder / "bd.csv", bdr)
    main_bd = [b for b in bdr if b["metric"] == metric]
    md = markdown(meta, results, classes, main_bd, references, metric)
    paths["markdown"] = atomic_write_bytes(folder / "report.md", md.encode())
    if plots:
        pm = plot_metrics or [metric]
        untrained = [
            c["label"] for c in meta.get("codecs", []) if c.get("trained") is False
        ]
        paths["plots"] = plot_all(folder / "plots", results, classes, pm, untrained)
    return {"bd": bdr, "paths": paths, "markdown": md}
