"""dvc_common: registry, padding, varints, and the one-way import rule."""

from __future__ import annotations

import ast
import os
import stat
from pathlib import Path

import pytest
import torch

from dvc_common import (
    BitstreamError,
    DvcExtError,
    Registry,
    RegistryError,
    atomic_tempfile,
    decode_varint,
    encode_varint,
    pad_to_multiple,
    unpad,
)

REPO = Path(__file__).resolve().parents[1]


def test_registry_duplicates_and_unknown():
    reg = Registry("widget")
    reg.register("a")(dict)
    with pytest.raises(RegistryError, match="already registered"):
        reg.register("a")(list)
    with pytest.raises(RegistryError, match="choices: a"):
        reg.get("b")
    assert issubclass(RegistryError, DvcExtError)
    assert reg.build("a", x=1) == {"x": 1}


@pytest.mark.parametrize(
    "h,w,m", [(70, 90, 64), (64, 64, 64), (1, 3, 16), (240, 416, 64)]
)
def test_pad_unpad(h, w, m):
    x = torch.rand(2, 3, h, w)
    p, pads = pad_to_multiple(x, m)
    assert p.shape[-2] % m == 0 and p.shape[-1] % m == 0
    assert torch.equal(unpad(p, pads), x)


def test_varint_round_trip_and_errors():
    data = b"".join(encode_varint(v) for v in (0, 1, 127, 128, 300, 2**40))
    pos, out = 0, []
    while pos < len(data):
        v, pos = decode_varint(data, pos)
        out.append(v)
    assert out == [0, 1, 127, 128, 300, 2**40]
    with pytest.raises(BitstreamError):
        decode_varint(b"\x80\x80", 0)
    with pytest.raises(BitstreamError):
        decode_varint(b"\xff" * 11, 0)


# The one-way rule of DESIGN.md section 1: package -> packages it must not import.
FORBIDDEN = {
    "dvc_common": {"image_codecs", "flows", "dvc_ext"},
    "image_codecs": {"flows", "dvc_ext"},
    "flows": {"image_codecs", "dvc_ext"},
    "dvc_ext": set(),
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_one_way_import_rule():
    bad = []
    for pkg, forbidden in FORBIDDEN.items():
        files = list((REPO / pkg).rglob("*.py"))
        assert files, pkg
        for f in files:
            hit = _imports(f) & forbidden
            if hit:
                bad.append(f"{f.relative_to(REPO)} imports {sorted(hit)}")
    assert not bad, bad


def test_atomic_tempfile_is_new_beside_the_target_with_the_umask_mode(tmp_path):
    target = tmp_path / "model.pth"
    old = os.umask(0o027)
    try:
        (fd1, t1), (fd2, t2) = atomic_tempfile(target), atomic_tempfile(target)
    finally:
        os.umask(old)
    os.close(fd1)
    os.close(fd2)
    assert t1 != t2 and t1.parent == t2.parent == tmp_path
    assert t1.name.startswith(".model.pth.") and t1.suffix == ".tmp"
    assert stat.S_IMODE(t1.stat().st_mode) == 0o640
