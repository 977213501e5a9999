"""Large GeoTIFF pairs with bounded memory: windowed reads, tiled prediction, windowed writes.

`detect_geotiff_windowed` never holds a whole image: tiles are read as windows from both
rasters, blended strips are written to probability.tif as they finish, changed regions are
collected strip by strip (`StreamingRegions`) with their provisional labels spilled to a
temporary GeoTIFF, and a second pass over that file writes mask.tif and traces each region's
polygon for regions.geojson. regions.json is written last. Peak memory is set by the tile
size, the tile batch and the image *width* (one strip of rows), not by the image area.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from changeseg.errors import InputError
from changeseg.inference.backend import ProbaBackend, backend_min_area, backend_threshold, check_channels
from changeseg.inference.tiling import (
    StreamingRegions,
    Tile,
    TileCallback,
    TilePredictor,
    TilingOptions,
    change_classes,
    default_windowed_tiling,
    iter_blended_strips,
)
from changeseg.io import geotiff
from changeseg.io.images import write_json
from changeseg.io.scaling import apply_range, resolve_scaling, sampled_rows, value_range
from changeseg.labels import is_change

# Regions whose bounding box exceeds this many pixels are traced from a decimated read.
MAX_POLYGON_PIXELS = 4096 * 4096


@dataclass(frozen=True)
class WindowedPair:
    """What another process needs to read and prepare the tiles of a windowed pair exactly as
    `detect_geotiff_windowed` does (`read_prepared_tile`): the inputs, the band selection, the
    raw value ranges the scaling maps to 0–1 (estimated once, here), the size and the tiling."""

    reference: str
    comparison: str
    bands: str | tuple[int | str, ...] | None
    reference_range: tuple[float, float] | None
    comparison_range: tuple[float, float] | None
    height: int
    width: int
    tiling: TilingOptions


def read_prepared_tile(backend: ProbaBackend, reference: geotiff.GeoRaster, comparison: geotiff.GeoRaster,
                       reference_range: tuple[float, float] | None,
                       comparison_range: tuple[float, float] | None, tile: Tile
                       ) -> tuple[np.ndarray, np.ndarray]:
    """One tile window of both rasters, adapted to the model (`backend.prepare`) and scaled to 0–1."""
    r = reference.read(tile.y, tile.x, tile.height, tile.width)
    c = comparison.read(tile.y, tile.x, tile.height, tile.width)
    return (apply_range(backend.prepare(r, "reference"), reference_range),  # type: ignore[attr-defined]
            apply_range(backend.prepare(c, "comparison"), comparison_range))  # type: ignore[attr-defined]


def detect_geotiff_windowed(backend: ProbaBackend, reference: str | os.PathLike,
                            comparison: str | os.PathLike, out_dir: str | os.PathLike, *,
                            bands: str | Sequence[int | str] | None = None, threshold: float | None = None,
                            min_area: int | None = None, tiling: TilingOptions | None = None,
                            extra: dict[str, Any] | None = None,
                            on_tile: TileCallback | None = None, scale: str | None = None,
                            tile_predictor: Callable[[WindowedPair], TilePredictor] | None = None
                            ) -> dict[str, Any]:
    """Detect changes in a GeoTIFF pair window by window; write mask.tif, probability.tif,
    regions.geojson and regions.json (last) into `out_dir`; return the regions.json summary.

    mask.tif: 0 unchanged, 1 changed (typed models: the class index), 255 nodata/unknown.
    probability.tif: float32 probability of any change. Both carry the reference's CRS and
    transform. The pair must share CRS and footprint. `threshold` and `min_area` default to
    the model's own; `scale` is the radiometric scaling (`changeseg.io.scaling`),
    whose percentiles are estimated here from evenly spaced rows of each raster. Regions are
    collected strip by strip and never split (`changeseg.region_split`) nor grown: a model's
    `metadata.split_depth` / `split_cover` / `box_grow` are ignored on this path.

    `tile_predictor(pair)`, when given, returns the function that predicts each batch of tiles
    (see `iter_blended_strips`) — e.g. on the workers of a Ray cluster
    (`changeseg.distributed.raster`); everything else, blending and writing included, stays here,
    so the outputs are those of the single-machine path.
    """
    started = time.perf_counter()
    tiling = tiling or default_windowed_tiling()
    if not tiling.tile_size:  # "never tile" cannot bound memory: use the default tiles
        tiling = default_windowed_tiling(tiling.batch_size)
    tile_size, overlap = tiling.tile_size, int(tiling.overlap or 0)
    out = Path(out_dir)
    class_names = list(backend.class_names)  # type: ignore[attr-defined]
    threshold = backend_threshold(backend) if threshold is None else float(threshold)
    min_area = backend_min_area(backend) if min_area is None else int(min_area)
    if not 0.0 <= threshold <= 1.0:
        raise InputError(f"threshold must be between 0 and 1, got {threshold}")
    with geotiff.gdal_env(), geotiff.GeoRaster(reference, bands, "reference") as ref, \
            geotiff.GeoRaster(comparison, bands, "comparison") as cmp:
        geotiff.check_same_grid(ref.georef, cmp.georef)
        if ref.count != cmp.count:
            raise InputError(f"reference has {ref.count} band(s) but comparison has {cmp.count}")
        check_channels(backend, np.zeros((1, 1, ref.count), ref.dtype), "reference", ref.path)
        georef = ref.georef
        height, width = ref.height, ref.width
        has_nodata = any(v is not None for v in ref.nodata + cmp.nodata)
        out.mkdir(parents=True, exist_ok=True)

        ref_range, cmp_range = (_raster_range(backend, raster, scale) for raster in (ref, cmp))

        def read_tile(tile: Tile) -> tuple[np.ndarray, np.ndarray]:
            return read_prepared_tile(backend, ref, cmp, ref_range, cmp_range, tile)

        predict_tiles = None
        if tile_predictor is not None:
            predict_tiles = tile_predictor(WindowedPair(
                str(reference), str(comparison), geotiff.parse_bands(bands), ref_range, cmp_range, height,
                width, TilingOptions(tile_size, overlap, tiling.batch_size)))

        fd, labels_name = tempfile.mkstemp(prefix=".labels.", suffix=".tif", dir=out)
        os.close(fd)
        labels_path = Path(labels_name)
        try:
            inferred_at = time.perf_counter()
            streaming: StreamingRegions | None = None
            unknown_pixels = 0
            typed = len(class_names) > 2
            probability_writer = geotiff.GeoTiffWriter(out / "probability.tif", georef, 1, np.float32)
            labels_writer = geotiff.GeoTiffWriter(labels_path, georef, 2 if typed else 1, np.int32)
            try:
                for top, strip in iter_blended_strips(backend, read_tile, height, width, tile_size,
                                                      overlap, tiling.batch_size, on_tile=on_tile,
                                                      predict_tiles=predict_tiles):
                    rows = strip.shape[1]
                    probability = 1.0 - strip[0]
                    changed = is_change(probability, threshold)
                    unknown = None
                    if has_nodata:
                        unknown = _strip_nodata(ref, cmp, top, rows)
                        if unknown is not None:
                            probability[unknown] = 0.0
                            changed &= ~unknown
                            unknown_pixels += int(unknown.sum())
                    class_map = change_classes(strip) if typed else None
                    if streaming is None:
                        streaming = StreamingRegions(width, len(class_names))
                    labels = streaming.add_strip(top, changed, probability, class_map)
                    if unknown is not None:
                        labels[unknown] = -1
                    probability_writer.write_rows(top, probability[None])
                    labels_writer.write_rows(top, np.stack([labels, class_map]) if typed else labels[None])
                probability_writer.close()
                labels_writer.close()
            except BaseException:
                probability_writer.abort()
                labels_writer.abort()
                raise
            assert streaming is not None
            regions, lookup = streaming.finish(min_area, class_names if typed else None)
            postprocess_at = time.perf_counter()
            changed_pixels = _write_mask(labels_path, out / "mask.tif", georef, lookup, typed)
            features = _region_features(labels_path, regions, lookup, georef)
            geotiff.write_geojson(out / "regions.geojson", geotiff.feature_collection(features, georef))
        finally:
            labels_path.unlink(missing_ok=True)
    done = time.perf_counter()
    summary: dict[str, Any] = {
        "model": getattr(backend, "name", ""),
        "trained": getattr(backend, "trained", True),
        "width": width,
        "height": height,
        "threshold": threshold,
        "changed_fraction": round(changed_pixels / (width * height), 6),
        "changed_pixels": changed_pixels,
        "region_count": len(regions),
        "timings_ms": {"inference": round((postprocess_at - inferred_at) * 1e3, 2),
                       "postprocess": round((done - postprocess_at) * 1e3, 2),
                       "total": round((done - started) * 1e3, 2)},
    }
    if has_nodata:
        summary["unknown_fraction"] = round(unknown_pixels / (width * height), 6)
        summary["unknown_pixels"] = unknown_pixels
    summary["regions"] = [r.to_dict() for r in regions]
    summary["georeference"] = georef.to_dict()
    summary["windowed"] = {"tile_size": tile_size, "tile_overlap": overlap,
                           "tile_batch": tiling.batch_size}
    summary.update(extra or {})
    write_json(out / "regions.json", summary)
    return summary


def _raster_range(backend: Any, raster: geotiff.GeoRaster, scale: str | None) -> tuple[float, float] | None:
    """The raw values a raster's scaling maps to 0 and 1 (percentiles from sampled rows), or None."""
    scaling = resolve_scaling(scale, backend, raster.dtype)
    if scaling.method == "percentile":
        sample = sampled_rows(raster.read, raster.height, raster.width)
        return value_range(backend.prepare(sample, raster.name), scaling, raster.nodata_mask(sample))
    return value_range(np.zeros((1, 1, raster.count), raster.dtype), scaling)


