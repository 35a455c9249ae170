"""Test-sequence registries (UVG, HEVC classes B-E) and the Kodak image set.

Users download the sequences themselves (their licences forbid redistribution),
so :func:`find_sequences` looks for them under a folder by the names they are
distributed under, checks their geometry, and reports what is missing by name.

Recognised file names (any folder depth, case-insensitive, ``.yuv`` or ``.y4m``):

* UVG: ``Beauty_1920x1080_120fps_420_8bit_YUV.yuv`` (the name inside the UVG
  archives); any name that starts with the sequence name and states the size.
* HEVC CTC: ``BasketballPass_416x240_50.yuv``, ``Kimono1_1920x1080_24.yuv``,
  ``RaceHorsesC_832x480_30.yuv``, and the ``_50Hz_8bit_P420`` style
  (``C_RaceHorses_832x480_30Hz_8bit_P420.yuv``, with an optional class-letter
  prefix and a frame-count token such as ``_2frames``).

A name is matched by its first token (after an optional class letter) against
the sequence's name and aliases; the size in the name (or the Y4M header) must
be the registry's, which also tells class C's RaceHorses (832x480) from class
D's (416x240). 10-bit or non-4:2:0 files are listed as unsupported, not read.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

from dvc_common import InputError

from ..io.frame import yuv420_frame_bytes
from ..io.naming import parse_yuv_name
from ..io.readers import IMAGE_SUFFIXES

VIDEO_SUFFIXES = (".yuv", ".y4m")


@dataclass(frozen=True)
class SequenceSpec:
    """One registered test sequence.

    Attributes:
        name: the sequence's usual name (``"BasketballPass"``).
        cls: its class (``"UVG"``, ``"HEVC-B"`` ... ``"HEVC-E"``).
        width, height: luma size in pixels.
        fps: frames per second.
        frames: frames in the distributed file.
        files: the canonical file names it is distributed under.
        aliases: other first tokens of its file names (``"Kimono1"``).
    """

    name: str
    cls: str
    width: int
    height: int
    fps: Fraction
    frames: int
    files: tuple[str, ...]
    aliases: tuple[str, ...] = ()

    @property
    def family(self) -> str:
        """``"uvg"`` or ``"hevc"``: selects a protocol's GOP and frame count."""
        return "uvg" if self.cls == "UVG" else "hevc"

    def names(self) -> tuple[str, ...]:
        return (self.name, *self.aliases)


def _uvg(name: str, frames: int = 600) -> SequenceSpec:
    return SequenceSpec(
        name, "UVG", 1920, 1080, Fraction(120), frames,
        (f"{name}_1920x1080_120fps_420_8bit_YUV.yuv",),
    )  # fmt: skip


def _ctc(
    name: str, cls: str, size: tuple[int, int], fps: int, frames: int,
    file_name: str | None = None, aliases: tuple[str, ...] = (),
) -> SequenceSpec:  # fmt: skip
    w, h = size
    stem = file_name or name
    return SequenceSpec(
        name, cls, w, h, Fraction(fps), frames, (f"{stem}_{w}x{h}_{fps}.yuv",),
        aliases,
    )  # fmt: skip


_B, _C, _D, _E = (1920, 1080), (832, 480), (416, 240), (1280, 720)

#: Every registered sequence, by class. UVG: the seven 1080p 120 fps sequences
#: of the learned-video-compression literature (Mercat et al., MMSys 2020).
#: HEVC: the JCT-VC common test conditions (JCTVC-L1100), classes B to E.
SEQUENCES: dict[str, tuple[SequenceSpec, ...]] = {
    "UVG": (
        _uvg("Beauty"),
        _uvg("Bosphorus"),
        _uvg("HoneyBee"),
        _uvg("Jockey"),
        _uvg("ReadySteadyGo"),
        _uvg("ShakeNDry", 300),
        _uvg("YachtRide"),
    ),
    "HEVC-B": (
        _ctc("BasketballDrive", "HEVC-B", _B, 50, 500),
        _ctc("BQTerrace", "HEVC-B", _B, 60, 600),
        _ctc("Cactus", "HEVC-B", _B, 50, 500),
        _ctc("Kimono", "HEVC-B", _B, 24, 240, "Kimono1", ("Kimono1",)),
        _ctc("ParkScene", "HEVC-B", _B, 24, 240),
    ),
    "HEVC-C": (
        _ctc("BasketballDrill", "HEVC-C", _C, 50, 500),
        _ctc("BQMall", "HEVC-C", _C, 60, 600),
        _ctc("PartyScene", "HEVC-C", _C, 50, 500),
        _ctc("RaceHorses", "HEVC-C", _C, 30, 300, "RaceHorsesC", ("RaceHorsesC",)),
    ),
    "HEVC-D": (
        _ctc("BasketballPass", "HEVC-D", _D, 50, 500),
        _ctc("BQSquare", "HEVC-D", _D, 60, 600),
        _ctc("BlowingBubbles", "HEVC-D", _D, 50, 500),
        _ctc("RaceHorses", "HEVC-D", _D, 30, 300, None, ("RaceHorsesD",)),
    ),
    "HEVC-E": (
        _ctc("FourPeople", "HEVC-E", _E, 60, 600),
        _ctc("Johnny", "HEVC-E", _E, 60, 600),
        _ctc("KristenAndSara", "HEVC-E", _E, 60, 600),
    ),
}


