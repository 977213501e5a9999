"""The Lightning task: schedule, metrics, freezing, initial weights and checkpoint extras."""

from __future__ import annotations

import math
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

from changeseg.errors import ConfigError
from changeseg.io.checkpoints import CheckpointConfig, save_checkpoint
from changeseg.training.module import (
    ChangeSegTask,
    WarmupSchedule,
    changed_probability,
    changed_target,
    load_matching_weights,
    per_image_f1,
)
from tests.training.train_helpers import single_thread  # noqa: F401

pytestmark = pytest.mark.usefixtures("single_thread")
TINY = {"backbone": "mobilenet_v2", "fpn_channels": 16}


def tiny_task(**kwargs: object) -> ChangeSegTask:
    torch.manual_seed(0)
    return ChangeSegTask(model=dict(TINY), **kwargs)  # type: ignore[arg-type]


def test_warmup_then_cosine() -> None:
    schedule = WarmupSchedule(total_steps=14, warmup_steps=4, kind="cosine")
    assert [schedule(s) for s in range(4)] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert schedule(4) == pytest.approx(1.0)
    assert schedule(9) == pytest.approx(0.5)  # half-way through the decay
    assert schedule(14) == pytest.approx(0.0) and schedule(99) == pytest.approx(0.0)
    floor = WarmupSchedule(10, 0, "cosine", min_ratio=0.2)
    assert floor(10) == pytest.approx(0.2) and floor(5) == pytest.approx(0.6)
    assert WarmupSchedule(10, 0, "linear")(5) == pytest.approx(0.5)
    assert WarmupSchedule(10, 0, "poly", power=2.0)(5) == pytest.approx(0.25)
    assert WarmupSchedule(10, 2, "constant")(7) == 1.0
    with pytest.raises(ConfigError):
        WarmupSchedule(10, 0, "step")


def test_change_helpers() -> None:
    logits = torch.log(torch.tensor([0.7, 0.2, 0.1])).reshape(1, 3, 1, 1)  # typed: 3 classes
    assert float(changed_probability(logits)) == pytest.approx(0.3)
    assert changed_target(torch.tensor([0, 1, 3, 255])).tolist() == [0, 1, 1, 255]
    prediction = torch.tensor([[[1, 1], [0, 0]], [[0, 0], [0, 0]], [[1, 0], [0, 0]]]).bool()
    target = torch.tensor([[[1, 0], [0, 255]], [[0, 0], [0, 0]], [[255, 0], [0, 0]]])
    # image 1: tp 1, fp 1, fn 0 → 2/3; image 2: nothing at all → 0; image 3: only ignored → 0
    assert per_image_f1(prediction, target).tolist() == pytest.approx([2 / 3, 0.0, 0.0])


def test_training_step_gives_gradients_to_every_part() -> None:
    task = tiny_task(class_weights=[0.3, 0.7])
    task.train()
    batch = {"reference": torch.randn(2, 3, 64, 64), "comparison": torch.randn(2, 3, 64, 64),
             "mask": torch.randint(0, 2, (2, 64, 64))}
    batch["mask"][:, :4] = 255
    logits = task(batch["reference"], batch["comparison"])
    loss = task.criterion(logits, batch["mask"])
    assert torch.isfinite(loss)
    loss.backward()
    for part in ("backbone", "merge", "pyramid", "head"):
        grads = [p.grad for p in getattr(task.model, part).parameters() if p.requires_grad]
        assert grads and all(g is not None for g in grads), part


def test_optimiser_schedule_and_freezing() -> None:
    task = tiny_task(optim={"optimizer": "adamw", "lr": 2e-3, "weight_decay": 0.01,
                            "warmup_steps": 2, "freeze": ["model.backbone"]})
    task.total_steps = 10
    setup = task.configure_optimizers()
    optimizer = setup["optimizer"]
    assert isinstance(optimizer, torch.optim.AdamW)
    trainable = {id(p) for p in optimizer.param_groups[0]["params"]}
    assert not any(id(p) in trainable for p in task.model.backbone.parameters())
    assert all(id(p) in trainable for p in task.model.head.parameters())
    scheduler = setup["lr_scheduler"]["scheduler"]
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1e-3)  # warm-up step 0: 1/2
    assert setup["lr_scheduler"]["interval"] == "step"
    assert scheduler.state_dict()["lr_lambdas"][0]["total_steps"] == 10
    with pytest.raises(ConfigError, match="nothing"):
        tiny_task(optim={"freeze": ["nothing"]})
    with pytest.raises(ConfigError, match="optim option"):
        tiny_task(optim={"learning_rate": 1.0})


