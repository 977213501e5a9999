"""Run by test_train_run.py: a two-process CPU DDP training (gloo) of a tiny model.

Usage: python tests/training/ddp_worker.py OUT_DIR DATA_DIR

Lightning starts the second process itself by running this script again. Each rank writes
``OUT_DIR/rank<r>.pt`` with its final parameters and the names of the pairs it trained on.
"""

from __future__ import annotations

import sys
from pathlib import Path

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from changeseg.training.trainer import train  # noqa: E402
from tests.training.train_helpers import tiny_recipe  # noqa: E402


class RecordRank(Callback):
    """Keep the pair names this rank sees and save its parameters when training ends."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.names: list[list[str]] = []

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: dict,
                             batch_idx: int) -> None:
        self.names.append([trainer.current_epoch, *batch["name"]])

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        params = {k: v.detach().cpu().clone() for k, v in pl_module.model.named_parameters()}
        torch.save({"params": params, "names": self.names, "world_size": trainer.world_size,
                    "backend": str(trainer.strategy.process_group_backend)},
                   self.out / f"rank{trainer.global_rank}.pt")


def main() -> None:
    out, data = Path(sys.argv[1]), Path(sys.argv[2])
    recipe = tiny_recipe(out / "run", f"folder:{data}", "trainer.devices=2", "trainer.strategy=ddp",
                         "trainer.max_epochs=2", "data.batch_size=2")
    train(recipe, callbacks=[RecordRank(out)])


if __name__ == "__main__":
    main()