def list_classes() -> list[str]:
    return list(SEQUENCES)


def sequences_of(classes: Iterable[str]) -> list[SequenceSpec]:
    """The registered sequences of ``classes`` (``"UVG"``, ``"HEVC-B"`` ...).

    Raises:
        InputError: an unknown class (the message lists the choices).
    """
    out: list[SequenceSpec] = []
    for c in classes:
        key = _class_key(c)
        if key is None:
            raise InputError(
                f"unknown sequence class {c!r}; choices: {', '.join(SEQUENCES)}"
            )
        out.extend(SEQUENCES[key])
    return out


def _class_key(c: str) -> str | None:
    norm = re.sub(r"[^a-z0-9]", "", str(c).lower())
    for key in SEQUENCES:
        k = re.sub(r"[^a-z0-9]", "", key.lower())
        if norm in (k, k.removeprefix("hevc"), f"class{k.removeprefix('hevc')}"):
            return key
    return None


@dataclass(frozen=True)
class FileGeometry:
    """What a file name (or Y4M header) says: size, bit depth, chroma."""

    width: int | None
    height: int | None
    bit_depth: int | None
    chroma: str | None


def _geometry(path: Path) -> FileGeometry:
    if path.suffix.lower() == ".y4m":
        from ..io.readers import Y4MReader

        try:
            info = Y4MReader(path).info
        except InputError:
            # A 10-bit / 4:4:4 Y4M is refused by the reader; say so by name.
            n = parse_yuv_name(path.with_suffix(".yuv"))
            return FileGeometry(n.width, n.height, n.bit_depth or 0, n.chroma)
        return FileGeometry(info.width, info.height, 8, "420")
    n = parse_yuv_name(path)
    return FileGeometry(n.width, n.height, n.bit_depth, n.chroma)


def _name_tokens(path: Path) -> list[str]:
    stem = path.name
    for suffix in VIDEO_SUFFIXES:
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
    tokens = [t for t in re.split(r"[_\-\s.]+", stem) if t]
    # CTC excerpts are sometimes prefixed by their class: "C_RaceHorses_...".
    if len(tokens) > 1 and re.fullmatch(r"(class)?[a-f]", tokens[0], re.IGNORECASE):
        tokens = tokens[1:]
    return tokens


def match_sequence(
    path: str | Path, candidates: Sequence[SequenceSpec] | None = None
) -> SequenceSpec | None:
    """The registered sequence a file name denotes, or ``None``.

    The first name token (after an optional class letter) must be the
    sequence's name or an alias (case-insensitive) and the size must be the
    registry's. Bit depth and chroma format are not checked here (see
    :func:`find_sequences`).
    """
    path = Path(path)
    tokens = _name_tokens(path)
    if not tokens:
        return None
    first = tokens[0].lower()
    specs = candidates if candidates is not None else sequences_of(SEQUENCES)
    named = [s for s in specs if first in (n.lower() for n in s.names())]
    if not named:
        return None
    g = _geometry(path)
    for s in named:
        if (g.width, g.height) == (s.width, s.height):
            return s
    return None


def _frames_in(path: Path, spec: SequenceSpec) -> int:
    if path.suffix.lower() == ".y4m":
        from ..io.readers import Y4MReader

        return int(Y4MReader(path).info.num_frames or 0)
    return path.stat().st_size // yuv420_frame_bytes(spec.width, spec.height)


@dataclass(frozen=True)
class FoundSequence:
    """A registered sequence found on disk.

    Attributes:
        spec: the registry entry.
        path: the file.
        frames: frames in the file (may be fewer than the registry's: an
            excerpt).
    """

    spec: SequenceSpec
    path: Path
    frames: int

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def cls(self) -> str:
        return self.spec.cls


