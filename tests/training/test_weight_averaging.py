"""interpolate_models: (1 - alpha) * start + alpha * tuned, tensor by tensor, with clear errors."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from changeseg.errors import CheckpointError, ConfigError
from changeseg.io.checkpoints import load_checkpoint, save_checkpoint
from changeseg.training.weight_averaging import interpolate_models


def perturbed_copy(checkpoint: Path, folder: Path, seed: int, threshold: float) -> Path:
    """`checkpoint` with every float tensor shifted by seeded noise and its own threshold."""
    config, state = load_checkpoint(checkpoint)
    generator = torch.Generator().manual_seed(seed)
    moved = {name: value + torch.randn(value.shape, generator=generator) if value.is_floating_point()
             else value for name, value in state.items()}
    return save_checkpoint(folder, moved, replace(config, threshold=threshold))


def test_interpolation_is_the_weighted_mean_of_each_tensor(tiny_checkpoint, tmp_path):
    tuned = perturbed_copy(tiny_checkpoint, tmp_path / "tuned", seed=3, threshold=0.42)
    _, start_state = load_checkpoint(tiny_checkpoint)
    _, tuned_state = load_checkpoint(tuned)
    for alpha in (0.0, 0.3, 1.0):
        folder = interpolate_models(tiny_checkpoint, tuned, alpha, tmp_path / f"a{alpha}")
        config, mixed = load_checkpoint(folder)
        for name, value in mixed.items():
            if value.is_floating_point():
                expected = (1 - alpha) * start_state[name] + alpha * tuned_state[name]
                assert torch.allclose(value, expected, atol=1e-6), name
            else:
                assert torch.equal(value, tuned_state[name])
        assert config.threshold == pytest.approx(0.42)  # the tuned model's configuration
        assert config.metadata["interpolation"]["alpha"] == alpha
        assert config.metadata["interpolation"]["start"] == str(tiny_checkpoint)


def test_bad_alpha_and_mismatched_models_are_refused(tiny_checkpoint, tmp_path):
    tuned = perturbed_copy(tiny_checkpoint, tmp_path / "tuned", seed=4, threshold=0.5)
    with pytest.raises(ConfigError, match=r"\[0, 1\]"):
        interpolate_models(tiny_checkpoint, tuned, 1.5, tmp_path / "out")
    config, state = load_checkpoint(tuned)
    name = next(k for k, v in state.items() if v.is_floating_point() and v.ndim == 4)
    state[name] = state[name][:1]
    other = save_checkpoint(tmp_path / "other", state, config)
    with pytest.raises(CheckpointError, match="wrongly shaped"):
        interpolate_models(tiny_checkpoint, other, 0.5, tmp_path / "out")
    assert not (tmp_path / "out").exists()
