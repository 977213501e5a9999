"""The Lightning task: a C-3PO network with its loss, metrics, optimiser and schedule.

`ChangeSegTask` owns a `ChangeSegModel` (or an ensemble of them; built from a `ModelConfig`
dict), a `ChangeLoss`, torchmetrics for training and validation, and the paper's optimiser
recipe (Adam, lr 1e-4, linear warm-up, cosine decay; all configurable). Metrics are computed
on the *changed* class - for typed labels every class but 0 counts as changed - with 255 ignored:

- ``val/f1``, ``val/iou``, ``val/precision``, ``val/recall``: global pixel counts over the
  whole validation set (the remote-sensing convention);
- ``val/f1_per_image``: per-image F1 averaged over images, an image with no change and an
  empty prediction scoring 0 (the official C-3PO convention; per tile when validating on
  tiles);
- ``val/miou`` for more than two classes; ``val/loss``.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Sequence
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from torch import Tensor, nn
from torchmetrics import MeanMetric, MetricCollection
from torchmetrics.classification import (
    BinaryF1Score,
    BinaryJaccardIndex,
    BinaryPrecision,
    BinaryRecall,
    MulticlassJaccardIndex,
)

from changeseg.errors import CheckpointError, ConfigError
from changeseg.io.checkpoints import load_checkpoint
from changeseg.labels import IGNORE_INDEX, UNTYPED_CHANGE, is_change
from changeseg.models import ModelConfig
from changeseg.models.ensemble import MEMBERS_PREFIX, build_network, member_networks
from changeseg.models.merge import split_shared_ad
from changeseg.models.pyramid import seed_fuse_from_conv3x3
from changeseg.training.losses import ChangeLoss, LossConfig

RNG_KEY = "changeseg_rng"
INFO_KEY = "changeseg"


class WarmupSchedule:
    """Learning-rate factor per optimiser step: linear warm-up, then a decay to `min_ratio`.

    `kind`: "cosine", "linear", "poly" (power `power`) or "constant". A plain callable
    object (not a lambda) so `LambdaLR` can save and restore it with the checkpoint.
    """

    def __init__(self, total_steps: int, warmup_steps: int = 0, kind: str = "cosine",
                 min_ratio: float = 0.0, power: float = 0.9) -> None:
        if kind not in ("cosine", "linear", "poly", "constant"):
            raise ConfigError(f"unknown schedule {kind!r}; choose cosine, linear, poly or constant")
        self.total_steps = max(int(total_steps), 1)
        self.warmup_steps = max(int(warmup_steps), 0)
        self.kind = kind
        self.min_ratio = float(min_ratio)
        self.power = float(power)

    def __call__(self, step: int) -> float:
        """The factor multiplying the base learning rate at optimiser step `step` (from 0)."""
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        if self.kind == "constant":
            return 1.0
        span = max(self.total_steps - self.warmup_steps, 1)
        progress = min(max((step - self.warmup_steps) / span, 0.0), 1.0)
        if self.kind == "cosine":
            decay = 0.5 * (1.0 + math.cos(math.pi * progress))
        elif self.kind == "linear":
            decay = 1.0 - progress
        else:
            decay = (1.0 - progress) ** self.power
        return self.min_ratio + (1.0 - self.min_ratio) * decay


def first_member_state(state: dict[str, Tensor], own_names: Iterable[str]) -> dict[str, Tensor]:
    """An ensemble checkpoint's first member as a single network's state, when `own_names` (the
    model being initialised) has no members; any other state is returned as it is."""
    target_is_ensemble = any(name.startswith(MEMBERS_PREFIX) for name in own_names)
    if target_is_ensemble or not state or not all(name.startswith(MEMBERS_PREFIX) for name in state):
        return state
    first = MEMBERS_PREFIX + "0."
    return {name.removeprefix(first): tensor for name, tensor in state.items() if name.startswith(first)}


def load_matching_weights(model: nn.Module, state: dict[str, Tensor]) -> tuple[list[str], list[str]]:
    """Copy every tensor of `state` whose name and shape match into `model`.

    Returns (loaded names, skipped names): a head trained for another number of classes is
    skipped and stays freshly initialised; a shared a/d conv fills both convs of a model with
    separate ones (`split_shared_ad`); a 3×3 MSF fusion seeds a 1×1 or depthwise-separable one
    (`seed_fuse_from_conv3x3`); an output ensemble's first member starts a single network
    (`first_member_state`). Raises CheckpointError when nothing matches.
    """
    own = model.state_dict()
    state = first_member_state(state, own.keys())
    state = split_shared_ad(state, own.keys())  # a shared a/d conv starts both separate ones
    state = seed_fuse_from_conv3x3(state, own)  # a 3×3 fusion seeds a cheaper one
    loaded, skipped = [], []
    for name, tensor in state.items():
        if name in own and own[name].shape == tensor.shape:
            own[name] = tensor.to(own[name].dtype)
            loaded.append(name)
        else:
            skipped.append(name)
    if not loaded:
        raise CheckpointError("no weight of the initial checkpoint fits this model")
    model.load_state_dict(own)
    return loaded, skipped


def changed_probability(logits: Tensor) -> Tensor:
    """Probability that each pixel changed: 1 − p(class 0), from N×K×H×W logits."""
    return 1.0 - logits.float().softmax(dim=1)[:, 0]


def changed_target(target: Tensor) -> Tensor:
    """Binary change target from class indices: class > 0 → 1, 255 stays 255."""
    return torch.where(target == IGNORE_INDEX, target, (target > 0).to(target.dtype))


def per_image_f1(prediction: Tensor, target: Tensor) -> Tensor:
    """F1 of each image from boolean N×H×W predictions and 0/1/255 targets (0 when empty)."""
    valid = target != IGNORE_INDEX
    truth = (target == 1) & valid
    pred = prediction & valid
    tp = (pred & truth).flatten(1).sum(1).float()
    fp = (pred & ~truth).flatten(1).sum(1).float()
    fn = (~pred & truth).flatten(1).sum(1).float()
    denominator = 2 * tp + fp + fn
    return torch.where(denominator > 0, 2 * tp / denominator.clamp_min(1), torch.zeros_like(tp))


def _change_metrics() -> MetricCollection:
    """Pixel F1, IoU, precision and recall of 0/1 change decisions (see `decide`)."""
    return MetricCollection({
        "f1": BinaryF1Score(ignore_index=IGNORE_INDEX),
        "iou": BinaryJaccardIndex(ignore_index=IGNORE_INDEX),
        "precision": BinaryPrecision(ignore_index=IGNORE_INDEX),
        "recall": BinaryRecall(ignore_index=IGNORE_INDEX),
    })


class ChangeSegTask(pl.LightningModule):
    """Training task for a C-3PO change-segmentation network.

    Args:
        model: `ModelConfig` options (a dict, as saved in checkpoints).
        loss: `LossConfig` options.
        optim: optimiser and schedule options (see `changeseg.training.recipe.OptimSection`).
        class_weights: one weight per class for the loss (None: unweighted); the trainer
            computes them from the training masks when `loss.class_weights` is "auto".
        pretrained: backbone initialisation: None, "imagenet" or a weights file.
        init_from: a trained change-model checkpoint folder to start from; tensors whose
            shapes match are loaded (a head for another class count is left fresh).
        threshold: decision threshold on the change probability for the metrics.
    """

    def __init__(self, model: dict[str, Any], loss: dict[str, Any] | None = None,
                 optim: dict[str, Any] | None = None, class_weights: Sequence[float] | None = None,
                 pretrained: str | None = None, init_from: str | None = None,
                 threshold: float = 0.5) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.model_config = ModelConfig.from_dict(dict(model))
        # An ensemble config (changeseg.models.ensemble) trains its members jointly on their mean.
        self.model = build_network(self.model_config, pretrained=pretrained)
        self.init_report: dict[str, Any] = {}
        if init_from:
            _, state = load_checkpoint(init_from)
            loaded, skipped = load_matching_weights(self.model, state)
            self.init_report = {"from": str(init_from), "loaded": len(loaded), "skipped": skipped}
        self.loss_config = LossConfig(**(loss or {}))
        num_classes = self.model_config.num_classes
        self.criterion = ChangeLoss(self.loss_config, num_classes,
                                    list(class_weights) if class_weights is not None else None)
        self.optim = self._optim_defaults(optim or {})
        self.threshold = float(threshold)
        self.train_metrics = _change_metrics().clone(prefix="train/")
        self.val_metrics = _change_metrics().clone(prefix="val/")
        self.val_f1_per_image = MeanMetric(nan_strategy="ignore")
        self.train_loss = MeanMetric()
        self.val_miou = (MulticlassJaccardIndex(num_classes, ignore_index=IGNORE_INDEX)
                         if num_classes > 2 else None)
        self.last_val_metrics: dict[str, float] = {}
        self.total_steps: int | None = None  # optimiser steps of the whole run, for the schedule
        self._apply_freeze()

    @staticmethod
    def _optim_defaults(values: dict[str, Any]) -> dict[str, Any]:
        defaults = {"optimizer": "adam", "lr": 1e-4, "weight_decay": 0.0, "betas": [0.9, 0.999],
                    "momentum": 0.9, "schedule": "cosine", "warmup_steps": 0, "min_lr_ratio": 0.0,
                    "poly_power": 0.9, "freeze": [], "freeze_statistics": True, "freeze_bn": False}
        unknown = sorted(set(values) - set(defaults))
        if unknown:
            raise ConfigError(f"unknown optim option(s): {', '.join(unknown)}")
        return {**defaults, **values}

    # ------------------------------------------------------------------ freezing

    def _frozen(self, name: str, prefixes: Sequence[str] | None = None) -> bool:
        """Whether the model's parameter or module `name` lies under an `optim.freeze` prefix."""
        if prefixes is None:
            prefixes = [p.removeprefix("model.") for p in self.optim["freeze"]]
        return any(name == p or name.startswith(p + ".") for p in prefixes)

    def _apply_freeze(self) -> None:
        prefixes = [p.removeprefix("model.") for p in self.optim["freeze"]]
        names = [name for name, _ in self.model.named_parameters()]
        for prefix in prefixes:
            if not any(self._frozen(n, [prefix]) for n in names):
                raise ConfigError(f"optim.freeze: no parameter of the model is under {prefix!r} "
                                  f"(try backbone, merge, pyramid or head; "
                                  f"members.0.backbone etc. in an ensemble)")
        for name, parameter in self.model.named_parameters():
            if self._frozen(name, prefixes):
                parameter.requires_grad_(False)

    def train(self, mode: bool = True) -> ChangeSegTask:
        """Switch train/eval mode, keeping the backbone BatchNorm statistics fixed if asked.

        Modules under an `optim.freeze` prefix stay in eval mode: a frozen part keeps its
        BatchNorm statistics (and skips its dropout) as well as its weights, so a run that
        trains only a new part leaves the rest of the network exactly as it started
        (`optim.freeze_statistics: false` keeps them in train mode, only the weights fixed).
        """
        super().train(mode)
        if mode and self.optim["freeze"] and self.optim["freeze_statistics"]:
            for name, module in self.model.named_modules():
                if name and self._frozen(name):
                    module.eval()
        if mode and self.optim["freeze_bn"]:
            backbones = [b for network in member_networks(self.model)
                         for b in (network.backbone, network.backbone_comparison) if b is not None]
            for backbone in backbones:
                for module in backbone.modules():
                    if isinstance(module, nn.modules.batchnorm._BatchNorm):
                        module.eval()
        return self

    def on_train_start(self) -> None:
        """Put frozen parts and the backbone's BatchNorm layers in eval mode before the first step.

        Lightning does not call `train()` when fitting starts (a new module is already in train
        mode), and it restores each submodule's own mode after every validation pass, so the
        modes set here hold for the whole run.
        """
        self.train(True)

    # ------------------------------------------------------------------ steps

    def forward(self, reference: Tensor, comparison: Tensor) -> Tensor:
        """Per-pixel class logits of the wrapped model."""
        return self.model(reference, comparison)

    def decide(self, probability: Tensor) -> Tensor:
        """Boolean change decisions at the task's threshold (the rule of `changeseg.labels`)."""
        return is_change(probability, self.threshold)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        """One optimisation step: loss on a batch, logged with the learning rate."""
        logits = self(batch["reference"], batch["comparison"])
        target = batch["mask"]
        loss = self.criterion(logits, target)
        size = target.shape[0]
        # The per-step value stays local (no collective per step); the epoch mean is a
        # torchmetrics MeanMetric, which every process reduces when it is computed.
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=False, batch_size=size)
        with torch.no_grad():
            self.train_loss.update(loss.detach(), weight=size)
            decision = self.decide(changed_probability(logits.detach()))
            self.train_metrics.update(decision.long(), changed_target(target))
        return loss

    def on_train_epoch_end(self) -> None:
        """Log the epoch's training metrics."""
        # torchmetrics has already reduced these over all processes (identical everywhere);
        # sync_dist only tells Lightning so, at the cost of one tiny all-reduce per epoch.
        values = {k: v.float() for k, v in self.train_metrics.compute().items()}
        values["train/loss_epoch"] = self.train_loss.compute().float()
        self.log_dict(values, sync_dist=True)
        self.train_metrics.reset()
        self.train_loss.reset()

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        """Accumulate validation loss and change metrics on one batch."""
        logits = self(batch["reference"], batch["comparison"])
        target = batch["mask"]
        loss = self.criterion(logits, target)
        self.log("val/loss", loss, on_step=False, on_epoch=True, batch_size=target.shape[0],
                 sync_dist=True)
        probability = changed_probability(logits)
        binary = changed_target(target)
        decision = self.decide(probability)
        self.val_metrics.update(decision.long(), binary)
        has_label = (binary != IGNORE_INDEX).flatten(1).any(1)
        scores = per_image_f1(decision, binary)
        if bool(has_label.any()):
            self.val_f1_per_image.update(scores[has_label])
        if self.val_miou is not None:
            # "changed, type unknown" pixels have no class to score per class
            self.val_miou.update(logits.argmax(1), torch.where(target == UNTYPED_CHANGE,
                                                               IGNORE_INDEX, target))

    def on_validation_epoch_end(self) -> None:
        """Compute, log and remember the validation metrics of this pass."""
        # Every process takes the same path here (the metrics are reduced across processes
        # when computed), so collective calls always match up.
        values = {k: v.float() for k, v in self.val_metrics.compute().items()}
        per_image = self.val_f1_per_image.compute().float()
        if torch.isfinite(per_image):
            values["val/f1_per_image"] = per_image
        if self.val_miou is not None:
            values["val/miou"] = self.val_miou.compute().float()
            self.val_miou.reset()
        self.val_metrics.reset()
        self.val_f1_per_image.reset()
        self.log_dict({k: v for k, v in values.items() if k != "val/f1"}, sync_dist=True)
        self.log("val/f1", values["val/f1"], prog_bar=True, sync_dist=True)
        logged = self.trainer.callback_metrics if self._trainer is not None else {}
        summary = {k: float(v) for k, v in values.items()}
        if "val/loss" in logged:
            summary["val/loss"] = float(logged["val/loss"])
        self.last_val_metrics = summary

    # ------------------------------------------------------------------ optimiser

    def configure_optimizers(self) -> dict[str, Any]:
        """The optimiser over trainable parameters and a per-step warm-up/decay schedule."""
        cfg = self.optim
        parameters = [p for p in self.parameters() if p.requires_grad]
        name = str(cfg["optimizer"]).lower()
        if name == "adam":
            optimizer: torch.optim.Optimizer = torch.optim.Adam(
                parameters, lr=cfg["lr"], betas=tuple(cfg["betas"]), weight_decay=cfg["weight_decay"])
        elif name == "adamw":
            optimizer = torch.optim.AdamW(parameters, lr=cfg["lr"], betas=tuple(cfg["betas"]),
                                          weight_decay=cfg["weight_decay"])
        elif name == "sgd":
            optimizer = torch.optim.SGD(parameters, lr=cfg["lr"], momentum=cfg["momentum"],
                                        weight_decay=cfg["weight_decay"])
        else:
            raise ConfigError(f"unknown optimizer {cfg['optimizer']!r}; choose adam, adamw or sgd")
        total = self._total_steps()
        schedule = WarmupSchedule(total, cfg["warmup_steps"], str(cfg["schedule"]).lower(),
                                  cfg["min_lr_ratio"], cfg["poly_power"])
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        return {"optimizer": optimizer,
                "lr_scheduler": {"scheduler": scheduler, "interval": "step", "frequency": 1}}

    def _total_steps(self) -> int:
        # Prefer the count the trainer function computed: asking Lightning for
        # `estimated_stepping_batches` here loads the training data before a resumed run's
        # loader state is restored, which would lose the position within the epoch.
        if self.total_steps is not None:
            return int(self.total_steps)
        try:
            total = self.trainer.estimated_stepping_batches
        except (RuntimeError, AttributeError):
            return 1
        if total is None or not math.isfinite(float(total)):
            raise ConfigError("an endless training stream needs trainer.max_steps")
        return int(total)

    # ------------------------------------------------------------------ checkpoint extras

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Store random-number states and the latest validation metrics with the checkpoint."""
        kind, keys, position, has_gauss, cached = np.random.get_state()
        checkpoint[RNG_KEY] = {  # plain types only, so `torch.load(weights_only=True)` reads it
            "torch": torch.get_rng_state(),
            "numpy": [kind, torch.from_numpy(np.asarray(keys, dtype=np.int64)), int(position),
                      int(has_gauss), float(cached)],
            "python": random.getstate(),
        }
        checkpoint[INFO_KEY] = {"val_metrics": dict(self.last_val_metrics),
                                "model_config": self.model_config.to_dict()}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Restore the random-number states saved by `on_save_checkpoint`."""
        states = checkpoint.get(RNG_KEY)
        if states:
            torch.set_rng_state(states["torch"])
            kind, keys, position, has_gauss, cached = states["numpy"]
            np.random.set_state((kind, keys.numpy().astype(np.uint32), position, has_gauss, cached))
            python_state = states["python"]
            random.setstate((python_state[0], tuple(python_state[1]), python_state[2]))
        info = checkpoint.get(INFO_KEY) or {}
        self.last_val_metrics = dict(info.get("val_metrics", {}))
