"""Packaging: every package folder is installed, configs ship with the package."""

from __future__ import annotations

import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_every_package_is_listed():
    listed = set(
        tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"][
            "packages"
        ]
    )
    found = set()
    for top in ("dvc_common", "dvc_ext", "flows", "image_codecs"):
        for init in (REPO / top).rglob("__init__.py"):
            found.add(".".join(init.parent.relative_to(REPO).parts))
    assert found <= listed, sorted(found - listed)


def test_configs_are_found_as_package_data():
    from importlib import resources

    root = resources.files("dvc_ext.configs")
    for verb in ("compress", "decompress", "train", "eval"):
        assert (root / f"{verb}.yaml").is_file(), verb
