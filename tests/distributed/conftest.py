"""Fixtures for the Ray tests: Ray itself (fails under CI=true when missing), one local Ray instance
for the whole session (`num_cpus=2`), seeded pairs and a seeded GeoTIFF pair."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from changeseg.io.images import read_image, write_png
from tests.conftest import require_real_data


def require_ray():
    """The `ray` module; fails under CI=true and skips elsewhere when the extra is not installed."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as exc:
        message = f"Ray is not installed ({exc}); pip install 'changeseg[ray]' (make installs it)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return ray


@pytest.fixture(scope="session")
def _ray_for_the_session():
    """Stops the local Ray instance of this test session (if one was started) at the end."""
    yield
    if "ray" in sys.modules:
        import ray

        ray.shutdown()


@pytest.fixture
def local_ray(_ray_for_the_session):
    """This process connected to a local Ray instance with 2 CPUs (started once, reused)."""
    ray = require_ray()
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, object_store_memory=200 * 2**20, log_to_driver=False)
    assert ray.cluster_resources().get("CPU") == 2
    return ray


def synthetic_pair(rng: np.random.Generator, height: int = 96, width: int = 128
                   ) -> tuple[np.ndarray, np.ndarray]:
    """A random reference and a comparison with two inverted rectangles (what the tiny model sees)."""
    reference = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    comparison = reference.copy()
    for _ in range(2):
        y, x = int(rng.integers(0, height // 2)), int(rng.integers(0, width // 2))
        h, w = int(rng.integers(height // 6, height // 2)), int(rng.integers(width // 6, width // 2))
        comparison[y:y + h, x:x + w] = 255 - comparison[y:y + h, x:x + w]
    return reference, comparison


@pytest.fixture(scope="module")
def pair_list(tmp_path_factory) -> Path:
    """pairs.csv (relative paths) naming 4 seeded synthetic pairs, 2 real LEVIR-CD pairs from
    $CHANGESEG_DATA, a pair whose comparison is not an image and a pair of mismatched sizes."""
    folder = tmp_path_factory.mktemp("pairs")
    rng = np.random.default_rng(2024)
    rows = ["reference,comparison,name"]
    for index in range(4):
        reference, comparison = synthetic_pair(rng)
        write_png(folder / f"s{index}_a.png", reference)
        write_png(folder / f"s{index}_b.png", comparison)
        rows.append(f"s{index}_a.png,s{index}_b.png,synthetic{index}")
    levir = require_real_data("levir_samples")
    for index, name in enumerate(sorted(p.name for p in (levir / "A").glob("*.png"))[:2]):
        shutil.copy(levir / "A" / name, folder / f"levir{index}_a.png")
        shutil.copy(levir / "B" / name, folder / f"levir{index}_b.png")
        rows.append(f"levir{index}_a.png,levir{index}_b.png,levir{index}")
    (folder / "broken.png").write_bytes(b"this is not an image")
    rows.append("s0_a.png,broken.png,broken")
    write_png(folder / "small.png", np.zeros((40, 40, 3), np.uint8))
    rows.append("s1_a.png,small.png,mismatched")
    (folder / "pairs.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return folder / "pairs.csv"


def mask_agreement(a: Path, b: Path) -> float:
    """The fraction of pixels on which two mask images agree."""
    first, second = read_image(a), read_image(b)
    assert first.shape == second.shape
    return float((first == second).mean())


def write_geotiff_pair(folder: Path, height: int = 520, width: int = 610, seed: int = 99
                       ) -> tuple[Path, Path]:
    """A seeded 3-band uint8 GeoTIFF pair (EPSG:32631) with inverted rectangles and a nodata corner."""
    import rasterio
    from affine import Affine

    rng = np.random.default_rng(seed)
    reference = rng.integers(1, 256, (height, width, 3), dtype=np.uint8)
    comparison = reference.copy()
    for y, x, h, w in ((40, 60, 120, 150), (300, 380, 160, 120), (200, 20, 60, 400)):
        comparison[y:y + h, x:x + w] = 255 - comparison[y:y + h, x:x + w]
    comparison[comparison == 0] = 1  # 0 is nodata
    reference[:30, :50] = 0
    comparison[:30, :50] = 0  # nodata in both: unknown
    transform = Affine(10.0, 0.0, 448_000.0, 0.0, -10.0, 5_412_000.0)
    paths = []
    for name, image in (("ref.tif", reference), ("cmp.tif", comparison)):
        profile = {"driver": "GTiff", "width": width, "height": height, "count": 3, "dtype": "uint8",
                   "crs": "EPSG:32631", "transform": transform, "nodata": 0}
        with rasterio.open(folder / name, "w", **profile) as dst:
            dst.write(np.moveaxis(image, 2, 0))
        paths.append(folder / name)
    return paths[0], paths[1]
