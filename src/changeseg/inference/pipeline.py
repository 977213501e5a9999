"""One pair, any backend: read → (align) → (tiled) predict → result → output folder.

Torch-free: it works with any *backend* object that has

- ``prepare(image, name) -> H×W×C array`` (read an image and adapt its channels),
- ``predict_proba(reference, comparison) -> K×H×W`` probabilities,
- ``class_names``, and optionally ``name``, ``trained`` and ``config.threshold``,

which both the PyTorch `ChangeDetector` and the ONNX runtime provide. `detect_pair` returns a
`ChangeResult`; `load_pair` + `detect_to_folder` add GeoTIFF handling (grid checks, nodata,
GeoTIFF/GeoJSON outputs, the windowed path for large rasters) and write the output folder
with regions.json last, so its presence marks a complete folder.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from changeseg.errors import InputError
from changeseg.inference.align import AlignOptions, align_pair
from changeseg.inference.result import ChangeResult, match_size, result_from_probabilities
from changeseg.inference.tiling import ProbaBackend, TileCallback, TilingOptions, predict_proba_auto
from changeseg.io.images import ImageLike, read_image

# GeoTIFF pairs larger than this (pixels) take the windowed path unless told otherwise.
WINDOWED_MIN_PIXELS = 16_000_000


@dataclass(frozen=True)
class DetectOptions:
    """Everything that shapes one detection besides the model (shared by CLI, batch and Python)."""

    threshold: float | None = None  # None: the model's own
    min_area: int | None = None  # None: the model's own (metadata.min_area), else 0
    resize: bool = False
    bands: str | tuple[int | str, ...] | None = None  # 1-based band numbers or band names
    tiling: TilingOptions = field(default_factory=TilingOptions)
    align: AlignOptions | None = None  # None: the pair must already be aligned
    save_probability: bool = False
    windowed: bool | None = None  # GeoTIFF pairs: None = automatic (above WINDOWED_MIN_PIXELS)


@dataclass
class PairInput:
    """A pair read (or, for the windowed path, only opened and checked) and ready to detect."""

    reference: np.ndarray | None
    comparison: np.ndarray | None
    georef: Any = None  # changeseg.io.geotiff.GeoReference of the reference, when it has one
    unknown: np.ndarray | None = None  # reference-grid pixels that are nodata in either image
    comparison_unknown: np.ndarray | None = None  # comparison-grid nodata (used when aligning)
    windowed: bool = False
    reference_path: Path | None = None
    comparison_path: Path | None = None
    band_labels: list[str] | None = None  # band names of GeoTIFF input, for the overlay's colours


def align_options(align: bool | str | AlignOptions | None) -> AlignOptions | None:
    """Normalise an `align` argument: False/None = off, True = defaults, "orb"/"sift" = that method."""
    if align is None or align is False:
        return None
    if align is True:
        return AlignOptions()
    if isinstance(align, str):
        return AlignOptions(method=align)
    if isinstance(align, AlignOptions):
        return align
    raise InputError(f"align must be a bool, a method name or AlignOptions, got {type(align).__name__}")


def backend_threshold(backend: Any) -> float:
    """The backend's own decision threshold (config.threshold), 0.5 when it has none."""
    return float(getattr(getattr(backend, "config", None), "threshold", 0.5))


def backend_min_area(backend: Any) -> int:
    """The backend's own minimum region area (config.metadata["min_area"]), 0 when it has none.

    A model whose regions are scored as detections (e.g. `pcb`) records the minimum area
    chosen with its threshold on its validation split.
    """
    metadata = getattr(getattr(backend, "config", None), "metadata", None) or {}
    return int(metadata.get("min_area", 0))


