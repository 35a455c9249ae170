"""Every config composes, resolves and builds what it describes."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from dvc_ext.cli import compose
from dvc_ext.data import build_datasets
from dvc_ext.training.model import build_video, image_config, video_config
from dvc_ext.training.schedule import build_schedule
from image_codecs import build_codec, list_codecs

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIGS / group).glob("*.yaml"))


PRIMARY = sorted(p.stem for p in CONFIGS.glob("*.yaml"))
EXPERIMENTS = _options("experiment")


def _resolved(verb: str, overrides: list[str]) -> dict:
    cfg = compose(verb, overrides)
    return OmegaConf.to_container(cfg, resolve=True)


@pytest.mark.parametrize("verb", PRIMARY)
def test_primary_configs_compose(verb):
    assert isinstance(_resolved(verb, []), dict)


@pytest.mark.parametrize("debug", [None, *_options("debug")])
@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_composes_and_schedules(experiment, debug):
    overrides = [f"experiment={experiment}"] + ([f"debug={debug}"] if debug else [])
    c = _resolved("train", overrides)
    assert c["task"] in ("pframe", "image")
    assert c["run_dir"].startswith(f"runs/{c['name']}/")
    schedule = build_schedule(
        c["stages"], c["task"], c["optim"], c["ref"], c["max_stage_steps"]
    )
    assert schedule and all(s.steps > 0 for s in schedule)
    if c["task"] == "pframe":
        assert [s.name for s in schedule] == [
            n for n in ("motion", "residual", "joint") if n in c["stages"]
        ]


@pytest.mark.parametrize("group", ["codec", "flow", "image_codec", "dataset", "optim"])
def test_every_group_option_composes(group):
    for option in _options(group):
        c = _resolved("train", [f"{group}={option}"])
        assert c[group] is not None


def test_command_line_group_beats_the_experiments_choice():
    assert (
        _resolved("train", ["experiment=dvc"])["codec"]["pframe"]["mc_channels"] == 32
    )
    c = _resolved("train", ["experiment=dvc", "codec=default"])
    assert c["codec"]["pframe"]["residual_codec"]["N"] == 128


def test_every_registered_codec_has_a_sized_config():
    configured = set(_options("image_codec"))
    missing = sorted(set(list_codecs()) - configured)
    assert not missing, f"configs/image_codec/ lacks {missing}"
    for option in configured:
        c = _resolved("train", [f"image_codec={option}"])
        codec = build_codec(**image_config(c["image_codec"], 4))
        assert codec.registry_name == option and codec.num_qualities == 4


@pytest.mark.parametrize("codec", _options("codec"))
def test_every_video_model_config_builds(codec):
    c = _resolved("train", [f"codec={codec}"])
    model = build_video(video_config(c["codec"]))
    assert model.num_qualities == c["num_qualities"]
    assert model.config["pframe"]["flow"]["name"] == c["flow"]["name"]


def test_flow_options_build_into_the_model():
    for flow in _options("flow"):
        c = _resolved("train", [f"flow={flow}", "tiny_codecs=true"])
        model = build_video(video_config(c["codec"], tiny=True))
        assert model.pframe.flow is not None


def test_dataset_configs_build(tmp_path):
    import cv2
    import numpy as np

    img = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    for clip in ("00001/0001", "00002/0001"):
        for t in range(1, 8):
            (tmp_path / "sequences" / clip).mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(tmp_path / "sequences" / clip / f"im{t}.png"), img)
    (tmp_path / "sep_trainlist.txt").write_text("00001/0001\n")
    (tmp_path / "sep_testlist.txt").write_text("00002/0001\n")
    for name, fps in (("vimeo", 2), ("images", 1)):
        c = _resolved("train", [f"dataset={name}", f"dataset.root={tmp_path}",
                                "dataset.crop=64", "dataset.val_crop=64"])  # fmt: skip
        train, val = build_datasets(c["dataset"], fps)
        assert len(train) > 0
    c = _resolved("train", ["dataset=mixed", f"dataset.parts.vimeo.root={tmp_path}",
                            "dataset.crop=64", "dataset.val_crop=64"])  # fmt: skip
    train, val = build_datasets(c["dataset"], 2)
    assert len(train) == 6 and len(val) == 6
