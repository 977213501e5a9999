"""One large GeoTIFF pair whose tile windows are predicted on Ray: identical outputs to the local
windowed path (same backend, precision and thread count), and the tile batches it relies on."""

from __future__ import annotations

import json

import numpy as np
import pytest

from changeseg.distributed.cluster import WorkerOptions
from changeseg.distributed.raster import detect_geotiff_ray
from changeseg.inference.loading import BackendSpec
from changeseg.inference.tiling import TilingOptions, iter_blended_strips, tile_batches, tile_grid
from tests.distributed.conftest import write_geotiff_pair

TILING = TilingOptions(160, 32, 2)


def _read(path):
    import rasterio

    with rasterio.open(path) as raster:
        return raster.read(), raster.crs, raster.transform, raster.nodata


def _without_timings(summary):
    return {k: v for k, v in summary.items() if k not in ("timings_ms", "ray_workers")}


class CoordinateBackend:
    """Probabilities that depend on the tile's pixels only, so blending is easy to check."""

    class_names = ["unchanged", "changed"]

    def predict_proba(self, reference, comparison):
        changed = (reference[..., 0].astype(np.float32) / 255.0)
        return np.stack([1.0 - changed, changed])


def test_tile_batches_are_the_order_the_blender_asks_for_them():
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (300, 410, 3), dtype=np.uint8)
    batches = tile_batches(300, 410, 128, 32, 3)
    assert sum(len(b) for b in batches) == sum(len(row) for row in tile_grid(300, 410, 128, 32))
    assert all(len({t.y for t in batch}) == 1 for batch in batches)  # a batch never spans tile rows
    backend = CoordinateBackend()
    asked = []

    def remote(batch):  # what a cluster would do: read and predict the windows elsewhere
        asked.append(list(batch))
        return [backend.predict_proba(*(image[t.slices],) * 2) for t in batch]

    def read(tile):
        return image[tile.slices], image[tile.slices]

    local = list(iter_blended_strips(backend, read, 300, 410, 128, 32, 3))
    distributed = list(iter_blended_strips(backend, read, 300, 410, 128, 32, 3, predict_tiles=remote))
    assert asked == batches
    assert [top for top, _ in local] == [top for top, _ in distributed]
    assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(local, distributed))


def test_windows_on_ray_equal_the_local_windowed_path(local_ray, tiny_checkpoint, tmp_path, monkeypatch):
    torch = pytest.importorskip("torch")
    from changeseg.inference.geo import detect_geotiff_windowed
    from changeseg.inference.predictor import ChangeDetector

    reference, comparison = write_geotiff_pair(tmp_path)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in each Ray worker (1 CPU): the same float reductions
    try:
        detector = ChangeDetector.from_pretrained(tiny_checkpoint, precision="fp32")
        local = detect_geotiff_windowed(detector, reference, comparison, tmp_path / "local", tiling=TILING,
                                        min_area=4)
    finally:
        torch.set_num_threads(threads)
    import changeseg.distributed.raster as raster

    def driver_backend(spec):  # the driver's copy must never predict: the workers do
        backend = ChangeDetector.from_pretrained(spec.model, precision=spec.precision)
        backend.predict_proba = backend.predict_proba_batch = None
        return backend

    monkeypatch.setattr(raster, "load_backend", driver_backend)
    progress = []
    ray = detect_geotiff_ray(reference, comparison, tmp_path / "ray",
                             BackendSpec(str(tiny_checkpoint), precision="fp32"), tiling=TILING, min_area=4,
                             workers=WorkerOptions(workers=2), on_tile=lambda done, total: progress.append(
                                 (done, total)))
    tiles = sum(len(batch) for batch in tile_batches(520, 610, 160, 32, 2))
    assert progress[-1] == (tiles, tiles) and len(progress) == len(tile_batches(520, 610, 160, 32, 2))
    assert sorted(p.name for p in (tmp_path / "ray").iterdir()) == [
        "mask.tif", "probability.tif", "regions.geojson", "regions.json"]
    assert local["region_count"] >= 3 and local["unknown_pixels"] == 30 * 50
    assert _without_timings(ray) == _without_timings(local) and ray["ray_workers"] == 2
    for name in ("mask.tif", "probability.tif"):
        ours, theirs = _read(tmp_path / "ray" / name), _read(tmp_path / "local" / name)
        assert np.array_equal(ours[0], theirs[0]), name  # bit for bit
        assert ours[1:] == theirs[1:]  # CRS, transform, nodata
    assert json.loads((tmp_path / "ray" / "regions.geojson").read_text()) == \
        json.loads((tmp_path / "local" / "regions.geojson").read_text())
    stored, expected = (json.loads((tmp_path / run / "regions.json").read_text()) for run in ("ray", "local"))
    assert _without_timings(stored) == _without_timings(expected)