def _strip_nodata(ref: geotiff.GeoRaster, cmp: geotiff.GeoRaster, top: int, rows: int) -> np.ndarray | None:
    masks = [m for m in (ref.nodata_mask(ref.read(top, 0, rows, ref.width)),
                         cmp.nodata_mask(cmp.read(top, 0, rows, cmp.width))) if m is not None]
    if not masks:
        return None
    return np.logical_or.reduce(masks)


def _map_labels(labels: np.ndarray, lookup: np.ndarray) -> np.ndarray:
    """Region id per pixel (0 = none or dropped) from provisional labels (-1 unknown, 0 none)."""
    return np.where(labels > 0, lookup[np.clip(labels, 0, None)], 0)


def _write_mask(labels_path: Path, mask_path: Path, georef: geotiff.GeoReference, lookup: np.ndarray,
                typed: bool) -> int:
    """Second pass: provisional labels → mask.tif (kept regions only); returns the changed pixel count."""
    rasterio = geotiff._rasterio()
    from rasterio.windows import Window

    changed = 0
    with rasterio.open(labels_path) as labels_file, \
            geotiff.GeoTiffWriter(mask_path, georef, 1, np.uint8, nodata=geotiff.MASK_NODATA) as writer:
        for top in range(0, georef.height, geotiff.BLOCK):
            rows = min(geotiff.BLOCK, georef.height - top)
            block = labels_file.read(window=Window(0, top, georef.width, rows))
            labels = block[0]
            region = _map_labels(labels, lookup)
            mask = (region > 0).astype(np.uint8)
            changed += int(mask.sum())
            if typed:
                mask = np.where(region > 0, block[1], 0).astype(np.uint8)
            mask[labels < 0] = geotiff.MASK_NODATA
            writer.write_rows(top, mask)
    return changed


def _region_features(labels_path: Path, regions: list, lookup: np.ndarray,
                     georef: geotiff.GeoReference) -> list[dict[str, Any]]:
    """Trace each region from its bounding-box window of the label file (decimated when huge)."""
    rasterio = geotiff._rasterio()
    from rasterio.enums import Resampling
    from rasterio.windows import Window

    features = []
    with rasterio.open(labels_path) as labels_file:
        for region in regions:
            x0, y0, x1, y1 = region.box
            w, h = x1 - x0, y1 - y0
            step = max(1, int(np.ceil(np.sqrt(w * h / MAX_POLYGON_PIXELS))))
            window = Window(x0, y0, w, h)
            if step == 1:
                labels = labels_file.read(1, window=window)
            else:
                labels = labels_file.read(1, window=window, out_shape=(max(1, h // step), max(1, w // step)),
                                          resampling=Resampling.nearest)
            component = _map_labels(labels, lookup) == region.id
            scale = w / component.shape[1] if step > 1 else 1.0
            polygons = geotiff.component_polygons(component, x0, y0, scale)
            features.append(geotiff.region_feature(region.to_dict(), polygons, georef))
    return features
