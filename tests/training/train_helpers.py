"""Shared helpers for the training tests: seeded fixture data and tiny recipes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from changeseg.training.recipe import Recipe, load_recipe

TINY_MODEL = ["model.backbone=mobilenet_v2", "model.fpn_channels=16", "model.pretrained=null"]


def write_pairs(root: Path, count: int = 8, size: int = 64, seed: int = 0, grey: bool = False) -> Path:
    """Write `count` seeded pairs in the folder layout (A/, B/, label/ with 0/255 masks).

    The comparison is the reference plus noise with one bright square pasted in; the label
    marks the square.
    """
    rng = np.random.default_rng(seed)
    for sub in ("A", "B", "label"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for i in range(count):
        reference = rng.integers(40, 120, (size, size, 3), dtype=np.uint8)
        comparison = np.clip(reference.astype(int) + rng.integers(-8, 9, reference.shape), 0, 255)
        comparison = comparison.astype(np.uint8)
        mask = np.zeros((size, size), np.uint8)
        side = int(rng.integers(size // 6, size // 3))
        y, x = (int(v) for v in rng.integers(0, size - side, 2))
        comparison[y:y + side, x:x + side] = rng.integers(180, 255, 3, dtype=np.uint8)
        mask[y:y + side, x:x + side] = 255
        name = f"pair_{i:02d}.png"
        ref_img = Image.fromarray(reference[:, :, 0] if grey else reference)
        cmp_img = Image.fromarray(comparison[:, :, 0] if grey else comparison)
        ref_img.save(root / "A" / name)
        cmp_img.save(root / "B" / name)
        Image.fromarray(mask).save(root / "label" / name)
    return root


def tiny_recipe(out: Path, data: str, *overrides: str, base: dict[str, Any] | None = None) -> Recipe:
    """A recipe for a seconds-long CPU run of a 16-channel MobileNetV2 C-3PO on `data`."""
    values = [
        "name=tiny", f"output.dir={out}", "seed=7", *TINY_MODEL,
        f"data.train=[{{spec: '{data}'}}]", "data.crop_size=64", "data.batch_size=2",
        "data.num_workers=0", "data.val_fraction=0.25", "optim.lr=1e-3", "optim.warmup_steps=2",
        "trainer.max_epochs=2", "trainer.accelerator=cpu", "trainer.devices=1",
        "trainer.checkpoint_every_n_steps=2", "trainer.progress_bar=false",
        "trainer.log_every_n_steps=1", *overrides,
    ]
    return load_recipe(None, values, base=base)


@pytest.fixture
def single_thread() -> Iterator[None]:
    """Run a test with one torch thread: on a busy shared CPU, two spinning OpenMP threads
    can make a training step ten times slower than one."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
