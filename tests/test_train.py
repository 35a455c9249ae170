"""``dvc-ext train``: each stage, checkpoints, init, kill-and-resume, DDP."""

from __future__ import annotations

import csv
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from dvc_common import InputError, ModelMismatchError
from dvc_ext.checkpoint import load_checkpoint
from dvc_ext.cli import compose, main
from dvc_ext.tasks.train import train
from dvc_ext.training.distributed import init_distributed
from dvc_ext.training.loop import Trainer
from dvc_ext.training.model import build_video, load_weights

REPO = Path(__file__).resolve().parents[1]


def _run(shared_data: Path, tmp: Path, *overrides: str) -> Path:
    root = shared_data / "train" / "vimeo_septuplet"
    cfg = compose(
        "train", ["debug=tiny", f"dataset.root={root}", f"run_dir={tmp}", *overrides]
    )
    return train(cfg)


def _rows(run: Path, split: str = "train") -> list[dict]:
    with (run / "metrics.csv").open() as f:
        return [r for r in csv.DictReader(f) if r["split"] == split]


def _tiny_joint_model(shared_data: Path) -> torch.nn.Module:
    """The video model a tiny joint-stage run starts from."""
    root = shared_data / "train" / "vimeo_septuplet"
    cfg = compose("train", ["debug=tiny", f"dataset.root={root}", "experiment=joint"])
    return Trainer(
        OmegaConf.to_container(cfg, resolve=True), init_distributed("cpu")
    ).model


def _state(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path)["state_dict"]


@pytest.mark.parametrize("experiment", ["motion", "residual", "joint", "image"])
def test_each_stage_trains_three_steps(shared_data, tmp_path, experiment):
    run = _run(shared_data, tmp_path / "run", f"experiment={experiment}")
    rows = _rows(run)
    assert [int(r["step"]) for r in rows] == [1, 2, 3]
    for r in rows:
        assert r["stage"] == experiment and float(r["lr"]) > 0
        assert all(
            math.isfinite(float(r[k])) for k in ("loss", "bpp", "psnr", "aux_loss")
        )
        assert float(r["bpp"]) > 0
    if experiment == "motion":  # warp/MC distortion + motion rate: no residual
        assert rows[0]["bpp_residual"] == "" and rows[0]["psnr_warp"] != ""
        assert float(rows[0]["bpp"]) == pytest.approx(
            float(rows[0]["bpp_motion"]), rel=1e-4
        )
    elif experiment != "image":
        b = float(rows[0]["bpp_motion"]) + float(rows[0]["bpp_residual"])
        assert float(rows[0]["bpp"]) == pytest.approx(b, rel=1e-4)
        assert rows[0]["bpp_intra"] != ""  # the intra codec trains alongside
    val = _rows(run, "val")
    assert [int(r["quality"]) for r in val] == [0, 1, 2, 3]
    assert [float(r["lambda"]) for r in val] == [256, 512, 1024, 2048]
    kind = "image" if experiment == "image" else "video"
    blob = load_checkpoint(run / "checkpoints" / "last.pth", kind)
    assert blob["extra"]["step"] == 3 and blob["meta"]["stage"] == experiment
    assert (run / "checkpoints" / f"{experiment}.pth").is_file()
    assert (run / "config.yaml").is_file() and (run / "train.log").is_file()


def test_residual_stage_freezes_the_motion_part(shared_data, tmp_path):
    run = _run(shared_data, tmp_path / "run", "experiment=residual")
    blob = load_checkpoint(run / "checkpoints" / "last.pth", "video")
    torch.manual_seed(0)  # the trainer seeds the model's initialisation with `seed`
    model = build_video(blob["config"])
    init = {k: p.detach() for k, p in model.named_parameters()}
    trained = blob["state_dict"]
    weights = list(init)
    for k in weights:
        same = torch.equal(init[k], trained[k])
        if k.startswith(("pframe.motion_codec.", "pframe.mc_net.", "pframe.flow.")):
            assert same, f"{k} changed in a stage that freezes it"
    moved = [k for k in weights if not torch.equal(init[k], trained[k])]
    assert any(k.startswith("pframe.residual_codec.g_a") for k in moved)
    assert any(k.startswith("intra.g_a") for k in moved)