def detect_pair(backend: ProbaBackend, reference: ImageLike, comparison: ImageLike,
                threshold: float | None = None, min_area: int | None = None, resize: bool = False,
                tiling: TilingOptions | None = None, align: bool | str | AlignOptions | None = None,
                unknown: np.ndarray | None = None, comparison_unknown: np.ndarray | None = None,
                on_tile: TileCallback | None = None) -> ChangeResult:
    """Detect changes between two images with any backend (see the module docstring).

    Images larger than `tiling.tile_size` are predicted tile by tile. With `align`, the
    comparison is registered onto the reference first (any sizes) and reference pixels it
    does not cover become unknown; `unknown` (reference grid) and `comparison_unknown`
    (comparison grid, warped when aligning) mark nodata pixels. Unknown pixels are never changed.
    """
    started = time.perf_counter()
    ref = backend.prepare(reference, "reference")  # type: ignore[attr-defined]
    cmp = backend.prepare(comparison, "comparison")  # type: ignore[attr-defined]
    options = align_options(align)
    timings: dict[str, float] = {}
    report = None
    if options is not None:
        aligned_at = time.perf_counter()
        alignment = align_pair(ref, cmp, options)
        cmp = alignment.warped
        outside = alignment.unknown
        if comparison_unknown is not None:
            height, width = ref.shape[:2]
            warped_nodata = cv2.warpPerspective(comparison_unknown.astype(np.uint8), alignment.homography,
                                                (width, height), flags=cv2.INTER_NEAREST)
            outside = outside | warped_nodata.astype(bool)
        unknown = outside if unknown is None else (unknown | outside)
        report = alignment.report.to_dict()
        timings["align"] = (time.perf_counter() - aligned_at) * 1e3
    else:
        cmp = match_size(ref, cmp, resize)
        if comparison_unknown is not None and comparison_unknown.shape == ref.shape[:2]:
            unknown = comparison_unknown if unknown is None else (unknown | comparison_unknown)
    loaded = time.perf_counter()
    probs = predict_proba_auto(backend, ref, cmp, tiling, on_tile)
    inferred = time.perf_counter()
    threshold = backend_threshold(backend) if threshold is None else float(threshold)
    min_area = backend_min_area(backend) if min_area is None else int(min_area)
    result = result_from_probabilities(probs, cmp, threshold, min_area,
                                       list(backend.class_names),  # type: ignore[attr-defined]
                                       getattr(backend, "name", ""), getattr(backend, "trained", True),
                                       unknown)
    result.alignment = report
    result.timings_ms = {"read": (loaded - started) * 1e3 - sum(timings.values()), **timings,
                         "inference": (inferred - loaded) * 1e3,
                         "postprocess": (time.perf_counter() - inferred) * 1e3,
                         "total": (time.perf_counter() - started) * 1e3}
    return result


def check_channels(backend: Any, image: np.ndarray, name: str, source: Any = None) -> None:
    """Fail early, with a hint about band selection, when the model cannot take the image's bands."""
    try:
        backend.prepare(np.zeros((1, 1, image.shape[2]), image.dtype), name)
    except InputError as exc:
        where = f" {source}" if source is not None else ""
        raise InputError(f"{name}{where} has {image.shape[2]} band(s): {exc}; select bands with --bands "
                         "(bands=...), e.g. --bands 4,3,2 for Sentinel-2 RGB") from None


def _is_path(source: Any) -> bool:
    return isinstance(source, (str, os.PathLike))


def load_pair(reference: ImageLike, comparison: ImageLike, options: DetectOptions | None = None
              ) -> PairInput:
    """Read and check a pair before any model is involved (fails fast on bad input).

    GeoTIFFs (files or band folders) keep their georeference and nodata; a GeoTIFF pair must
    share CRS and footprint unless it is aligned or resized; large GeoTIFF pairs are only
    opened and checked here, for the windowed path.
    """
    from changeseg.io import geotiff

    options = options or DetectOptions()
    ref_geo = _is_path(reference) and geotiff.is_geotiff(reference)
    cmp_geo = _is_path(comparison) and geotiff.is_geotiff(comparison)
    bands = geotiff.parse_bands(options.bands)
    if ref_geo and cmp_geo:
        return _load_geotiff_pair(Path(reference), Path(comparison), bands, options)  # type: ignore[arg-type]
    georef = unknown = comparison_unknown = labels = None
    if ref_geo:
        ref, georef, unknown = geotiff.read_geotiff(reference, bands, "reference")  # type: ignore[arg-type]
    else:
        ref = geotiff.select_bands(read_image(reference, "reference"), bands, "reference")
    if cmp_geo:
        with geotiff.gdal_env(), geotiff.GeoRaster(comparison, bands, "comparison") as raster:  # type: ignore[arg-type]
            cmp = raster.read()
            comparison_unknown, labels = raster.nodata_mask(cmp), raster.band_labels
    else:
        cmp = geotiff.select_bands(read_image(comparison, "comparison"), bands, "comparison")
    if options.align is None:
        cmp = match_size(ref, cmp, options.resize)
        if comparison_unknown is not None and comparison_unknown.shape != ref.shape[:2]:
            comparison_unknown = None  # resized: its nodata no longer lines up
    return PairInput(ref, cmp, georef, unknown, comparison_unknown, band_labels=labels)


