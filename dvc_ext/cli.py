"""The ``dvc-ext`` command line (also ``python -m dvc_ext``).

``dvc-ext VERB [POSITIONAL ...] [key=value ...]``. Hydra takes only overrides,
so positional arguments are mapped to ``input=`` / ``output=`` overrides here and
the config is composed with Hydra's compose API from the primary config named
after the verb. Each verb is a thin wrapper around a plain task function that
tests call directly.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from importlib import import_module

from dvc_common import DvcExtError

# verb -> (module:function of the task, names of the positional arguments)
VERBS: dict[str, tuple[str, tuple[str, ...], str]] = {
    "compress": (
        "dvc_ext.tasks.codec:compress",
        ("input", "output"),
        "compress a video to a .dvc file",
    ),
    "decompress": (
        "dvc_ext.tasks.codec:decompress",
        ("input", "output"),
        "decode a .dvc file to frames (.yuv, .y4m, .mp4 or a folder)",
    ),
    "train": ("dvc_ext.tasks.train:train", (), "train a P-frame or image codec"),
    "eval": (
        "dvc_ext.tasks.evaluate:evaluate",
        (),
        "evaluate on UVG / HEVC / Kodak against x264 / x265",
    ),
    "demo": ("dvc_ext.tasks.demo:demo", (), "round-trip the built-in demo clip"),
    "export": (
        "dvc_ext.tasks.export:export",
        ("input", "output"),
        "a training checkpoint to a small model file (no optimizer state)",
    ),
}

USAGE = """usage: dvc-ext VERB [ARGS ...] [key=value ...]

verbs:
{verbs}

Every setting is a Hydra override, e.g.
  dvc-ext compress in.mp4 out.dvc quality=2 intra_period=12
  dvc-ext decompress out.dvc decoded.y4m
  dvc-ext train experiment=joint dataset.root=/data/vimeo_septuplet
  dvc-ext eval dataset=hevc_d dataset.root=/data/hevc
Add --cfg to print the composed config instead of running.
"""


def _usage() -> str:
    verbs = "\n".join(f"  {v:<11} {h}" for v, (_, _, h) in VERBS.items())
    return USAGE.format(verbs=verbs)


def split_args(verb: str, args: Sequence[str]) -> list[str]:
    """Map positional arguments to overrides; pass ``key=value`` through.

    Raises:
        DvcExtError: too many positional arguments for the verb.
    """
    names = VERBS[verb][1]
    positional = [a for a in args if "=" not in a]
    overrides = [a for a in args if "=" in a]
    if len(positional) > len(names):
        raise DvcExtError(
            f"{verb} takes at most {len(names)} positional argument(s) "
            f"({', '.join(names) or 'none'}), got {positional}"
        )
    mapped = [f"{n}={_quote(v)}" for n, v in zip(names, positional)]
    return mapped + overrides


def _quote(value: str) -> str:
    # Hydra's override grammar reads ',' '=' and spaces specially; quote paths.
    if any(c in value for c in " ,=:[]{}'\"()"):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return value


def compose(verb: str, overrides: Sequence[str]):
    """The composed config of ``verb`` (a DictConfig)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module

    with initialize_config_module("dvc_ext.configs", version_base="1.3"):
        return hydra_compose(config_name=verb, overrides=list(overrides))


def _task(verb: str) -> Callable:
    mod, _, fn = VERBS[verb][0].partition(":")
    return getattr(import_module(mod), fn)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    verb, rest = argv[0], argv[1:]
    if verb not in VERBS:
        print(f"dvc-ext: unknown verb {verb!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    show_cfg = "--cfg" in rest
    rest = [a for a in rest if a != "--cfg"]
    try:
        overrides = split_args(verb, rest)
        if verb == "demo":
            cfg = None
        else:
            cfg = compose(verb, overrides)
        if show_cfg:
            from omegaconf import OmegaConf

            print(OmegaConf.to_yaml(cfg) if cfg is not None else "{}")
            return 0
        _task(verb)(cfg)
    except DvcExtError as e:
        print(f"dvc-ext {verb}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"dvc-ext {verb}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # Hydra's own config errors: bad override, unknown key
        if type(e).__module__.startswith(("hydra", "omegaconf")):
            print(f"dvc-ext {verb}: configuration error: {e}", file=sys.stderr)
            return 2
        raise
    return 0
