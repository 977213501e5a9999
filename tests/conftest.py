"""Shared test fixtures: where the real data lives, and seeded synthetic inputs."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def real_data_root() -> Path:
    """The folder of real change-detection data (CHANGESEG_DATA, default ../shared/data)."""
    return Path(os.environ.get("CHANGESEG_DATA", PROJECT_ROOT.parent / "shared" / "data")).resolve()


def require_real_data(*parts: str) -> Path:
    """Path to a real data set; fails under CI=true and skips elsewhere when it is missing."""
    path = real_data_root().joinpath(*parts)
    if not path.exists():
        message = f"real data not found at {path} (set CHANGESEG_DATA)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture
def data_root() -> Path:
    """The real data folder, checked to exist (see `require_real_data`)."""
    return require_real_data()


@pytest.fixture
def rng() -> np.random.Generator:
    """A seeded random generator so every test input is reproducible."""
    return np.random.default_rng(1234)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """A checkpoint folder holding `trained_tiny_model()` (normalisation: identity on [0,1] × 4)."""
    from changeseg.inference.predictor import ChangeDetector
    from changeseg.io.checkpoints import CheckpointConfig
    from tests.inference.conftest import trained_tiny_model

    model = trained_tiny_model()
    config = CheckpointConfig(model=model.config.to_dict(), mean=[0.5] * 3, std=[0.25] * 3)
    folder = tmp_path_factory.mktemp("models") / "tiny"
    ChangeDetector.from_model(model, config, precision="fp32").save_pretrained(folder)
    return folder
