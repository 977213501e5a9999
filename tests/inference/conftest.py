"""A tiny seeded network trained for a few steps to see inverted patches (see the `tiny_checkpoint`
fixture in tests/conftest.py, which saves it once per session), and its cache across runs."""

from __future__ import annotations

import hashlib
import os
import platform
from pathlib import Path

import torch

from changeseg.models import build_model

PROJECT_ROOT = Path(__file__).resolve().parents[2]
# Everything the trained weights depend on: this file (data, seeds, steps, optimiser) and the
# network's code. The torch version and the machine join them in `tiny_model_key`.
MODEL_CODE = PROJECT_ROOT / "src" / "changeseg" / "models"
TRAINING_SOURCES = (Path(__file__).resolve(), *sorted(MODEL_CODE.rglob("*.py")))


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


def tiny_model_key(sources: tuple[Path, ...] = TRAINING_SOURCES, steps: int = 40) -> str:
    """A hash of everything `trained_tiny_model(steps)` depends on: sources, torch, machine."""
    import torchvision

    versions = f"{steps}|{torch.__version__}|{torchvision.__version__}|{platform.machine()}"
    digest = hashlib.sha256(versions.encode())
    for path in sources:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:24]


def cached_tiny_model(cache_dir: Path | None, steps: int = 40):
    """`trained_tiny_model(steps)`, its weights kept in `cache_dir` under `tiny_model_key()`.

    Without a cache folder (pytest's cache disabled) or without a stored entry, the model is
    trained; a new entry is written atomically, so an interrupted run never leaves a torn one,
    and replaces the entries of older code; an unreadable entry is trained again and replaced.
    """
    from safetensors.torch import load_file, save_file

    if cache_dir is None:
        return trained_tiny_model(steps)
    path = cache_dir / f"tiny-{tiny_model_key(steps=steps)}.safetensors"
    if path.is_file():
        model = build_model(fpn_channels=16)
        try:
            model.load_state_dict(load_file(path), strict=True)
            return model.eval()
        except Exception:  # a torn or foreign file (safetensors' own errors included): train again
            pass
    model = trained_tiny_model(steps)
    cache_dir.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, partial)
    os.replace(partial, path)
    for stale in cache_dir.glob("tiny-*.safetensors"):  # entries of older code: never read again
        if stale != path:
            stale.unlink(missing_ok=True)
    return model