def _load_geotiff_pair(reference: Path, comparison: Path, bands: tuple[int | str, ...] | None,
                       options: DetectOptions) -> PairInput:
    from changeseg.io import geotiff

    with geotiff.gdal_env(), geotiff.GeoRaster(reference, bands, "reference") as ref, \
            geotiff.GeoRaster(comparison, bands, "comparison") as cmp:
        if ref.count != cmp.count:
            raise InputError(f"reference has {ref.count} band(s) but comparison has {cmp.count}")
        pixels = ref.width * ref.height
        windowed = options.windowed if options.windowed is not None else pixels > WINDOWED_MIN_PIXELS
        if windowed:
            if options.align is not None or options.resize:
                raise InputError("--align and --resize are not available on the windowed GeoTIFF path; "
                                 "pass --no-windowed to process the pair in memory")
            geotiff.check_same_grid(ref.georef, cmp.georef)
            return PairInput(None, None, ref.georef, windowed=True, reference_path=reference,
                             comparison_path=comparison)
        both_georeferenced = ref.georef.georeferenced and cmp.georef.georeferenced
        if options.align is None and not options.resize and both_georeferenced:
            geotiff.check_same_grid(ref.georef, cmp.georef)  # plain TIFFs: match_size below
        ref_image, cmp_image = ref.read(), cmp.read()
        ref_unknown, cmp_unknown = ref.nodata_mask(ref_image), cmp.nodata_mask(cmp_image)
        georef, labels = ref.georef, cmp.band_labels
    if options.align is None:
        cmp_image = match_size(ref_image, cmp_image, options.resize)
        if cmp_unknown is not None and cmp_unknown.shape != ref_image.shape[:2]:
            cmp_unknown = None
    return PairInput(ref_image, cmp_image, georef, ref_unknown, cmp_unknown, band_labels=labels)


def _geo_outputs(result: ChangeResult, georef: Any) -> Any:
    """A `before_summary` hook writing mask.tif, probability.tif and regions.geojson."""
    from changeseg.io import geotiff

    def write(out: Path) -> list[Path]:
        mask = result.mask.astype(np.uint8)
        if result.class_map is not None:
            mask = np.where(result.mask, result.class_map, 0).astype(np.uint8)
        if result.unknown is not None:
            mask[result.unknown] = geotiff.MASK_NODATA
        features = geotiff.mask_features(result.mask, result.regions, georef)
        return [geotiff.write_geotiff(out / "mask.tif", mask, georef, nodata=geotiff.MASK_NODATA),
                geotiff.write_geotiff(out / "probability.tif", result.probability.astype(np.float32), georef),
                geotiff.write_geojson(out / "regions.geojson", geotiff.feature_collection(features, georef))]

    return write


def detect_to_folder(backend: ProbaBackend, pair: PairInput, out_dir: str | os.PathLike,
                     options: DetectOptions | None = None, extra: dict[str, Any] | None = None,
                     on_tile: TileCallback | None = None) -> dict[str, Any]:
    """Detect one loaded pair and write its output folder; returns the regions.json summary.

    Always: mask.png, overlay.png, regions.json (last) and, on request, probability.png;
    unknown.png when pixels could not be judged; for georeferenced input also mask.tif,
    probability.tif and regions.geojson. The windowed path writes only the GeoTIFFs, the
    GeoJSON and regions.json.
    """
    options = options or DetectOptions()
    if pair.windowed:
        from changeseg.inference.geo import detect_geotiff_windowed

        assert pair.reference_path is not None and pair.comparison_path is not None
        return detect_geotiff_windowed(backend, pair.reference_path, pair.comparison_path, out_dir,
                                       bands=options.bands, threshold=options.threshold,
                                       min_area=options.min_area, tiling=options.tiling, extra=extra,
                                       on_tile=on_tile)
    assert pair.reference is not None and pair.comparison is not None
    if pair.reference.shape[2] > 4:
        check_channels(backend, pair.reference, "reference")
    result = detect_pair(backend, pair.reference, pair.comparison, options.threshold, options.min_area,
                         options.resize, options.tiling, options.align, pair.unknown,
                         pair.comparison_unknown, on_tile)
    shown = result.comparison
    if shown.shape[2] not in (1, 3, 4) or (pair.band_labels is not None and shown.dtype != np.uint8):
        from changeseg.io.geotiff import display_rgb

        result.comparison = display_rgb(result.comparison, pair.band_labels)  # for overlay.png only
    extra = dict(extra or {})
    hook = None
    if pair.georef is not None and pair.georef.georeferenced:
        extra["georeference"] = pair.georef.to_dict()
        hook = _geo_outputs(result, pair.georef)
    result.save(out_dir, save_probability=options.save_probability, extra=extra, before_summary=hook)
    return {**result.summary(), **extra}
