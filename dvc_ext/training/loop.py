"""The training loop behind ``dvc-ext train`` (single process or DDP).

Reproducibility contract (what ``resume=true`` relies on): everything random in
step ``s`` is a function of ``(seed, rank, s)`` or of the data position, never of
what ran before. The sampler draws epoch ``e``'s order from ``(seed, e)``; each
sample's crop, flips and reversal from its position; the quality indexes of a
batch and the global torch RNG (the codecs' quantisation noise) are re-seeded
from ``(seed, rank, s)`` at every step; the learning rate is a function of
``s``. A checkpoint then only needs the weights, the two optimizers' states and
``s``: a run resumed from step ``k`` computes, on the same machine and thread
count, bit-identical weights to one that never stopped (tested).
"""

from __future__ import annotations

import math
import os
import signal
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
import torch.nn as nn
from compressai.entropy_models import EntropyBottleneck
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from dvc_common import InputError, ModelMismatchError
from image_codecs import build_codec

from ..checkpoint import load_checkpoint, save_checkpoint
from ..data import ResumableSampler, build_datasets
from ..losses import lambda_ladder
from . import distributed as D
from .metrics import MetricsCSV, accumulate, reduce_means
from .model import (
    SWAPPABLE,
    ImageStep,
    PFrameStep,
    build_video,
    export_weights,
    image_config,
    load_weights,
    saved_image_config,
    saved_video_config,
    trainable_flow,
    video_config,
    video_modules,
    with_image_codec,
)
from .precision import autocast, resolve_precision
from .rundir import (
    CHECKPOINT,
    RunLog,
    find_resume_checkpoint,
    run_dir_of,
    show_progress,
    tensorboard_writer,
    write_text_atomic,
)
from .schedule import Stage, build_schedule, stage_at, total_steps

T = TypeVar("T")


def _mix(*parts: int) -> int:
    """A well-mixed 63-bit seed from integers."""
    return (
        int(
            np.random.SeedSequence([int(p) for p in parts]).generate_state(
                1, np.uint64
            )[0]
        )
        >> 1
    )