def test_video_checkpoint_codes_and_decodes(shared_data, tmp_path):
    """What ``dvc-ext compress checkpoint=...`` needs: the checkpoint rebuilds
    the model, and a decoder-only model (no flow) decodes what it encodes."""
    run = _run(shared_data, tmp_path / "run", "experiment=joint")
    blob = load_checkpoint(run / "checkpoints" / "last.pth", "video")
    enc = build_video(blob["config"])
    load_weights(enc, blob["state_dict"])
    dec_cfg = dict(blob["config"], for_decoding=True)
    dec = build_video(dec_cfg)
    load_weights(dec, {k: v for k, v in blob["state_dict"].items()
                       if not k.startswith("pframe.flow.")})  # fmt: skip
    assert dec.fingerprint() == enc.fingerprint()
    from dvc_ext.data import read_image

    clip = shared_data / "train" / "vimeo_septuplet" / "sequences" / "00001" / "0001"
    frames = [torch.from_numpy(read_image(clip / f"im{i}.png").copy()).permute(2, 0, 1)
              .float().div(255)[:, :64, :128] for i in (1, 2, 3)]  # fmt: skip
    enc.eval(), dec.eval()
    coded, recon, _ = zip(*enc.encode(frames, quality=2, intra_period=0))
    decoded = list(dec.decode(coded, 64, 128))
    assert all(torch.equal(a, b) for a, b in zip(recon, decoded))


def test_resume_is_bit_identical_to_an_uninterrupted_run(shared_data, tmp_path):
    # Six steps over three stages (motion 2, residual 2, joint 2); the
    # interrupted run stops after step 3, in the middle of the residual stage.
    common = ("experiment=dvc", "max_stage_steps=2", "seed=3")
    straight = _run(shared_data, tmp_path / "a", *common)
    part = _run(shared_data, tmp_path / "b", *common, "stop_after_steps=3")
    assert load_checkpoint(part / "checkpoints" / "last.pth")["extra"]["step"] == 3
    resumed = _run(shared_data, tmp_path / "b", *common, "resume=true")
    assert resumed == part
    a = _state(straight / "checkpoints" / "last.pth")
    b = _state(resumed / "checkpoints" / "last.pth")
    assert a.keys() == b.keys()
    diff = [k for k in a if not torch.equal(a[k], b[k])]
    assert not diff, f"resumed weights differ: {diff[:5]}"
    ra, rb = _rows(straight), _rows(resumed)
    assert [r["step"] for r in rb] == [str(i) for i in range(1, 7)]
    assert [r["loss"] for r in ra] == [r["loss"] for r in rb]
    # A different seed really does train differently (the check can fail).
    other = _run(
        shared_data, tmp_path / "c", "experiment=dvc", "max_stage_steps=2", "seed=4"
    )
    c = _state(other / "checkpoints" / "last.pth")
    assert any(not torch.equal(a[k], c[k]) for k in a if a[k].is_floating_point())


def test_intra_from_an_image_checkpoint(shared_data, tmp_path):
    image_run = _run(shared_data, tmp_path / "img", "experiment=image")
    image_ckpt = image_run / "checkpoints" / "last.pth"
    run = _run(shared_data, tmp_path / "vid", "experiment=joint", f"init.intra={image_ckpt}",
               "train_intra=false")  # fmt: skip
    video = _state(run / "checkpoints" / "last.pth")
    image = _state(image_ckpt)
    assert all(torch.equal(video[f"intra.{k}"], v) for k, v in image.items())
    assert (
        load_checkpoint(run / "checkpoints" / "last.pth")["config"]["intra_codec"][
            "name"
        ]
        == (load_checkpoint(image_ckpt)["config"]["name"])
    )
    # The same image checkpoint can seed the residual codec (checked on the
    # model as built, before any step changes it).
    root = shared_data / "train" / "vimeo_septuplet"
    cfg = compose("train", ["debug=tiny", f"dataset.root={root}",
                            f"run_dir={tmp_path / 'vid2'}", "experiment=joint",
                            f"init.residual={image_ckpt}"])  # fmt: skip
    trainer = Trainer(
        OmegaConf.to_container(cfg, resolve=True), init_distributed("cpu")
    )
    residual = trainer.model.pframe.residual_codec.state_dict()
    assert all(torch.equal(residual[k], v) for k, v in image.items())
    # Beside init.video it swaps only the residual codec: the motion part and
    # the intra codec stay the video checkpoint's.
    cfg = compose("train", ["debug=tiny", f"dataset.root={root}",
                            f"run_dir={tmp_path / 'vid3'}", "experiment=residual",
                            f"init.video={run / 'checkpoints' / 'last.pth'}",
                            f"init.residual={image_ckpt}"])  # fmt: skip
    swapped = Trainer(
        OmegaConf.to_container(cfg, resolve=True), init_distributed("cpu")
    ).model.state_dict()
    assert all(
        torch.equal(swapped[f"pframe.residual_codec.{k}"], v) for k, v in image.items()
    )
    kept = [k for k in video if not k.startswith("pframe.residual_codec.")]
    assert kept and all(torch.equal(swapped[k], video[k]) for k in kept)
    assert any(
        not torch.equal(video[k], swapped[k])
        for k in video if k.startswith("pframe.residual_codec.")
    )  # fmt: skip


