"""One large GeoTIFF pair on a Ray cluster: tile windows predicted by workers, written here.

`detect_geotiff_ray` runs the single-machine windowed path
(`changeseg.inference.geo.detect_geotiff_windowed`) with one change: the probabilities of each
batch of tile windows come from a pool of Ray actors (`TileWorker`, one loaded model each)
instead of the local model. Each actor task opens both rasters (a path every node can read),
reads its windows and prepares them exactly as the local path does (`read_prepared_tile`,
with the value ranges the driver estimated once), and predicts them
(`predict_tile_pairs`, the same batches). Batches are submitted ahead — a bounded number per
worker, so memory stays bounded — and collected in order; blending, region extraction and
writing (probability.tif, mask.tif, regions.geojson, regions.json) stay on the driver, in the
same order with the same code, so the outputs are those of the local windowed path, bit for
bit when the workers compute the same tile probabilities (same backend, precision and thread
count). One output GeoTIFF cannot be written by many processes at once, so the driver writes
it; the windows' inference — nearly all the work — is what spreads.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections import deque
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from changeseg.distributed.batch import ray_failure, worker_spec
from changeseg.distributed.cluster import WorkerOptions, pool_size, require_ray
from changeseg.distributed.storage import FolderStore, output_store
from changeseg.errors import ChangesegError, InputError
from changeseg.inference.geo import WindowedPair, detect_geotiff_windowed, read_prepared_tile
from changeseg.inference.loading import BackendSpec, load_backend
from changeseg.inference.outputs import prepare_output_folder
from changeseg.inference.tiling import Tile, TileCallback, TilingOptions, predict_tile_pairs, tile_batches

AHEAD_PER_WORKER = 2  # batches queued per worker beyond the one it is running


class TileWorker:
    """A Ray actor's state: one loaded model; predicts batches of tile windows of a pair."""

    def __init__(self, spec: BackendSpec) -> None:
        self.backend = load_backend(spec)

    def predict(self, pair: WindowedPair, tiles: Sequence[Tile]) -> list[np.ndarray]:
        """Read `tiles` of both rasters, prepare them as the local path does, and predict them."""
        from changeseg.io import geotiff

        with geotiff.gdal_env(), geotiff.GeoRaster(pair.reference, pair.bands, "reference") as ref, \
                geotiff.GeoRaster(pair.comparison, pair.bands, "comparison") as cmp:
            prepared = [read_prepared_tile(self.backend, ref, cmp, pair.reference_range,
                                           pair.comparison_range, tile) for tile in tiles]
        return [np.asarray(p, np.float32) for p in predict_tile_pairs(self.backend, prepared)]


class _RemoteTiles:
    """The `TilePredictor` of a pair: submits batches to the actor pool ahead of need and hands
    back their probabilities in the order `iter_blended_strips` asks for them."""

    def __init__(self, ray: Any, actors: list[Any], pair: WindowedPair) -> None:
        self.ray = ray
        self.actors = actors
        self.pair = pair
        tiling = pair.tiling
        self.batches = tile_batches(pair.height, pair.width, tiling.tile_size, int(tiling.overlap or 0),
                                    tiling.batch_size)
        self.pending: deque[tuple[list[Tile], Any]] = deque()
        self.next_batch = 0
        self.ahead = len(actors) * (1 + AHEAD_PER_WORKER)
        self.pair_ref = ray.put(pair)

    def _fill(self) -> None:
        while self.next_batch < len(self.batches) and len(self.pending) < self.ahead:
            batch = self.batches[self.next_batch]
            actor = self.actors[self.next_batch % len(self.actors)]
            self.pending.append((batch, actor.predict.remote(self.pair_ref, batch)))
            self.next_batch += 1

    def __call__(self, batch: Sequence[Tile]) -> list[np.ndarray]:
        self._fill()
        if not self.pending:
            raise RuntimeError("asked for more tile batches than the tiling has")
        expected, reference = self.pending.popleft()
        if list(batch) != expected:
            raise RuntimeError("tile batches asked for out of order")
        result = self.ray.get(reference)
        self._fill()
        return result


def detect_geotiff_ray(reference: str | os.PathLike, comparison: str | os.PathLike,
                       out_dir: str | os.PathLike, spec: BackendSpec | None = None, *,
                       bands: str | Sequence[int | str] | None = None,
                       threshold: float | None = None, min_area: int | None = None,
                       tiling: TilingOptions | None = None, scale: str | None = None,
                       workers: WorkerOptions | None = None, extra: dict[str, Any] | None = None,
                       on_tile: TileCallback | None = None) -> dict[str, Any]:
    """Detect changes in a GeoTIFF pair with its tile windows predicted on the connected Ray
    cluster; write mask.tif, probability.tif, regions.geojson and regions.json (last) into
    `out_dir` (a folder, or an object-store URI: written locally, then uploaded); return the
    regions.json summary (plus ``ray_workers``, the size of the pool, which regions.json does not
    record: it is the local path's). The inputs must be readable by every worker at the same path.

    Arguments as for `changeseg.inference.geo.detect_geotiff_windowed`; `workers` sizes the actor
    pool (see the module docstring).
    """
    ray = require_ray()
    if not ray.is_initialized():
        ray.init()
    spec = spec or BackendSpec()
    workers = workers or WorkerOptions()
    store = output_store(out_dir)
    store.check()
    reference, comparison = Path(reference).resolve(), Path(comparison).resolve()
    for name, path in (("reference", reference), ("comparison", comparison)):
        if not path.exists():
            raise InputError(f"{name}: file not found: {path}")
    backend = load_backend(replace(spec, device="cpu"))  # here only for class names, defaults, checks
    fits, wanted = pool_size(workers)
    count = min(fits, wanted)
    remote = ray.remote(TileWorker).options(num_cpus=workers.cpus, num_gpus=workers.gpus or None)
    actors = [remote.remote(worker_spec(spec, workers)) for _ in range(count)]
    staging = None
    try:
        if isinstance(store, FolderStore):
            folder = prepare_output_folder(store.root)
        else:
            staging = Path(tempfile.mkdtemp(prefix="changeseg-raster-"))
            folder = staging
        try:
            summary = detect_geotiff_windowed(
                backend, reference, comparison, folder, bands=bands, threshold=threshold, min_area=min_area,
                tiling=tiling, extra=extra, on_tile=on_tile, scale=scale,
                tile_predictor=lambda pair: _RemoteTiles(ray, actors, pair))
        except ChangesegError:
            raise
        except Exception as exc:  # Ray's own failures, or an error a worker raised
            if os.environ.get("CHANGESEG_DEBUG"):
                raise
            raise ChangesegError(f"the Ray run stopped: {ray_failure(exc)}") from None
        if staging is not None:
            store.publish(staging, "")
        return {**summary, "ray_workers": count}
    finally:
        for actor in actors:
            ray.kill(actor)
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)

