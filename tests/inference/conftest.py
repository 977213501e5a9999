"""A tiny seeded checkpoint trained for a few steps to see inverted patches, shared by inference tests."""

from __future__ import annotations

import pytest
import torch

from changeseg.inference.predictor import ChangeDetector
from changeseg.models import build_model


def patch_pairs(generator: torch.Generator, batch: int = 8, size: int = 64):
    """Random image pairs where one random rectangle per comparison is inverted, and its mask."""
    reference = torch.randn(batch, 3, size, size, generator=generator)
    comparison = reference.clone()
    mask = torch.zeros(batch, size, size, dtype=torch.long)
    for i in range(batch):
        y, x = torch.randint(0, size // 2, (2,), generator=generator).tolist()
        h, w = torch.randint(size // 6, size // 2, (2,), generator=generator).tolist()
        comparison[i, :, y:y + h, x:x + w] *= -1
        mask[i, y:y + h, x:x + w] = 1
    return reference, comparison, mask


def trained_tiny_model(steps: int = 40):
    """A seeded tiny network trained briefly so its change map responds to real differences.

    An untrained network's logits hover around its decision boundary, which makes mask
    comparisons (bf16 vs fp32, ONNX vs torch) meaningless; a few steps fix that.
    """
    torch.manual_seed(11)
    generator = torch.Generator().manual_seed(5)
    model = build_model(fpn_channels=16)
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(steps):
        reference, comparison, mask = patch_pairs(generator)
        loss = torch.nn.functional.cross_entropy(model(reference, comparison), mask)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return model.eval()


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """A checkpoint folder holding `trained_tiny_model()` (normalisation: identity on [0,1] × 4)."""
    from changeseg.io.checkpoints import CheckpointConfig

    model = trained_tiny_model()
    config = CheckpointConfig(model=model.config.to_dict(), mean=[0.5] * 3, std=[0.25] * 3)
    folder = tmp_path_factory.mktemp("models") / "tiny"
    ChangeDetector.from_model(model, config, precision="fp32").save_pretrained(folder)
    return folder
