"""A tiny seeded network trained for a few steps to see inverted patches (see the `tiny_checkpoint`
fixture in tests/conftest.py, which saves it once per session)."""

from __future__ import annotations

import torch

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
    # one thread: float reductions (and so the trained weights) do not depend on the machine's
    # core count, so every machine tests the same model
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
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
    finally:
        torch.set_num_threads(threads)
    return model.eval()
