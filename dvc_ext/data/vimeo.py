"""Vimeo-90k septuplets, read exactly as distributed.

T. Xue, B. Chen, J. Wu, D. Wei, W. T. Freeman, "Video Enhancement with
Task-Oriented Flow", IJCV 2019. DVC (Lu et al., CVPR 2019) trains on it.

The layout a user downloads and unpacks (``vimeo_septuplet.zip``)::

    ROOT/sep_trainlist.txt         one clip per line: "00001/0001"
    ROOT/sep_testlist.txt
    ROOT/sequences/00001/0001/im1.png ... im7.png     (448 x 256 RGB)

``dataset.root=ROOT`` is all a user sets.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dvc_common import InputError

from .base import read_image

LIST_FILES = {"train": "sep_trainlist.txt", "test": "sep_testlist.txt"}
FRAMES = 7


class VimeoClip:
    """One septuplet: frames ``im1.png`` .. ``im7.png`` of a clip folder."""

    length = FRAMES

    def __init__(self, folder: Path, name: str) -> None:
        self.folder = folder
        self.name = f"vimeo:{name}"

    def read(self, t: int) -> np.ndarray:
        return read_image(self.folder / f"im{t + 1}.png")


def _expected(root: Path) -> str:
    return (
        f"dataset.root must be the Vimeo-90k septuplet folder holding "
        f"sequences/XXXXX/YYYY/im1..im7.png, sep_trainlist.txt and "
        f"sep_testlist.txt (root given: {root})"
    )


def vimeo_clips(root: str | Path, split: str = "train") -> list[VimeoClip]:
    """The clips of one split (``train`` or ``test``) of a Vimeo-90k copy.

    Raises:
        InputError: the root, the list file, a listed clip folder or the frames
            of the first clip are missing; the list is empty.
    """
    root = Path(root).expanduser()
    if split not in LIST_FILES:
        raise ValueError(f"split must be one of {sorted(LIST_FILES)}, got {split!r}")
    if not root.is_dir():
        raise InputError(f"no such directory: {root}. {_expected(root)}")
    list_file = root / LIST_FILES[split]
    if not list_file.is_file():
        raise InputError(f"{list_file.name} not found in {root}. {_expected(root)}")
    seq = root / "sequences"
    if not seq.is_dir():
        raise InputError(f"{root} has no sequences/ folder. {_expected(root)}")
    names = [ln.strip() for ln in list_file.read_text().splitlines() if ln.strip()]
    if not names:
        raise InputError(f"{list_file} lists no clips")
    clips = []
    for name in names:
        folder = seq / name
        if not folder.is_dir():
            raise InputError(
                f"{list_file.name} lists {name!r} but {folder} does not exist. "
                f"{_expected(root)}"
            )
        clips.append(VimeoClip(folder, name))
    first = clips[0].folder
    missing = [
        f"im{i}.png"
        for i in range(1, FRAMES + 1)
        if not (first / f"im{i}.png").is_file()
    ]
    if missing:
        raise InputError(
            f"{first} lacks {', '.join(missing)} (a septuplet has im1..im7.png)"
        )
    return clips
