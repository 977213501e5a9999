"""Shared test fixtures: where the real data lives, and seeded synthetic inputs."""

from __future__ import annotations

import os
from collections.abc import Iterator
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


@pytest.fixture(scope="session", autouse=True)
def model_export_cache(request, tmp_path_factory) -> Iterator[Path]:
    """Point the export cache ($CHANGESEG_CACHE) away from the user's ~/.cache for the whole session.

    `--backend auto` (the default) and the ONNX backends export a model into that cache once;
    tests share one folder in pytest's cache (`.pytest_cache`), so later runs reuse the exports
    (entries are keyed by the weights and the changeseg version). Tests about the cache itself
    point it at their own folders.
    """
    cache = getattr(request.config, "cache", None)
    folder = cache.mkdir("changeseg-export-cache") if cache is not None else tmp_path_factory.mktemp("cache")
    previous = os.environ.get("CHANGESEG_CACHE")
    os.environ["CHANGESEG_CACHE"] = str(folder)
    yield Path(folder)
    if previous is None:
        os.environ.pop("CHANGESEG_CACHE", None)
    else:
        os.environ["CHANGESEG_CACHE"] = previous


@pytest.fixture
def data_root() -> Path:
    """The real data folder, checked to exist (see `require_real_data`)."""
    return require_real_data()


@pytest.fixture
def rng() -> np.random.Generator:
    """A seeded random generator so every test input is reproducible."""
    return np.random.default_rng(1234)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory, request):
    """A checkpoint folder holding `trained_tiny_model()` (normalisation: identity on [0,1] × 4).

    The trained weights are cached in pytest's cache folder (`.pytest_cache`), keyed by a hash
    of the training code, the network's code, torch and the machine (`cached_tiny_model`), so
    only the first run trains; with `-p no:cacheprovider` every run trains.
    """
    from changeseg.inference.predictor import ChangeDetector
    from changeseg.io.checkpoints import CheckpointConfig
    from tests.inference.conftest import cached_tiny_model

    cache = getattr(request.config, "cache", None)
    model = cached_tiny_model(cache.mkdir("changeseg-tiny-model") if cache is not None else None)
    config = CheckpointConfig(model=model.config.to_dict(), mean=[0.5] * 3, std=[0.25] * 3)
    folder = tmp_path_factory.mktemp("models") / "tiny"
    ChangeDetector.from_model(model, config, precision="fp32").save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_with_domain(tiny_checkpoint, tmp_path_factory) -> Path:
    """The tiny checkpoint with a `fixed-camera` domain calibration that gives change more
    probability (T 1, no-change bias -1), as `tools/calibrate_model.py --domain` records one."""
    import json
    import shutil

    folder = tmp_path_factory.mktemp("models") / "tiny-domain"
    shutil.copytree(tiny_checkpoint, folder)
    config = json.loads((folder / "config.json").read_text())
    config.setdefault("metadata", {})["domains"] = {
        "fixed-camera": {"temperature": 1.0, "no_change_bias": -1.0}}
    (folder / "config.json").write_text(json.dumps(config))
    return folder


@pytest.fixture(scope="session")
def tiny_export(tiny_checkpoint, tmp_path_factory):
    """The tiny checkpoint's ONNX export (its ExportReport), made once per session and shared by
    every test that needs an ONNX model."""
    pytest.importorskip("onnxruntime")
    from tests.inference.onnx_helpers import export_tiny

    return export_tiny(tiny_checkpoint, tmp_path_factory.getbasetemp() / "onnx-tiny")


@pytest.fixture(scope="session")
def onnx_folder(tiny_export) -> Path:
    """The folder of `tiny_export`: model.onnx and config.json."""
    return tiny_export.folder


def touching_discs(height: int = 48, width: int = 48) -> np.ndarray:
    """Two discs of radius 10 overlapping diagonally: one connected component holding two blobs,
    the shape region splitting (`changeseg.region_split`) cuts apart."""
    ys, xs = np.indices((height, width))
    return np.any([(xs - x) ** 2 + (ys - y) ** 2 <= 100 for x, y in ((14, 14), (25, 25))], axis=0)


def splitting_copy(checkpoint: Path, folder: Path) -> Path:
    """A copy of `checkpoint` in `folder` whose config.json splits regions as `pcb` does
    (metadata split_depth 1, split_cover 0.95)."""
    import json
    import shutil

    shutil.copytree(checkpoint, folder)
    config = json.loads((folder / "config.json").read_text())
    config["metadata"].update(split_depth=1, split_cover=0.95)
    (folder / "config.json").write_text(json.dumps(config))
    return folder