@dataclass
class SequenceSearch:
    """The outcome of :func:`find_sequences`.

    Attributes:
        found: present sequences, in registry order.
        missing: registered sequences with no usable file.
        skipped: ``(path, reason)`` for files named like a wanted sequence but
            not used (wrong size, 10-bit, a shorter duplicate).
    """

    root: Path
    found: list[FoundSequence] = field(default_factory=list)
    missing: list[SequenceSpec] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)

    def summary(self) -> str:
        lines = [f"{len(self.found)} sequence(s) found under {self.root}"]
        for f in self.found:
            lines.append(f"  {f.cls:<7} {f.name:<16} {f.frames:>4} frames  {f.path}")
        if self.missing:
            lines.append(
                "missing (not evaluated): "
                + ", ".join(f"{s.cls}/{s.name}" for s in self.missing)
            )
        for p, why in self.skipped:
            lines.append(f"skipped {p}: {why}")
        return "\n".join(lines)


def find_sequences(
    root: str | Path,
    classes: Iterable[str],
    names: Iterable[str] | None = None,
) -> SequenceSearch:
    """Find the registered sequences of ``classes`` under ``root``.

    Args:
        root: a folder searched recursively, or one sequence file.
        classes: e.g. ``["HEVC-D"]`` or ``["UVG"]``.
        names: evaluate only these sequences (by name).

    Returns:
        A :class:`SequenceSearch`; several files of one sequence resolve to the
        one with the most frames (the others are listed as skipped).

    Raises:
        InputError: ``root`` does not exist, an unknown class or name, or none
            of the wanted sequences is present (the message names the files
            looked for).
    """
    root = Path(root).expanduser()
    if not root.exists():
        raise InputError(f"dataset root {root} does not exist")
    wanted = sequences_of(classes)
    if names:
        names = [str(n) for n in names]
        by_name = {n.lower() for s in wanted for n in s.names()}
        unknown = [n for n in names if n.lower() not in by_name]
        if unknown:
            raise InputError(
                f"unknown sequence(s) {unknown} for {', '.join(classes)}; choices: "
                + ", ".join(s.name for s in wanted)
            )
        keep = {n.lower() for n in names}
        wanted = [s for s in wanted if keep & {n.lower() for n in s.names()}]
    files = (
        [root]
        if root.is_file()
        else sorted(
            p
            for p in root.rglob("*")
            if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file()
        )
    )
    search = SequenceSearch(root)
    best: dict[SequenceSpec, FoundSequence] = {}
    for path in files:
        tokens = _name_tokens(path)
        first = tokens[0].lower() if tokens else ""
        named = [s for s in wanted if first in (n.lower() for n in s.names())]
        if not named:
            continue
        spec = match_sequence(path, named)
        g = _geometry(path)
        if spec is None:
            sizes = " or ".join(f"{s.width}x{s.height}" for s in named)
            search.skipped.append(
                (path, f"size {g.width}x{g.height} in the name, expected {sizes}")
            )
            continue
        if g.bit_depth not in (None, 8) or g.chroma not in (None, "420"):
            search.skipped.append(
                (
                    path,
                    f"{g.bit_depth or '?'}-bit {g.chroma or '420'}: only 8-bit 4:2:0 "
                    "is read (convert with ffmpeg -pix_fmt yuv420p)",
                )
            )
            continue
        n = _frames_in(path, spec)
        if n < 1:
            search.skipped.append((path, "no whole frame in the file"))
            continue
        cand = FoundSequence(spec, path, n)
        old = best.get(spec)
        if old is None or n > old.frames:
            if old is not None:
                search.skipped.append((old.path, f"shorter duplicate of {path.name}"))
            best[spec] = cand
        else:
            search.skipped.append((path, f"shorter duplicate of {old.path.name}"))
    search.found = [best[s] for s in wanted if s in best]
    search.missing = [s for s in wanted if s not in best]
    if not search.found:
        expected = ", ".join(s.files[0] for s in wanted)
        extra = "".join(f"\n  skipped {p}: {why}" for p, why in search.skipped)
        raise InputError(
            f"none of the {', '.join(classes)} sequences was found under {root} "
            f"(looked for .yuv/.y4m files named like {expected}){extra}"
        )
    return search


# -- images --------------------------------------------------------------------------


def find_images(root: str | Path, limit: int | None = None) -> list[Path]:
    """The image files under ``root`` (recursive, sorted), e.g. the Kodak set.

    Raises:
        InputError: ``root`` does not exist or holds no image.
    """
    root = Path(root).expanduser()
    if not root.exists():
        raise InputError(f"image folder {root} does not exist")
    if root.is_file():
        paths = [root] if root.suffix.lower() in IMAGE_SUFFIXES else []
    else:
        paths = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise InputError(f"no image ({', '.join(IMAGE_SUFFIXES)}) found under {root}")
    return paths[:limit] if limit else paths