def test_freeze_bn_keeps_backbone_statistics() -> None:
    task = tiny_task(optim={"freeze_bn": True})
    task.train()
    backbone_bn = [m for m in task.model.backbone.modules() if isinstance(m, nn.BatchNorm2d)]
    head_bn = [m for m in task.model.head.modules() if isinstance(m, nn.BatchNorm2d)]
    assert backbone_bn and not any(m.training for m in backbone_bn)
    assert head_bn and all(m.training for m in head_bn)
    before = backbone_bn[0].running_mean.clone()
    task(torch.randn(2, 3, 64, 64), torch.randn(2, 3, 64, 64))
    assert torch.equal(before, backbone_bn[0].running_mean)


def test_an_ensemble_trains_as_one_network_and_keeps_every_members_statistics() -> None:
    torch.manual_seed(0)
    task = ChangeSegTask(model={**TINY, "ensemble": 2}, optim={"freeze_bn": True})
    task.train()
    members = list(task.model.members)
    backbone_bn = [m for member in members for m in member.backbone.modules()
                   if isinstance(m, nn.BatchNorm2d)]
    assert len(members) == 2 and backbone_bn and not any(m.training for m in backbone_bn)
    reference, comparison = torch.randn(2, 3, 64, 64), torch.randn(2, 3, 64, 64)
    loss = task.criterion(task(reference, comparison), torch.randint(0, 2, (2, 64, 64)))
    loss.backward()
    assert all(member.head[-1].weight.grad is not None for member in members)


def saved_ensemble(tmp_path: Path) -> tuple[ChangeSegTask, Path]:
    """A seeded two-member ensemble task and its checkpoint folder."""
    torch.manual_seed(1)
    source = ChangeSegTask(model={**TINY, "ensemble": 2})
    folder = save_checkpoint(tmp_path / "ensemble", source.model.state_dict(),
                             CheckpointConfig(model=source.model_config.to_dict()))
    torch.manual_seed(2)
    return source, folder


def test_fine_tuning_an_ensemble_starts_from_every_members_weights(tmp_path: Path) -> None:
    source, folder = saved_ensemble(tmp_path)
    task = ChangeSegTask(model={**TINY, "ensemble": 2}, init_from=str(folder))
    assert task.init_report["skipped"] == []
    for name, tensor in source.model.state_dict().items():
        assert torch.equal(tensor, task.model.state_dict()[name]), name


def test_a_single_network_starts_from_an_ensembles_first_member(tmp_path: Path) -> None:
    """How a device run continues `pcb` (an ensemble) as one network: `ensemble: 1` in the recipe."""
    source, folder = saved_ensemble(tmp_path)
    task = ChangeSegTask(model=dict(TINY), init_from=str(folder))
    first = source.model.members[0].state_dict()
    assert task.init_report["skipped"] == [] and task.init_report["loaded"] == len(first)
    for name, tensor in task.model.state_dict().items():
        assert torch.equal(tensor, first[name]), name
    assert not torch.equal(task.model.head[-1].weight, source.model.members[1].head[-1].weight)


def test_initial_weights_from_a_model_folder(tmp_path: Path) -> None:
    source = tiny_task()
    folder = save_checkpoint(tmp_path / "m", source.model.state_dict(),
                             CheckpointConfig(model=source.model_config.to_dict()))
    torch.manual_seed(99)
    task = ChangeSegTask(model=dict(TINY), init_from=str(folder))
    for name, tensor in source.model.state_dict().items():
        assert torch.equal(tensor, task.model.state_dict()[name]), name
    # a typed (4-class) model keeps everything but the last classifier layer
    typed = ChangeSegTask(model={**TINY, "num_classes": 4}, init_from=str(folder))
    assert typed.init_report["skipped"] and all("head" in n for n in typed.init_report["skipped"])
    loaded, skipped = load_matching_weights(nn.Linear(2, 2), {"weight": torch.ones(2, 2)})
    assert loaded == ["weight"] and skipped == []
    # separate a/d convs start as copies of the shared one
    split = ChangeSegTask(model={**TINY, "share_ad": False}, init_from=str(folder))
    shared_state = source.model.state_dict()
    for name, tensor in split.model.state_dict().items():
        if ".convs.a." in name or ".convs.d." in name:
            for letter in "ad":
                name = name.replace(f".convs.{letter}.", ".convs.ad.")
            assert torch.equal(tensor, shared_state[name])
    assert not split.init_report["skipped"]


def test_checkpoint_carries_rng_states_and_metrics() -> None:
    task = tiny_task()
    task.last_val_metrics = {"val/f1": 0.5}
    checkpoint: dict = {}
    torch.manual_seed(5)
    task.on_save_checkpoint(checkpoint)
    expected = torch.rand(3)
    torch.manual_seed(6)
    other = tiny_task()
    other.on_load_checkpoint(checkpoint)
    assert torch.equal(torch.rand(3), expected)
    assert other.last_val_metrics == {"val/f1": 0.5}
    assert checkpoint["changeseg"]["model_config"]["fpn_channels"] == 16