def auto_threads(processes: int = 1) -> int:
    """Threads per process for ``threads: null``: the idle cores, shared out.

    OpenMP threads wait for each other at every kernel, so one thread on a
    core another job holds stalls them all (measured: a 2-thread step 100x
    slower beside a busy core); the 1-minute load average counts the cores
    already taken.
    """
    cores = os.cpu_count() or 1
    try:
        busy = int(round(os.getloadavg()[0]))
    except OSError:  # no load average on this platform
        busy = 0
    return max(1, (cores - min(busy, cores - 1)) // max(1, processes))


def _ignore_stop_signals(worker_id: int) -> None:
    """DataLoader workers leave SIGINT / SIGTERM to the main process.

    ``kill`` of the whole process group (Ctrl-C, ``pkill -f``, a batch scheduler)
    reaches the workers too; a worker that dies of it makes PyTorch raise in the
    middle of the main process's step, before the stop checkpoint is written.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


class Trainer:
    """One training run; :meth:`fit` runs it and returns the run folder."""

    def __init__(self, cfg: Mapping[str, Any], info: D.DistInfo) -> None:
        self.info = info
        self.c = D.broadcast_object(info, cfg)
        c = self.c
        self.task = c.get("task", "pframe")
        if self.task not in ("pframe", "image"):
            raise InputError(f"task must be pframe or image, got {self.task!r}")
        self.device = info.device
        self.seed = int(c.get("seed", 0))
        self.batch_size = int(c.get("batch_size", 8))
        self._stop = False
        self._set_threads()

        ckpt_path, run_dir = D.on_main(info, self._locate_run)
        self.run_dir = Path(run_dir)
        self.blob = load_checkpoint(ckpt_path) if ckpt_path else None
        extra = (self.blob or {}).get("extra") if self.blob else None
        if self.blob is not None and not extra:
            raise InputError(
                f"{ckpt_path} holds no training state; it cannot be resumed"
            )
        self.start_step = int(extra["step"]) if extra else 0
        self.best_val = extra.get("best_val") if extra else None
        self.elapsed_before = float(extra.get("elapsed_s", 0.0)) if extra else 0.0
        self._pending_opt = extra
        # A resumed run keeps the precision it was started with (its steps so
        # far were taken under it); runs from before the setting were fp32.
        asked = c.get("precision", "bf16")
        if extra:
            asked = extra.get("precision", "fp32")
        self.precision, self._precision_note = resolve_precision(asked, self.device)
        if extra and str(c.get("precision", "bf16")) != self.precision:
            self._precision_note = (
                f"resuming in the run's precision {self.precision} "
                f"(precision={c.get('precision')} applies to new runs)"
            )

        torch.manual_seed(self.seed)
        self.model = self._build_model()
        self._refuse_classical()
        self.model.to(self.device)
        # channels_last: oneDNN's convolutions (fp32 and bf16) run in NHWC
        # without reordering every activation (measured: docs/training.md).
        self.channels_last = bool(c.get("channels_last", True))
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.num_qualities = int(getattr(self.model, "num_qualities", 1))
        loss = c.get("loss") or {}
        self.metric = loss.get("metric", "mse")
        self.lambdas = lambda_ladder(
            self.metric, self.num_qualities, loss.get("lambdas")
        )
        if self.task == "pframe":
            targets = tuple(loss.get("motion_targets") or ("warp", "pred"))
            self.step_module: nn.Module = PFrameStep(
                self.model, self.metric, targets, float(loss.get("pred_weight") or 0.0)
            )
        else:
            self.step_module = ImageStep(self.model, self.metric)
        if self.channels_last:
            self.step_module.memory_format = torch.channels_last
        self.step_module.train()
        self.schedule = build_schedule(
            c.get("stages") or {}, self.task, c.get("optim") or {},
            c.get("ref", "raw"), c.get("max_stage_steps"),
        )  # fmt: skip
        self.total = total_steps(self.schedule)
        self._build_data()
        self._prepare_run_dir()
        init = c.get("init") or {}
        if (
            self.task == "pframe"
            and self.blob is None
            and not init.get("video")
            and self.schedule[0].name != "motion"
        ):
            self.log(
                f"warning: the schedule starts with stage {self.schedule[0].name} "
                f"from untrained motion modules; give init.video=RUN/checkpoints/"
                f"motion.pth (or run experiment=dvc)"
            )

    # -- setup ----------------------------------------------------------------------
    def _set_threads(self) -> None:
        n = self.c.get("threads")
        if n is None and self.device.type == "cpu":
            n = auto_threads(self.info.local_world_size)
        if n:
            torch.set_num_threads(int(n))

    def _locate_run(self) -> tuple[str | None, str]:
        c = self.c
        run_dir = Path(
            str(c.get("run_dir") or f"runs/{c.get('name', 'train')}")
        ).expanduser()
        resume = c.get("resume", False)
        own = run_dir / "checkpoints" / CHECKPOINT
        if str(resume).lower() == "auto":
            # One command for every chunk of a campaign: the first starts the
            # run, the later ones continue it. Unlike resume=true it never
            # falls back to another run under the parent folder.
            return (str(own), str(run_dir)) if own.is_file() else (None, str(run_dir))
        if resume not in (False, None, "false", "False", ""):
            ckpt = find_resume_checkpoint(resume, run_dir, run_dir.parent)
            return str(ckpt), str(run_dir_of(ckpt))
        if own.exists():
            raise InputError(
                f"{run_dir} already holds a run; continue it with resume=true "
                f"(or resume=auto) or "
                f"choose another run_dir"
            )
        return None, str(run_dir)

    def _build_model(self) -> nn.Module:
        c, init = self.c, dict(self.c.get("init") or {})
        tiny = bool(c.get("tiny_codecs", False))
        q = int(c.get("num_qualities", 1))
        kind = "video" if self.task == "pframe" else "image"
        if self.blob is not None:
            if self.blob["kind"] != kind:
                raise ModelMismatchError(
                    f"the run to resume holds a {self.blob['kind']!r} model; "
                    f"task={self.task} trains a {kind!r} one"
                )
            config = self.blob["config"]
            src = self.blob
        elif init.get(kind):
            src = load_checkpoint(init[kind], kind)
            config = src["config"]
        else:
            src = None
            if kind == "video":
                config = video_config(c.get("codec") or {}, tiny)
            else:
                config = image_config(c.get("image_codec") or {}, q, tiny)
        if kind == "image":
            model = build_codec(**config)
            if src is not None:
                load_weights(model, src["state_dict"])
            return model
        # init.intra / init.residual: an RGB image checkpoint seeds the intra or the
        # residual codec (its config replaces that codec's), so a video run can
        # start its codecs from a model already trained on still images. Beside
        # init.video it swaps that codec and keeps the rest of the video model
        # (how the residual-codec comparison reuses one motion stage).
        seeds = []
        state = None if src is None else dict(src["state_dict"])
        for part in SWAPPABLE:
            if self.blob is not None or not init.get(part):
                continue
            blob = load_checkpoint(init[part], "image")
            config, state = with_image_codec(config, state, part, blob)
            seeds.append((part, blob))
        model = build_video(config)
        if src is None:
            for part, blob in seeds:
                codec = model.intra if part == "intra" else model.pframe.residual_codec
                load_weights(codec, blob["state_dict"])
            return model
        # Beside init.video the whole model (with its seeded codecs) loads, and is
        # checked for missing keys, at once.
        load_weights(model, state)
        return model

    def _refuse_classical(self) -> None:
        """A classical codec (x265-intra, jpeg, webp) has nothing to learn: it may
        only be the fixed intra codec of a P-frame run."""
        m = self.model
        if self.task == "image":
            parts = {"image codec": m}
        else:
            parts = {"motion codec": m.pframe.motion_codec,
                     "residual codec": m.pframe.residual_codec}  # fmt: skip
            if self.c.get("train_intra", False):
                parts["intra codec"] = m.intra
        for what, codec in parts.items():
            if not getattr(codec, "learned", True):
                hint = (
                    " (as a P-frame run's intra codec it serves with train_intra=false)"
                    if what in ("intra codec", "image codec")
                    else ""
                )
                raise InputError(
                    f"the {what} {codec.registry_name!r} is a classical codec with "
                    f"no weights: it cannot be trained{hint}"
                )

    def _build_data(self) -> None:
        c = self.c
        multiple = (
            getattr(self.model, "multiple", None) or self.model.downsampling_factor
        )
        chain = c.get("chain", 1)
        if not isinstance(chain, int) or isinstance(chain, bool) or chain < 1:
            raise InputError(f"chain must be an integer >= 1, got {chain!r}")
        if chain > 1 and self.task != "pframe":
            raise InputError(f"chain={chain} is for task=pframe (P-frames in a row)")
        fps = 1 + chain if self.task == "pframe" else 1
        validate = bool(c.get("validate", True))
        # Validation stays on pairs whatever the chain: its loss is comparable
        # across runs (docs/training.md, "Chained P-frames").
        val_fps = 2 if self.task == "pframe" else 1
        self.train_set, self.val_set = D.main_first(
            self.info,
            lambda: build_datasets(
                c.get("dataset") or {}, fps, multiple, validate, val_fps
            ),
        )
        self.sampler = ResumableSampler(
            len(self.train_set),
            self.batch_size,
            self.seed,
            self.info.rank,
            self.info.world_size,
        )
        workers = int(c.get("num_workers", 0))
        self.loader = DataLoader(
            self.train_set,
            batch_size=self.batch_size,
            sampler=self.sampler,
            num_workers=workers,
            pin_memory=self.device.type == "cuda",
            persistent_workers=workers > 0,
            worker_init_fn=_ignore_stop_signals if workers > 0 else None,
        )
        self.val_loader = None
        if self.val_set is not None:
            vb = int(c.get("val_batch_size", 4)) if self.val_set.val_crop else 1
            self.val_loader = DataLoader(self.val_set, batch_size=vb, shuffle=False)

    def _prepare_run_dir(self) -> None:
        from omegaconf import OmegaConf

        info = self.info
        resumed = self.blob is not None
        if info.main:
            (self.run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
            name = f"config_resume_{self.start_step}.yaml" if resumed else "config.yaml"
            write_text_atomic(
                self.run_dir / name, OmegaConf.to_yaml(OmegaConf.create(self.c))
            )
        D.barrier(info)
        self.log = RunLog(self.run_dir / "train.log" if info.main else None, info.main)
        self.csv = (
            MetricsCSV(
                self.run_dir / "metrics.csv", self.start_step if resumed else None
            )
            if info.main
            else None
        )
        self.tb = (
            tensorboard_writer(self.c.get("tensorboard", "auto"), self.run_dir / "tb")
            if info.main
            else None
        )
        n_params = sum(p.numel() for p in self.model.parameters())
        self.log(
            f"{'resuming' if resumed else 'starting'} {self.task} run in {self.run_dir} at step "
            f"{self.start_step}/{self.total}; {n_params / 1e6:.2f} M parameters; device "
            f"{self.device} x {info.world_size} process(es); {torch.get_num_threads()} threads; "
            f"precision {self.precision}{', channels_last' if self.channels_last else ''}"
        )
        if self._precision_note:
            self.log(self._precision_note)
        self.log(
            f"data: train {self.train_set.describe()}, val "
            f"{self.val_set.describe() if self.val_set is not None else 'none'}; batch "
            f"{self.batch_size} per process, crop {self.train_set.crop}, "
            f"{self.train_set.frames_per_sample} frames per sample, "
            f"{self.sampler.batches_per_epoch} steps per epoch"
        )
        self.log(
            f"objective: lambda * {self.metric} + bpp, lambdas {self.lambdas}; stages "
            + ", ".join(
                f"{s.name} {s.steps} steps (lr {s.lr:g}, freeze {s.freeze or '-'}, "
                f"ref {s.ref})"
                for s in self.schedule
            )  # fmt: skip
        )

    # -- stages ---------------------------------------------------------------------
    def _setup_stage(self, stage: Stage) -> None:
        c, optim = self.c, self.c.get("optim") or {}
        if self.task == "pframe":
            mods = video_modules(self.model)
            train = {name: True for name in mods}
            train["intra"] = bool(c.get("train_intra", False))
            if stage.name == "motion":
                train["residual_codec"] = False
                if "pred" not in self.step_module.motion_targets:
                    train["mc_net"] = False
            for name in stage.freeze:
                train[name] = False
            for name, mod in mods.items():
                if mod is not None:
                    mod.requires_grad_(bool(train[name]))
            self.step_module.configure(
                stage.name,
                stage.ref,
                train["intra"],
                train["flow"] and trainable_flow(self.model),
            )
        else:
            self.model.requires_grad_(True)
        named = [
            (n, p) for n, p in self.step_module.named_parameters() if p.requires_grad
        ]
        self.main_params = [p for n, p in named if not n.endswith("quantiles")]
        self.aux_params = [p for n, p in named if n.endswith("quantiles")]
        if not self.main_params:
            raise InputError(
                f"stage {stage.name}: every module is frozen, nothing to train"
            )
        betas = tuple(optim.get("betas", (0.9, 0.999)))
        self.opt = torch.optim.Adam(
            self.main_params,
            lr=stage.lr,
            betas=betas,
            weight_decay=float(optim.get("weight_decay", 0.0)),
        )
        self.aux_opt = (
            torch.optim.Adam(self.aux_params, lr=float(optim.get("aux_lr", 1e-3)))
            if self.aux_params else None
        )  # fmt: skip
        self.bottlenecks = [
            m for m in self.step_module.modules()
            if isinstance(m, EntropyBottleneck) and m.quantiles.requires_grad
        ]  # fmt: skip
        pending = self._pending_opt
        if pending is not None and pending.get("stage") == stage.name:
            try:
                self.opt.load_state_dict(pending["optimizer"])
                if self.aux_opt is not None and pending.get("aux_optimizer"):
                    self.aux_opt.load_state_dict(pending["aux_optimizer"])
            except (ValueError, KeyError) as e:
                raise ModelMismatchError(
                    f"the checkpoint's optimizer state does not fit stage {stage.name} "
                    f"(were its frozen modules changed?): {e}"
                ) from None
        self._pending_opt = None
        self.ddp = self.step_module
        if self.info.distributed:
            ignore = [
                n
                for n, _ in self.step_module.named_parameters()
                if n.endswith("quantiles")
            ]
            DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(
                self.step_module, ignore
            )
            self.ddp = DistributedDataParallel(
                self.step_module,
                device_ids=[self.device.index] if self.device.type == "cuda" else None,
                broadcast_buffers=False,
            )
        n_train = sum(p.numel() for p in self.main_params)
        self.log(
            f"stage {stage.name}: steps {stage.start}..{stage.end}, {n_train / 1e6:.2f} M trained parameters"
        )

    # -- one step -------------------------------------------------------------------
    def _qualities(
        self, step: int, batch: int
    ) -> tuple[torch.Tensor | None, torch.Tensor]:
        if self.num_qualities == 1:
            return None, torch.full((batch,), self.lambdas[0], device=self.device)
        g = torch.Generator().manual_seed(_mix(self.seed, self.info.rank, step, 1))
        q = torch.randint(0, self.num_qualities, (batch,), generator=g)
        lam = torch.tensor(self.lambdas, dtype=torch.float32)[q]
        return q.to(self.device), lam.to(self.device)

    def _train_step(
        self, frames: torch.Tensor, step: int
    ) -> tuple[dict, torch.Tensor, bool]:
        torch.manual_seed(_mix(self.seed, self.info.rank, step))
        q, lam = self._qualities(step, frames.shape[0])
        # Only the forward runs under autocast; backward follows its dtypes.
        with autocast(self.precision, self.device):
            out = self.ddp(frames, q, lam)
        bad = D.any_rank(self.info, not bool(torch.isfinite(out["loss"]).item()))
        self.opt.zero_grad(set_to_none=True)
        aux = torch.zeros((), device=self.device)
        if bad:
            return out["per_sample"], aux, False
        out["loss"].backward()
        clip = (self.c.get("optim") or {}).get("clip_grad", 1.0)
        if clip:
            torch.nn.utils.clip_grad_norm_(self.main_params, float(clip))
        self.opt.step()
        if self.aux_opt is not None:
            self.aux_opt.zero_grad(set_to_none=True)
            aux = torch.stack([m.loss().reshape(()) for m in self.bottlenecks]).sum()
            aux.backward()
            if self.info.distributed:
                for p in self.aux_params:
                    if p.grad is not None:
                        D.all_reduce_sum(self.info, p.grad).div_(self.info.world_size)
            self.aux_opt.step()
        return out["per_sample"], aux.detach(), True

    # -- data -----------------------------------------------------------------------
    def _batches(self, step: int) -> Iterator[tuple[int, dict]]:
        bpe = self.sampler.batches_per_epoch
        epoch, first = divmod(step, bpe)
        while True:
            self.sampler.set_epoch(epoch, first)
            for batch in self.loader:
                yield epoch, batch
            epoch, first = epoch + 1, 0

    def _to_frames(self, batch: dict) -> torch.Tensor:
        return batch["frames"].to(self.device, non_blocking=True).float().div_(255.0)

    # -- metrics --------------------------------------------------------------------
    def _emit(self, row: dict, split: str) -> None:
        if self.csv is not None:
            self.csv.write(row)
        if self.tb is not None:
            q = row.get("quality")
            tag = f"{split}" if q in (None, "all") else f"{split}_q{q}"
            for k, v in row.items():
                if isinstance(v, float) and k not in ("lambda", "elapsed_s"):
                    self.tb.add_scalar(f"{tag}/{k}", v, row["step"])

    # -- validation -----------------------------------------------------------------
    def _validate(self, step: int, epoch: int, stage: Stage) -> float | None:
        if self.val_loader is None:
            return None
        mean_loss = None
        if self.info.main:
            acc: dict = {}
            self.step_module.eval()
            with torch.no_grad():
                for batch in self.val_loader:
                    frames = self._to_frames(batch)
                    b = frames.shape[0]
                    for qi in range(self.num_qualities):
                        q = (
                            torch.full((b,), qi, device=self.device)
                            if self.num_qualities > 1
                            else None
                        )
                        lam = torch.full((b,), self.lambdas[qi], device=self.device)
                        accumulate(
                            acc, self.step_module(frames, q, lam)["per_sample"], qi
                        )
            self.step_module.train()
            means = {k: float(v[0] / v[1]) for k, v in acc.items()}
            parts, losses = [], []
            for qi in range(self.num_qualities):
                row = {"step": step, "epoch": epoch, "stage": stage.name, "split": "val",
                       "quality": qi, "lambda": self.lambdas[qi]}  # fmt: skip
                row.update({k: v for (k, g), v in means.items() if g == qi})
                self._emit(row, "val")
                losses.append(row["loss"])
                parts.append(f"q{qi} {row['bpp']:.3f} bpp {row['psnr']:.2f} dB")
            mean_loss = sum(losses) / len(losses)
            self.log(f"val step {step}: loss {mean_loss:.4f}; " + ", ".join(parts))
        return D.broadcast_object(self.info, mean_loss)

    # -- checkpoints ----------------------------------------------------------------
    def _save(
        self, step: int, stage: Stage, epoch: int, also: tuple[str, ...] = ()
    ) -> None:
        from omegaconf import OmegaConf

        if self.info.main:
            weights = export_weights(self.model)
            if self.task == "pframe":
                kind, config = "video", saved_video_config(self.model)
            else:
                kind, config = "image", saved_image_config(self.model)
            ds = self.c.get("dataset") or {}
            meta = {
                "task": self.task, "name": self.c.get("name"), "step": step,
                "stage": stage.name, "epoch": epoch, "metric": self.metric,
                "lambdas": self.lambdas, "dataset": {"name": ds.get("name"), "root": str(ds.get("root"))},
                "batch_size": self.batch_size, "world_size": self.info.world_size,
                "device": str(self.device), "train_seconds": round(self._elapsed(), 1),
                "precision": self.precision,
                "torch": str(torch.__version__),
                "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
            }  # fmt: skip
            extra = {
                "step": step, "stage": stage.name, "optimizer": self.opt.state_dict(),
                "aux_optimizer": self.aux_opt.state_dict() if self.aux_opt is not None else None,
                "best_val": self.best_val, "elapsed_s": self._elapsed(),
                "precision": self.precision,
                "train_config": OmegaConf.to_yaml(OmegaConf.create(self.c)),
            }  # fmt: skip
            ckpt = self.run_dir / "checkpoints"
            save_checkpoint(ckpt / CHECKPOINT, kind, config, weights, meta, extra)
            for name in also:
                save_checkpoint(ckpt / f"{name}.pth", kind, config, weights, meta)
        D.barrier(self.info)

    def _elapsed(self) -> float:
        return self.elapsed_before + (time.time() - self._t_start)

    # -- signals --------------------------------------------------------------------
    def _install_signals(self) -> dict:
        if threading.current_thread() is not threading.main_thread():
            return {}

        def handler(signum, frame):
            if self._stop:
                raise KeyboardInterrupt
            self._stop = True
            self.log(f"signal {signum}: stopping after this step (again to abort)")

        old = {}
        for sig in (signal.SIGINT, signal.SIGTERM):
            old[sig] = signal.signal(sig, handler)
        return old

    # -- the loop -------------------------------------------------------------------
    def fit(self) -> Path:
        from tqdm import tqdm

        c = self.c
        self._t_start = time.time()
        step = self.start_step
        if step >= self.total:
            self.log(
                f"nothing to do: step {step} >= {self.total} steps of the schedule"
            )
            return self.run_dir
        log_every = max(1, int(c.get("log_every", 10)))
        val_every = int(c.get("val_every", 0) or 0)
        save_every = int(c.get("save_every", 0) or 0)
        stop_after = c.get("stop_after_steps")
        time_limit = c.get("time_limit")
        bar = tqdm(total=self.total, initial=step, dynamic_ncols=True,
                   disable=not (self.info.main and show_progress(c.get("progress", "auto"))))  # fmt: skip
        self.log.bar = None if bar.disable else bar
        old_handlers = self._install_signals()
        data = self._batches(step)
        stage: Stage | None = None
        acc: dict = {}
        aux_sum, n_interval, skipped, busy = 0.0, 0, 0, 0.0
        epoch = step // self.sampler.batches_per_epoch
        try:
            while step < self.total:
                s = stage_at(self.schedule, step)
                if s is not stage:
                    stage = s
                    self._setup_stage(stage)
                    bar.set_description(stage.name)
                lr = stage.lr_at(step)
                for g in self.opt.param_groups:
                    g["lr"] = lr
                t0 = time.time()
                try:
                    epoch, batch = next(data)
                except Exception:
                    if self._stop:  # a worker got the same signal and quit
                        break
                    raise
                per_sample, aux, ok = self._train_step(self._to_frames(batch), step)
                busy += time.time() - t0
                step += 1
                bar.update(1)
                if ok:
                    accumulate(acc, per_sample)
                    aux_sum += float(aux)
                    n_interval += 1
                    skipped = 0
                else:
                    skipped += 1
                    self.log(f"step {step}: non-finite loss, step skipped")
                    if skipped >= 10:
                        raise RuntimeError(
                            "10 steps in a row had a non-finite loss; lower optim.lr"
                        )
                at_end = step == stage.end
                if step % log_every == 0 or at_end:
                    means = reduce_means(self.info, acc)
                    row = {"step": step, "epoch": epoch, "stage": stage.name, "split": "train",
                           "quality": "all", **{k: v for (k, _), v in means.items()},
                           "aux_loss": aux_sum / max(1, n_interval), "lr": lr,
                           "sec_per_step": busy / max(1, n_interval),
                           "elapsed_s": self._elapsed()}  # fmt: skip
                    self._emit(row, "train")
                    if means:
                        bar.set_postfix(loss=f"{row['loss']:.3f}", bpp=f"{row['bpp']:.3f}",
                                        psnr=f"{row['psnr']:.2f}")  # fmt: skip
                        if bar.disable:
                            self.log(
                                f"step {step} {stage.name}: loss {row['loss']:.4f} bpp "
                                f"{row['bpp']:.4f} psnr {row['psnr']:.2f} dB lr {lr:.2e} "
                                f"{row['sec_per_step']:.3f} s/step"
                            )
                    acc, aux_sum, n_interval, busy = {}, 0.0, 0, 0.0
                ran = step - self.start_step
                stop = self._stop or (stop_after is not None and ran >= int(stop_after))
                stop = stop or (
                    time_limit is not None
                    and time.time() - self._t_start >= float(time_limit)
                )
                stop = D.any_rank(self.info, stop)
                also: tuple[str, ...] = ()
                if at_end or (val_every and step % val_every == 0):
                    val = self._validate(step, epoch, stage)
                    if (
                        val is not None
                        and stage is self.schedule[-1]
                        and math.isfinite(val)
                        and (self.best_val is None or val < self.best_val)
                    ):
                        self.best_val = val
                        also += ("best",)
                if at_end:
                    also += (stage.name,)
                if (
                    also
                    or stop
                    or step == self.total
                    or (save_every and step % save_every == 0)
                ):
                    self._save(step, stage, epoch, also)
                if stop:
                    self.log(f"stopped at step {step}; continue with resume=true")
                    break
            D.check_in_sync(self.info, self.model)
        finally:
            for sig, h in old_handlers.items():
                signal.signal(sig, h)
            bar.close()
            self.log.bar = None
            if self.tb is not None:
                self.tb.close()
        self.log(f"done at step {step}: {self.run_dir / 'checkpoints' / CHECKPOINT} "
                 f"({self._elapsed():.0f} s of training in this run folder)")  # fmt: skip
        return self.run_dir


def run(cfg: Any) -> Path:
    """Train as ``cfg`` (the composed ``train`` config) says; return the run folder."""
    from omegaconf import DictConfig, OmegaConf

    if not OmegaConf.has_resolver("now"):
        OmegaConf.register_new_resolver(
            "now", lambda pattern: time.strftime(pattern), use_cache=True
        )
    if not isinstance(cfg, DictConfig):
        cfg = OmegaConf.create(dict(cfg))
    device = cfg.get("device", "auto")
    info = D.init_distributed(str(device))
    try:
        plain = OmegaConf.to_container(cfg, resolve=True) if info.main else None
        return Trainer(plain, info).fit()
    finally:
        D.cleanup(info)