def test_clear_errors(shared_data, tmp_path, capsys):
    rc = main(["train", "debug=tiny", f"run_dir={tmp_path / 'x'}"])
    assert rc == 1 and "dataset.root is not set" in capsys.readouterr().err
    rc = main(["train", "debug=tiny", f"dataset.root={tmp_path / 'nope'}",
               f"run_dir={tmp_path / 'y'}"])  # fmt: skip
    assert rc == 1 and "sep_trainlist.txt" in capsys.readouterr().err
    with pytest.raises(InputError, match="no run with checkpoints"):
        _run(shared_data, tmp_path / "none" / "r", "experiment=image", "resume=true")
    run = _run(shared_data, tmp_path / "r", "experiment=image", "max_stage_steps=1")
    with pytest.raises(InputError, match="already holds a run"):
        _run(shared_data, run, "experiment=image")
    with pytest.raises(ModelMismatchError, match="holds a 'image' model"):
        _run(shared_data, run, "experiment=joint", "resume=true")


def test_resume_auto_starts_then_continues(shared_data, tmp_path):
    # The same command for every chunk: the first starts the run, the next one
    # continues it, and a neighbouring run is never picked up.
    _run(shared_data, tmp_path / "other", "experiment=image", "max_stage_steps=1")
    run = tmp_path / "a"
    args = ("experiment=image", "resume=auto")
    _run(shared_data, run, *args, "stop_after_steps=1")
    ckpt = run / "checkpoints" / "last.pth"
    assert load_checkpoint(ckpt)["extra"]["step"] == 1
    _run(shared_data, run, *args)
    assert load_checkpoint(ckpt)["extra"]["step"] == 3
    assert "resuming" in (run / "train.log").read_text()


