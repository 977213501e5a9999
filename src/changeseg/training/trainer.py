"""Run a training recipe with Lightning: `train(recipe) -> <run>/best`.

A run folder holds::

    recipe.yaml                 the resolved recipe (what was actually run)
    checkpoints/last.ckpt       the newest training state (model, optimiser, scheduler,
                                loop counters, data position, RNG states), for --resume
    checkpoints/stepNNNNNNN.ckpt  periodic states (the newest `keep_checkpoints` are kept)
    checkpoints/best-*.ckpt     the state with the best validation metric
    logs/csv/version_N/metrics.csv, logs/tensorboard/version_N/   one version per attempt
    best/                       the exported best model: model.safetensors + config.json
    last/                       the exported final model (optional)
    summary.json                split, metrics, timings and machine of the run

Every checkpoint file is written to a temporary file in the same folder, flushed to disk
and renamed over the target, so a run killed at any moment leaves either the previous or
the new checkpoint, never a truncated one. (Lightning's own writer goes through the system
temporary folder and a move that may be a copy across file systems.)

CPU, one GPU, several GPUs and several nodes all go through Lightning's accelerator and
strategy settings (`trainer.accelerator`, `devices`, `num_nodes`, `strategy: ddp`);
launch one process per GPU with `torchrun` or SLURM `srun` (see docs/training.md), or let
Lightning start the processes of one machine itself.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import platform
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.fabric.utilities.rank_zero import rank_zero_only
from lightning.pytorch.callbacks import Callback, LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger
from lightning.pytorch.plugins.io import TorchCheckpointIO

from changeseg import __version__
from changeseg.errors import CheckpointError, ConfigError
from changeseg.hardware import cpu_model, cpu_supports_bf16
from changeseg.io.checkpoints import CheckpointConfig, read_config, save_checkpoint
from changeseg.io.images import atomic_write, write_json
from changeseg.swap_symmetry import is_swap_symmetric
from changeseg.training.datamodule import ChangeDataModule
from changeseg.training.losses import resolve_class_weights
from changeseg.training.module import INFO_KEY, ChangeSegTask
from changeseg.training.recipe import Recipe, dump_recipe

CHECKPOINT_DIR = "checkpoints"
LAST_CHECKPOINT = "last.ckpt"
# Lightning's lines that tell a changeseg user nothing about their run: an advertisement and the
# TPU count, logged at INFO on its rank-zero logger.
LIGHTNING_CHATTER = ("💡 Tip:", "TPU available:")
# Warnings a run would print that the user cannot act on: torch deprecating a class Lightning's own
# pytree helper still builds; the model summary's size estimate, which knows no bf16-mixed (the
# shipped recipes' precision); and, when resuming, the run's own checkpoint folder being non-empty.
LIGHTNING_WARNINGS = (r"`isinstance\(treespec, LeafSpec\)` is deprecated",
                      r"Precision [\w-]+ is not supported by the model summary")
RESUME_WARNING = r"Checkpoint directory .* exists and is not empty"


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoint writer that never leaves a partial file behind.

    The checkpoint is serialised into a temporary file next to the target, flushed and
    fsync'ed, then renamed onto the target (`os.replace`, atomic on POSIX and Windows).
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | os.PathLike,
                        storage_options: Any | None = None) -> None:
        """Write `checkpoint` to `path` atomically."""
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO does not take storage_options")

        def write(tmp: Path) -> None:
            with open(tmp, "wb") as handle:
                torch.save(checkpoint, handle)
                handle.flush()
                os.fsync(handle.fileno())

        atomic_write(path, write)


def is_rank_zero() -> bool:
    """Whether this process is global rank 0 (from the launcher's environment)."""
    return int(getattr(rank_zero_only, "rank", 0) or 0) == 0


def resolve_model_config(recipe: Recipe) -> dict[str, Any]:
    """The model options of a run: the recipe's, or those of `model.init_from` updated by them."""
    from changeseg.models import ModelConfig

    section = recipe.model
    if section.init_from:
        if section.preset:
            raise ConfigError("model.preset and model.init_from exclude each other: the "
                              "architecture comes from the initial checkpoint")
        try:
            values = dict(read_config(section.init_from).model)
        except CheckpointError as exc:
            raise ConfigError(f"model.init_from: {exc}") from None
        values.update(section.options)
        return ModelConfig.from_dict(values).to_dict()
    return section.model_config()


def machine_info() -> dict[str, Any]:
    """Where a run happened: host, OS, Python/torch/Lightning versions, accelerators."""
    info: dict[str, Any] = {
        "host": platform.node(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "lightning": pl.__version__,
        "changeseg": __version__,
        "cpu": cpu_model(),
        "cpu_bf16": cpu_supports_bf16(),
        "cpu_count": os.cpu_count(),
    }
    if torch.cuda.is_available():
        info["cuda_devices"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return info


def training_precision(precision: str, accelerator: str) -> tuple[str, str | None]:
    """The precision a run trains in, and a notice when it is not the recipe's.

    bf16 on a CPU without native bf16 arithmetic (AVX512-BF16 or AMX; e.g. an AVX2-only
    AMD EPYC) is emulated, tens of times slower than fp32 (docs/training.md), so a recipe's
    `bf16-mixed` trains there in `32-true`. GPUs and bf16-capable CPUs get what the recipe says.
    """
    on_cpu = accelerator == "cpu" or (accelerator == "auto" and not torch.cuda.is_available())
    if on_cpu and str(precision).startswith("bf16") and not cpu_supports_bf16():
        return "32-true", (f"trainer.precision {precision}: this CPU ({cpu_model()}) has no native "
                           "bf16 arithmetic, where bf16 is many times slower than fp32; training "
                           "in 32-true")
    return precision, None


def _loggers(run_dir: Path) -> list[Logger]:
    loggers: list[Logger] = [CSVLogger(save_dir=str(run_dir / "logs"), name="csv")]
    with contextlib.suppress(ModuleNotFoundError):  # no tensorboard(X) installed: CSV only
        loggers.append(TensorBoardLogger(save_dir=str(run_dir / "logs"), name="tensorboard",
                                         default_hp_metric=False))
    return loggers


def resume_checkpoint(run_dir: Path) -> Path | None:
    """The newest resumable state of a run: `checkpoints/last.ckpt`, or a newer checkpoint
    Lightning saved when SLURM pre-empted the job (`hpc_ckpt_N.ckpt`); None if there is none."""
    candidates = [p for p in [run_dir / CHECKPOINT_DIR / LAST_CHECKPOINT,
                              *run_dir.glob("hpc_ckpt_*.ckpt")] if p.is_file()]
    return max(candidates, key=lambda p: p.stat().st_mtime) if candidates else None


def _check_run_dir(run_dir: Path, resume: bool | str) -> Path | None:
    last = run_dir / CHECKPOINT_DIR / LAST_CHECKPOINT
    if resume == "auto":
        return resume_checkpoint(run_dir)
    if resume:
        found = resume_checkpoint(run_dir)
        if found is None:
            raise ConfigError(f"nothing to resume: {last} does not exist")
        return found
    if last.exists() and is_rank_zero():
        raise ConfigError(f"run folder {run_dir} already holds checkpoints; pass --resume to "
                          f"continue it or choose another output folder")
    return None


class EpochEndState(Callback):
    """Writes the full training state to `path` (last.ckpt) at the end of every training epoch.

    The periodic checkpoint saves only every n steps, so without this the final epoch's last
    steps (a step count that is not a multiple of n) would never reach last.ckpt and `last/`.
    Saved at the epoch's end rather than after `fit`, the checkpoint's epoch is the finished
    epoch's own and resuming from it starts the next one.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Save the state (on every rank: Lightning's save gathers and writes on rank 0)."""
        trainer.save_checkpoint(self.path, weights_only=False)  # explicit: Lightning logs its default


class _DropChatter(logging.Filter):
    """Drops the log records that start with one of LIGHTNING_CHATTER."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(LIGHTNING_CHATTER)


_CHATTER_FILTER = _DropChatter()


def quiet_lightning() -> None:
    """Keep Lightning's advertisement and TPU line out of a run's output (idempotent). Importing
    `lightning.pytorch` points Fabric's rank-zero messages at this same logger."""
    logger = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    if _CHATTER_FILTER not in logger.filters:
        logger.addFilter(_CHATTER_FILTER)


def build_trainer(recipe: Recipe, run_dir: Path, has_val: bool,
                  callbacks: Sequence[Callback] = (), progress_bar: bool | None = None
                  ) -> tuple[pl.Trainer, ModelCheckpoint | None]:
    """The Lightning Trainer of a recipe, and its best-on-validation checkpoint callback."""
    t = recipe.trainer
    quiet_lightning()
    precision, notice = training_precision(t.precision, t.accelerator)
    if notice and is_rank_zero():
        print(notice, file=sys.stderr, flush=True)
    ckpt_dir = run_dir / CHECKPOINT_DIR
    keep = max(int(t.keep_checkpoints), 1)
    periodic = ModelCheckpoint(
        dirpath=str(ckpt_dir), filename="step{step:07d}", auto_insert_metric_name=False,
        every_n_train_steps=t.checkpoint_every_n_steps, save_last=True, save_top_k=keep,
        monitor="step", mode="max")
    all_callbacks: list[Callback] = [periodic, EpochEndState(ckpt_dir / LAST_CHECKPOINT),
                                     LearningRateMonitor(logging_interval="step")]
    best: ModelCheckpoint | None = None
    if has_val:
        best = ModelCheckpoint(
            dirpath=str(ckpt_dir), filename="best-epoch{epoch:03d}-step{step:07d}",
            auto_insert_metric_name=False, monitor=t.monitor, mode=t.monitor_mode, save_top_k=1,
            save_last=False)
        all_callbacks.append(best)
    all_callbacks.extend(callbacks)
    validation: dict[str, Any] = {}
    if not has_val:
        validation["limit_val_batches"] = 0
    else:
        if t.limit_val_batches is not None:
            validation["limit_val_batches"] = t.limit_val_batches
        if t.val_check_interval is not None:
            validation["val_check_interval"] = t.val_check_interval
            if isinstance(t.val_check_interval, int):
                validation["check_val_every_n_epoch"] = None
        if "check_val_every_n_epoch" not in validation:
            validation["check_val_every_n_epoch"] = t.val_every_n_epochs
    trainer = pl.Trainer(
        accelerator=t.accelerator, devices=t.devices, num_nodes=t.num_nodes, strategy=t.strategy,
        precision=precision,
        max_epochs=t.stop_after_epochs if t.stop_after_epochs is not None else t.max_epochs,
        max_steps=t.max_steps, max_time=t.max_time,
        callbacks=all_callbacks, logger=_loggers(run_dir), default_root_dir=str(run_dir),
        plugins=[AtomicCheckpointIO()], use_distributed_sampler=False,
        log_every_n_steps=t.log_every_n_steps, gradient_clip_val=t.gradient_clip_val,
        accumulate_grad_batches=t.accumulate_grad_batches, deterministic=t.deterministic,
        benchmark=t.benchmark, sync_batchnorm=t.sync_batchnorm, num_sanity_val_steps=0,
        enable_progress_bar=t.progress_bar if progress_bar is None else progress_bar,
        enable_model_summary=is_rank_zero(), **validation)
    return trainer, best


def train(recipe: Recipe, *, resume: bool | str = False, callbacks: Sequence[Callback] = (),
          progress_bar: bool | None = None) -> Path:
    """Train a change model as `recipe` says; returns the exported best model folder.

    With `resume=True`, continues from `<run>/checkpoints/last.ckpt` with the optimiser,
    scheduler, loop counters, data position and random states saved there (an error if
    there is none); `resume="auto"` resumes when there is a checkpoint and starts afresh
    otherwise (for jobs that are re-queued with the same command). Every process
    of a distributed run calls this; only global rank 0 writes the exported models.
    Raises ConfigError for an unusable recipe or run folder.
    """
    started = time.time()
    run_dir = recipe.run_dir()
    ckpt_path = _check_run_dir(run_dir, resume)
    pl.seed_everything(recipe.seed, workers=True, verbose=False)
    model_config = resolve_model_config(recipe)
    if recipe.data.labels == "typed" and is_swap_symmetric(
            model_config["branches"], model_config["fusion"], model_config["share_ad"]):
        raise ConfigError("typed labels need a network that can tell appear from disappear, but "
                          f"branches {model_config['branches']!r} with a shared a/d conv and sum "
                          "fusion give the same output for (A, B) and (B, A): set "
                          "model.share_ad=false (a shared-conv init_from fills both convs)")
    data = ChangeDataModule(recipe.data, seed=recipe.seed, in_channels=model_config["in_channels"],
                            num_classes=model_config["num_classes"])
    data.setup("fit")
    counts = None
    if (isinstance(recipe.loss.class_weights, str)
            and recipe.loss.class_weights.strip().lower() in ("auto", "binary")):
        counts = data.class_pixel_counts()
    class_weights = resolve_class_weights(recipe.loss, model_config["num_classes"], counts)
    optim = {k: v for k, v in vars(recipe.optim).items()}
    task = ChangeSegTask(model=model_config, loss=recipe.loss.to_dict(), optim=optim,
                         class_weights=class_weights,
                         pretrained=None if recipe.model.init_from else recipe.model.pretrained,
                         init_from=recipe.model.init_from, threshold=recipe.output.threshold)
    if is_rank_zero():
        run_dir.mkdir(parents=True, exist_ok=True)
        dump_recipe(recipe, run_dir / "recipe.yaml")
    trainer, best = build_trainer(recipe, run_dir, data.val_set is not None, callbacks, progress_bar)
    task.total_steps = total_steps(recipe, data.train_batches_per_epoch(trainer.world_size))
    with warnings.catch_warnings():
        for message in LIGHTNING_WARNINGS:
            warnings.filterwarnings("ignore", message=message)
        if ckpt_path:
            warnings.filterwarnings("ignore", message=RESUME_WARNING)
        if recipe.optim.freeze_bn:  # the backbone's BatchNorm layers are in eval mode on purpose
            warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode")
        trainer.fit(task, datamodule=data, ckpt_path=str(ckpt_path) if ckpt_path else None)
    best_dir = run_dir / "best"
    if trainer.is_global_zero and not trainer.interrupted:
        context = {
            "recipe": recipe, "model_config": model_config, "split": data.split_info(),
            "class_weights": class_weights,
            "class_pixel_counts": [int(c) for c in counts] if counts is not None else None,
            "started": started, "world_size": trainer.world_size, "init": task.init_report,
            "precision": str(trainer.precision),
        }
        export_run(run_dir, best, context)
    return best_dir


def total_steps(recipe: Recipe, batches_per_epoch: int) -> int:
    """Optimiser steps of a whole run (for the learning-rate schedule)."""
    t = recipe.trainer
    per_epoch = math.ceil(batches_per_epoch / max(t.accumulate_grad_batches, 1))
    by_epochs = per_epoch * t.max_epochs if t.max_epochs is not None and t.max_epochs > 0 else None
    candidates = [n for n in (by_epochs, t.max_steps if t.max_steps > 0 else None) if n is not None]
    if not candidates:
        raise ConfigError("set trainer.max_epochs or trainer.max_steps")
    return max(min(candidates), 1)


def _read_lightning_checkpoint(path: Path) -> dict[str, Any]:
    return torch.load(str(path), map_location="cpu", weights_only=False)


def _model_state(checkpoint: dict[str, Any]) -> dict[str, torch.Tensor]:
    return {k[len("model."):]: v for k, v in checkpoint["state_dict"].items() if k.startswith("model.")}


def export_checkpoint(checkpoint: str | os.PathLike, like: str | os.PathLike, out: str | os.PathLike) -> Path:
    """Export one Lightning checkpoint of a run (e.g. a periodic `step*.ckpt`) as a model folder.

    For choosing among a run's checkpoints by a measure the trainer did not monitor (a box
    F-score, say; `tools/export_checkpoints.py`). The configuration is that of `like`, a model
    folder the run exported (`<run>/best` or `<run>/last`), with the checkpoint's file, epoch and
    step recorded in `metadata.training` (its `val_metrics` dropped: they belong to `like`).
    """
    config = read_config(like)
    state = _read_lightning_checkpoint(Path(checkpoint))
    training = {key: value for key, value in dict(config.metadata.get("training") or {}).items()
                if key != "val_metrics"}
    training.update({"checkpoint": str(checkpoint), "epoch": int(state.get("epoch", 0)),
                     "global_step": int(state.get("global_step", 0)),
                     "selected_on": "by hand, among the run's periodic checkpoints"})
    config = replace(config, metadata={**config.metadata, "training": training})
    return save_checkpoint(out, _model_state(state), config)


def export_run(run_dir: Path, best: ModelCheckpoint | None, context: dict[str, Any]) -> Path:
    """Export `<run>/best` (and `<run>/last`) as model folders and write `summary.json`.

    The best model is the checkpoint with the best validation metric; without validation
    data it is the final state (and says so in its metadata).
    """
    recipe: Recipe = context["recipe"]
    last_path = run_dir / CHECKPOINT_DIR / LAST_CHECKPOINT
    best_path = Path(best.best_model_path) if best is not None and best.best_model_path else None
    chosen = best_path if best_path is not None and best_path.is_file() else last_path
    if not chosen.is_file():
        raise CheckpointError(f"training ended without a checkpoint in {run_dir / CHECKPOINT_DIR}")
    finished = time.time()
    in_channels = context["model_config"]["in_channels"]
    mean, std = list(recipe.data.mean), list(recipe.data.std)
    if len(mean) == 1 and in_channels > 1:
        mean, std = mean * in_channels, std * in_channels
    exported: dict[str, Any] = {}
    for label, path in (("best", chosen), ("last", last_path)):
        if label == "last" and not recipe.output.export_last:
            continue
        checkpoint = _read_lightning_checkpoint(path)
        info = checkpoint.get(INFO_KEY) or {}
        training = {
            "recipe_name": recipe.name,
            "selected_on": ("validation " + recipe.trainer.monitor) if path == best_path else "final state",
            "checkpoint": str(path.relative_to(run_dir)) if path.is_relative_to(run_dir) else str(path),
            "epoch": int(checkpoint.get("epoch", 0)),
            "global_step": int(checkpoint.get("global_step", 0)),
            "val_metrics": info.get("val_metrics", {}),
            "monitor": recipe.trainer.monitor,
            "seed": recipe.seed,
            "data": context["split"],
            "class_weights": context["class_weights"],
            "class_pixel_counts": context["class_pixel_counts"],
            "init": context.get("init") or {},
            "pretrained": recipe.model.pretrained,
            "world_size": context["world_size"],
            "precision": context.get("precision"),
            "started": _iso(context["started"]),
            "finished": _iso(finished),
            "duration_s": round(finished - context["started"], 1),
            "machine": machine_info(),
            "recipe": recipe.to_dict(),
        }
        metadata: dict[str, Any] = {"training": training, "val_names": _val_names(context["split"])}
        if recipe.output.input_scaling:
            metadata["input_scaling"] = recipe.output.input_scaling  # changeseg.io.scaling
        if recipe.data.val_scale != 1.0:  # validated on enlarged pairs: meant to run at that scale
            metadata["scales"] = [recipe.data.val_scale]  # changeseg.inference.multiscale.model_scales
        config = CheckpointConfig(model=context["model_config"], mean=mean, std=std,
                                  class_names=recipe.class_names(), threshold=recipe.output.threshold,
                                  metadata=metadata)
        folder = save_checkpoint(run_dir / label, _model_state(checkpoint), config,
                                 storage_dtype=recipe.output.storage_dtype)
        exported[label] = {"folder": str(folder), "from": training["checkpoint"],
                           "epoch": training["epoch"], "global_step": training["global_step"],
                           "val_metrics": training["val_metrics"]}
    write_json(run_dir / "summary.json", {
        "name": recipe.name, "exported": exported, "split": context["split"],
        "started": _iso(context["started"]), "finished": _iso(finished),
        "duration_s": round(finished - context["started"], 1), "machine": machine_info(),
    })
    return run_dir / "best"


def _val_names(split: dict[str, Any]) -> list[str]:
    """Every held-out validation pair name (what `changeseg evaluate --names model-val` reads)."""
    return [name for source in split["sources"] for name in source["val_names"]]


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, tz=timezone.utc).isoformat(timespec="seconds")