class _Oracle(nn.Module):
    """Predicts "changed" where the comparison's first channel is positive."""

    def forward(self, reference: torch.Tensor, comparison: torch.Tensor) -> torch.Tensor:
        changed = comparison[:, :1] * 10.0
        return torch.cat([-changed, changed], dim=1)


def test_validation_metrics_global_and_per_image() -> None:
    task = tiny_task()
    task.model = _Oracle()  # type: ignore[assignment]
    prediction = [[[1.0, 1.0], [-1.0, -1.0]], [[-1.0, -1.0], [-1.0, -1.0]]]
    batch = {"reference": torch.zeros(2, 3, 2, 2),
             "comparison": torch.tensor(prediction)[:, None].repeat(1, 3, 1, 1),
             "mask": torch.tensor([[[1, 0], [0, 0]], [[0, 0], [0, 255]]])}
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False,
                         enable_model_summary=False, enable_checkpointing=False)
    trainer.validate(task, dataloaders=DataLoader([batch], batch_size=None))
    metrics = task.last_val_metrics
    # global: tp 1, fp 1, fn 0
    assert metrics["val/f1"] == pytest.approx(2 / 3)
    assert metrics["val/precision"] == pytest.approx(0.5)
    assert metrics["val/recall"] == pytest.approx(1.0)
    assert metrics["val/iou"] == pytest.approx(0.5)
    # per image (C-3PO): 2/3 and 0 for the image without change
    assert metrics["val/f1_per_image"] == pytest.approx(1 / 3)
    assert math.isfinite(metrics["val/loss"])


def test_validation_counts_a_probability_at_the_threshold_as_change() -> None:
    # equal logits: change probability exactly 0.5 = the threshold, which is change
    # (changeseg.labels.is_change, as in detect and evaluate), so every pixel is a hit
    task = tiny_task(threshold=0.5)
    task.model = _Oracle()  # type: ignore[assignment]
    batch = {"reference": torch.zeros(1, 3, 2, 2), "comparison": torch.zeros(1, 3, 2, 2),
             "mask": torch.ones(1, 2, 2, dtype=torch.long)}
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False,
                         enable_model_summary=False, enable_checkpointing=False)
    trainer.validate(task, dataloaders=DataLoader([batch], batch_size=None))
    assert task.last_val_metrics["val/f1"] == pytest.approx(1.0)
    assert task.last_val_metrics["val/f1_per_image"] == pytest.approx(1.0)


def test_frozen_parts_keep_their_batchnorm_statistics_in_training():
    task = tiny_task(optim={"freeze": ["model.backbone", "model.merge", "model.pyramid"]})
    task.train()
    frozen_bn = [m for part in (task.model.backbone, task.model.pyramid) for m in part.modules()
                 if isinstance(m, nn.BatchNorm2d)]
    head_bn = [m for m in task.model.head.modules() if isinstance(m, nn.BatchNorm2d)]
    assert frozen_bn and not any(m.training for m in frozen_bn)
    assert head_bn and all(m.training for m in head_bn)
    before = [m.running_mean.clone() for m in frozen_bn]
    generator = torch.Generator().manual_seed(0)
    task(torch.rand(2, 3, 64, 64, generator=generator), torch.rand(2, 3, 64, 64, generator=generator))
    assert all(torch.equal(m.running_mean, b) for m, b in zip(frozen_bn, before))


def test_frozen_parts_may_let_their_batchnorm_statistics_follow_the_batches():
    task = tiny_task(optim={"freeze": ["model.backbone"], "freeze_statistics": False})
    task.train()
    backbone_bn = [m for m in task.model.backbone.modules() if isinstance(m, nn.BatchNorm2d)]
    assert backbone_bn and all(m.training for m in backbone_bn)
    assert not any(p.requires_grad for p in task.model.backbone.parameters())
    before = backbone_bn[0].running_mean.clone()
    task(torch.randn(2, 3, 64, 64), torch.randn(2, 3, 64, 64))
    assert not torch.equal(before, backbone_bn[0].running_mean)


def test_fitting_starts_with_the_frozen_modes():
    # Lightning never calls train() when fitting starts; its on_train_start hook sets the modes
    task = tiny_task(optim={"freeze": ["model.merge"], "freeze_bn": True})
    merge_and_backbone = [m for part in (task.model.merge, task.model.backbone) for m in part.modules()
                          if isinstance(m, nn.BatchNorm2d)]
    assert merge_and_backbone and all(m.training for m in merge_and_backbone)
    task.on_train_start()
    assert not any(m.training for m in merge_and_backbone)
    assert all(m.training for m in task.model.head.modules())