@pytest.mark.slow
def test_two_process_ddp(shared_data, tmp_path):
    root = shared_data / "train" / "vimeo_septuplet"
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
        "-m", "dvc_ext", "train", "experiment=joint", "debug=tiny", "max_stage_steps=2",
        f"dataset.root={root}", f"run_dir={tmp_path / 'ddp'}",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    p = subprocess.run(
        cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert p.returncode == 0, p.stderr[-3000:]
    blob = load_checkpoint(tmp_path / "ddp" / "checkpoints" / "last.pth", "video")
    assert blob["meta"]["world_size"] == 2 and blob["extra"]["step"] == 2
    assert [r["step"] for r in _rows(tmp_path / "ddp")] == ["1", "2"]
    assert "x 2 process(es)" in (tmp_path / "ddp" / "train.log").read_text()


def test_precision_recorded_fallback_and_kept_on_resume(
    shared_data, tmp_path, monkeypatch
):
    from dvc_ext.training import precision

    if precision.bf16_supported(torch.device("cpu")):
        run = _run(shared_data, tmp_path / "bf16", "experiment=image")
        blob = load_checkpoint(run / "checkpoints" / "last.pth", "image")
        assert blob["meta"]["precision"] == "bf16"
        assert "precision bf16" in (run / "train.log").read_text()
    # A CPU without bf16 (simulated) falls back to fp32 and says so once.
    monkeypatch.setattr(precision, "bf16_supported", lambda device: False)
    run = _run(shared_data, tmp_path / "fallback", "experiment=image")
    log = (run / "train.log").read_text()
    assert log.count("no bf16 support") == 1 and "precision fp32" in log
    assert (
        load_checkpoint(run / "checkpoints" / "last.pth")["meta"]["precision"] == "fp32"
    )
    monkeypatch.undo()
    # resume keeps the run's precision, whatever the resuming command says.
    part = _run(shared_data, tmp_path / "r", "experiment=image", "precision=fp32",
                "stop_after_steps=1")  # fmt: skip
    _run(
        shared_data, tmp_path / "r", "experiment=image", "precision=bf16", "resume=true"
    )
    blob = load_checkpoint(part / "checkpoints" / "last.pth")
    assert blob["extra"]["step"] == 3 and blob["extra"]["precision"] == "fp32"
    with pytest.raises(InputError, match="precision must be"):
        _run(shared_data, tmp_path / "bad", "experiment=image", "precision=fp16")


def test_auto_threads_leaves_busy_cores_out(monkeypatch):
    from dvc_ext.training import loop

    monkeypatch.setattr(loop.os, "cpu_count", lambda: 8)
    for load, procs, want in ((0.1, 1, 8), (2.6, 1, 5), (30.0, 1, 1), (0.0, 2, 4),
                              (4.0, 2, 2), (7.0, 4, 1)):  # fmt: skip
        monkeypatch.setattr(loop.os, "getloadavg", lambda load=load: (load, 0, 0))
        assert loop.auto_threads(procs) == want, (load, procs)


def test_pred_weight_adds_the_prediction_term_only_to_the_optimised_loss(shared_data):
    """loss.pred_weight: + w * lambda * D(x_pred, cur) in the joint stage; logged loss unchanged."""
    from dvc_ext.losses import distortion
    from dvc_ext.training.model import PFrameStep

    model = _tiny_joint_model(shared_data)
    torch.manual_seed(0)
    frames = torch.rand(2, 2, 3, 64, 64)
    q = torch.tensor([0, 1])
    lam = torch.tensor([256.0, 512.0])
    outs = []
    for w in (0.0, 0.5):
        step = PFrameStep(model, pred_weight=w).eval()
        step.configure("joint", "raw", train_intra=False, train_flow=False)
        torch.manual_seed(1)
        with torch.no_grad():
            outs.append(step(frames, q, lam))
    plain, pulled = outs
    assert torch.allclose(plain["per_sample"]["loss"], pulled["per_sample"]["loss"])
    with torch.no_grad():
        v = model.pframe.estimate_flow(frames[:, 1], frames[:, 0])
        x_pred, _ = model.pframe._predict(
            frames[:, 0], model.pframe.motion_codec.eval()(v, quality=q)["x_hat"]
        )
    extra = (0.5 * lam * distortion(x_pred, frames[:, 1], "mse")).mean()
    assert float(pulled["loss"] - plain["loss"]) == pytest.approx(
        float(extra), rel=1e-4
    )
    with pytest.raises(InputError, match="pred_weight"):
        PFrameStep(model, pred_weight=-1.0)


def test_chained_pframes_code_each_frame_on_the_previous_reconstruction(shared_data):
    """chain: frame t is coded on frame t-1's reconstruction, the gradient runs
    through the chain, the loss is the mean over the P-frames."""
    from dvc_ext.training.model import PFrameStep

    model = _tiny_joint_model(shared_data)
    torch.manual_seed(0)
    frames = torch.rand(2, 3, 3, 64, 64)
    q, lam = torch.tensor([0, 1]), torch.tensor([256.0, 512.0])
    step = PFrameStep(model, pred_weight=0.1).eval()
    step.configure("joint", "raw", train_intra=False, train_flow=False)
    with torch.no_grad():
        chained = step(frames, q, lam)
        first, x1 = step._code(frames[:, 0], frames[:, 1], q, lam, 64 * 64)
        second, _ = step._code(x1.clamp(0, 1), frames[:, 2], q, lam, 64 * 64)
        on_raw, _ = step._code(frames[:, 1], frames[:, 2], q, lam, 64 * 64)
    want = (first["loss"] + second["loss"]) / 2
    assert torch.allclose(chained["per_sample"]["loss"], want, rtol=1e-5)
    assert float(chained["loss"]) == pytest.approx(
        float(((first["objective"] + second["objective"]) / 2).mean()), rel=1e-5
    )
    assert not torch.allclose(second["loss"], on_raw["loss"], rtol=1e-3)
    # Frame 0 reaches the second P-frame's loss only through the first
    # reconstruction: were the chain detached, its gradient would be the first
    # P-frame's alone.
    x = frames.clone().requires_grad_(True)
    g_chain = torch.autograd.grad(step(x, q, lam)["loss"], x)[0][:, 0]
    y = frames.clone().requires_grad_(True)
    first, _ = step._code(y[:, 0], y[:, 1], q, lam, 64 * 64)
    g_first = torch.autograd.grad(first["objective"].mean() / 2, y)[0][:, 0]
    assert g_first.abs().sum() > 0
    assert not torch.allclose(g_chain, g_first, rtol=1e-3, atol=1e-9)
    with pytest.raises(InputError, match="2 frames"):
        step(frames[:, :1], q, lam)


def test_chained_run_trains_on_chains_and_validates_on_pairs(shared_data, tmp_path):
    run = _run(shared_data, tmp_path / "run", "experiment=joint", "chain=2")
    assert [int(r["step"]) for r in _rows(run)] == [1, 2, 3]
    log = (run / "train.log").read_text()
    assert "3 frames per sample" in log
    assert len(_rows(run, "val")) == 4
    with pytest.raises(InputError, match="chain"):
        _run(shared_data, tmp_path / "bad", "experiment=joint", "chain=0")
