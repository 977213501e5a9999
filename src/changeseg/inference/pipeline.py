"""One pair, any backend: read → (align) → (tiled) predict → result → output folder.

Torch-free: it works with any *backend* (see `changeseg.inference.backend`), which both the
PyTorch `ChangeDetector` and the ONNX runtime are. `detect_pair` returns a
`ChangeResult`; `load_pair` + `detect_to_folder` add GeoTIFF handling (grid checks, nodata,
GeoTIFF/GeoJSON outputs, the windowed paths for large GeoTIFF pairs and large image files)
and write the output folder with regions.json last, so its presence marks a complete folder.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from changeseg.errors import InputError, PixelLimitError
from changeseg.inference.align import AlignOptions, align_pair, fill_uncovered
from changeseg.inference.backend import (
    ProbaBackend,
    backend_box_grow,
    backend_min_area,
    backend_split,
    backend_threshold,
    check_channels,
)
from changeseg.inference.outputs import prepare_output_folder
from changeseg.inference.result import ChangeResult, match_size, result_from_probabilities, size_mismatch
from changeseg.inference.tiling import (
    TileCallback,
    TilingOptions,
    default_windowed_tiling,
    predict_proba_auto,
)
from changeseg.io.images import DEFAULT_MAX_PIXELS, ImageLike, image_header, read_image, to_float
from changeseg.io.scaling import Scaling, resolve_scaling, scale_image

# GeoTIFF pairs and pairs of image files larger than this (pixels) take the windowed path
# unless told otherwise (`changeseg.inference.geo`, `changeseg.inference.windowed`).
WINDOWED_MIN_PIXELS = 16_000_000


@dataclass(frozen=True)
class DetectOptions:
    """Everything that shapes one detection besides the model (shared by CLI, batch and Python)."""

    threshold: float | None = None  # None: the model's own
    min_area: int | None = None  # None: the model's own (metadata.min_area), else 0
    split_depth: float | None = None  # None: the model's own (metadata.split_depth), else 0 (off)
    split_cover: float | None = None  # None: the model's own (metadata.split_cover), else 1.0
    resize: bool = False
    bands: str | tuple[int | str, ...] | None = None  # 1-based band numbers or band names
    tiling: TilingOptions | None = None  # None: 1024-pixel tiles in memory, 512 on the windowed paths
    windowed_tiling: TilingOptions | None = None  # the windowed paths' own; None: as `tiling`
    align: AlignOptions | None = None  # None: the pair must already be aligned
    save_probability: bool = False
    windowed: bool | None = None  # None = automatic (above WINDOWED_MIN_PIXELS)
    scale: str | None = None  # radiometric scaling spec (changeseg.io.scaling); None: "auto"
    max_pixels: int | None = DEFAULT_MAX_PIXELS  # larger files are refused before decoding
    save_branches: bool = False  # also write the MTF branch activation maps (branches/)

    def __post_init__(self) -> None:
        # bad split settings fail here, before any pair is read (the windowed paths ignore them)
        backend_split(None, self.split_depth, self.split_cover)

    def tiling_for(self, windowed: bool) -> TilingOptions:
        """The tiling of a pair left on disk (`windowed` True: `windowed_tiling`, else `tiling`,
        else `default_windowed_tiling()`) or of a pair in memory (`tiling`, else `TilingOptions()`)."""
        if windowed:
            return self.windowed_tiling or self.tiling or default_windowed_tiling()
        return self.tiling or TilingOptions()


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


@dataclass
class PreparedPair:
    """A pair read, scaled and (optionally) aligned onto the reference grid, ready to predict."""

    reference: np.ndarray
    comparison: np.ndarray
    unknown: np.ndarray | None = None  # H×W bool, reference grid: pixels that cannot be judged
    alignment: dict[str, Any] | None = None  # the alignment report when the pair was registered
    timings_ms: dict[str, float] = field(default_factory=dict)
    started: float = field(default_factory=time.perf_counter)
    ready: float | None = None  # when preparing ended (None: not yet)

    @property
    def prepare_ms(self) -> float:
        """Milliseconds spent reading, scaling and aligning the pair."""
        return ((self.ready if self.ready is not None else time.perf_counter()) - self.started) * 1e3


def prepare_pair(backend: ProbaBackend, reference: ImageLike, comparison: ImageLike, resize: bool = False,
                 align: bool | str | AlignOptions | None = None, unknown: np.ndarray | None = None,
                 comparison_unknown: np.ndarray | None = None, scale: str | Scaling | None = None
                 ) -> PreparedPair:
    """Read both images, scale them (`changeseg.io.scaling`), and align or size-check them.

    With `align`, the comparison is registered onto the reference (any sizes); reference
    pixels it does not cover become unknown and take the reference's own values in the
    warped comparison, so the network sees no difference there and no false change bleeds in
    from the edge of the overlap. `unknown` (reference grid) and `comparison_unknown`
    (comparison grid, warped when aligning) mark nodata pixels.
    """
    started = time.perf_counter()
    ref = backend.prepare(reference, "reference")  # type: ignore[attr-defined]
    cmp = backend.prepare(comparison, "comparison")  # type: ignore[attr-defined]
    ref = scale_image(ref, resolve_scaling(scale, backend, ref.dtype), unknown)
    cmp_ignore = comparison_unknown if comparison_unknown is not None and \
        comparison_unknown.shape == cmp.shape[:2] else None
    cmp = scale_image(cmp, resolve_scaling(scale, backend, cmp.dtype), cmp_ignore)
    if ref.dtype != cmp.dtype:  # e.g. an 8-bit and a 16-bit file: compare them on one 0–1 scale
        ref, cmp = to_float(ref), to_float(cmp)
    options = align_options(align)
    prepared = PreparedPair(ref, cmp, started=started)
    if options is not None:
        aligned_at = time.perf_counter()
        alignment = align_pair(ref, cmp, options)
        outside = alignment.unknown
        if comparison_unknown is not None:
            height, width = ref.shape[:2]
            warped_nodata = cv2.warpPerspective(comparison_unknown.astype(np.uint8), alignment.homography,
                                                (width, height), flags=cv2.INTER_NEAREST)
            outside = outside | warped_nodata.astype(bool)
        prepared.comparison = fill_uncovered(alignment.warped, ref, outside)
        prepared.unknown = outside if unknown is None else (unknown | outside)
        prepared.alignment = alignment.report.to_dict()
        prepared.timings_ms["align"] = (time.perf_counter() - aligned_at) * 1e3
    else:
        prepared.comparison = match_size(ref, cmp, resize)
        prepared.unknown = unknown
        if comparison_unknown is not None and comparison_unknown.shape == ref.shape[:2]:
            prepared.unknown = comparison_unknown if unknown is None else (unknown | comparison_unknown)
    prepared.ready = time.perf_counter()
    return prepared


def predict_prepared(backend: ProbaBackend, prepared: PreparedPair, threshold: float | None = None,
                     min_area: int | None = None, tiling: TilingOptions | None = None,
                     on_tile: TileCallback | None = None, split_depth: float | None = None,
                     split_cover: float | None = None) -> ChangeResult:
    """Predict a prepared pair (tiled when large) and turn the probabilities into a ChangeResult."""
    inferred_at = time.perf_counter()
    probs = predict_proba_auto(backend, prepared.reference, prepared.comparison, tiling, on_tile)
    return result_of(backend, prepared, probs, threshold, min_area, (time.perf_counter() - inferred_at) * 1e3,
                     split_depth, split_cover)


def result_of(backend: ProbaBackend, prepared: PreparedPair, probs: np.ndarray,
              threshold: float | None = None, min_area: int | None = None, inference_ms: float = 0.0,
              split_depth: float | None = None, split_cover: float | None = None) -> ChangeResult:
    """The ChangeResult of a prepared pair's class probabilities (`predict_proba_auto`), with its
    timings: read (+ align), `inference_ms`, postprocess, and their total.

    `threshold`, `min_area`, `split_depth` and `split_cover` that are None take the model's own
    (`changeseg.inference.backend`); region boxes are grown by the model's own `box_grow`."""
    finishing = time.perf_counter()
    threshold = backend_threshold(backend) if threshold is None else float(threshold)
    min_area = backend_min_area(backend) if min_area is None else int(min_area)
    split_depth, split_cover = backend_split(backend, split_depth, split_cover)
    result = result_from_probabilities(probs, prepared.comparison, threshold, min_area,
                                       list(backend.class_names),  # type: ignore[attr-defined]
                                       getattr(backend, "name", ""), getattr(backend, "trained", True),
                                       prepared.unknown, split_depth, split_cover, backend_box_grow(backend))
    result.alignment = prepared.alignment
    timings = prepared.timings_ms
    prepare_ms = prepared.prepare_ms
    postprocess_ms = (time.perf_counter() - finishing) * 1e3
    result.timings_ms = {"read": prepare_ms - sum(timings.values()), **timings, "inference": inference_ms,
                         "postprocess": postprocess_ms, "total": prepare_ms + inference_ms + postprocess_ms}
    return result


def detect_pair(backend: ProbaBackend, reference: ImageLike, comparison: ImageLike,
                threshold: float | None = None, min_area: int | None = None, resize: bool = False,
                tiling: TilingOptions | None = None, align: bool | str | AlignOptions | None = None,
                unknown: np.ndarray | None = None, comparison_unknown: np.ndarray | None = None,
                on_tile: TileCallback | None = None, scale: str | Scaling | None = None,
                split_depth: float | None = None, split_cover: float | None = None) -> ChangeResult:
    """Detect changes between two images with any backend (see the module docstring).

    `prepare_pair` reads, scales (`scale`, default "auto": the model's own) and aligns or
    size-checks the pair; `predict_prepared` predicts it, tile by tile when it is larger than
    `tiling.tile_size`. Unknown pixels (outside an alignment's overlap, nodata) are never changed.
    `split_depth` / `split_cover` (default: the model's own, else no splitting) split regions
    that hold several blobs (`changeseg.region_split`); bad values fail before any image is read.
    """
    split_depth, split_cover = backend_split(backend, split_depth, split_cover)
    prepared = prepare_pair(backend, reference, comparison, resize, align, unknown, comparison_unknown,
                            scale)
    return predict_prepared(backend, prepared, threshold, min_area, tiling, on_tile, split_depth, split_cover)


def _is_path(source: Any) -> bool:
    return isinstance(source, (str, os.PathLike))


def load_pair(reference: ImageLike, comparison: ImageLike, options: DetectOptions | None = None
              ) -> PairInput:
    """Read and check a pair before any model is involved (fails fast on bad input).

    GeoTIFFs (files or band folders) keep their georeference and nodata; a GeoTIFF pair must
    share CRS and footprint unless it is aligned or resized; large GeoTIFF pairs are only
    opened and checked here, for the windowed path. Image files over `options.max_pixels`
    are refused from their headers, before they are decoded.
    """
    from changeseg.io import geotiff

    options = options or DetectOptions()
    ref_geo = _is_path(reference) and geotiff.is_geotiff(reference)
    cmp_geo = _is_path(comparison) and geotiff.is_geotiff(comparison)
    bands = geotiff.parse_bands(options.bands)
    if ref_geo and cmp_geo:
        return _load_geotiff_pair(Path(reference), Path(comparison), bands, options)  # type: ignore[arg-type]
    if not ref_geo and not cmp_geo and _is_path(reference) and _is_path(comparison):
        windowed = _windowed_image_pair(Path(reference), Path(comparison), options)  # type: ignore[arg-type]
        if windowed is not None:
            return windowed
    georef = unknown = comparison_unknown = labels = None
    if ref_geo:
        ref, georef, unknown, _ = _read_raster(reference, bands, "reference", options.max_pixels)
    else:
        ref = geotiff.select_bands(read_image(reference, "reference", options.max_pixels), bands, "reference")
    if cmp_geo:
        cmp, _, comparison_unknown, labels = _read_raster(comparison, bands, "comparison", options.max_pixels)
    else:
        cmp = geotiff.select_bands(read_image(comparison, "comparison", options.max_pixels), bands,
                                   "comparison")
    if options.align is None:
        cmp = match_size(ref, cmp, options.resize)
        if comparison_unknown is not None and comparison_unknown.shape != ref.shape[:2]:
            comparison_unknown = None  # resized: its nodata no longer lines up
    return PairInput(ref, cmp, georef, unknown, comparison_unknown, band_labels=labels)


def _windowed_image_pair(reference: Path, comparison: Path, options: DetectOptions) -> PairInput | None:
    """A pair of large image files for the windowed image path (`changeseg.inference.windowed`):
    headers read and checked, nothing decoded; None to read the pair whole.

    Automatic above `WINDOWED_MIN_PIXELS` for a pair that is neither aligned, resized nor drawn
    as branch maps; `options.windowed` forces it on or off.
    """
    if options.windowed is False:
        return None
    ref = image_header(reference, "reference", options.max_pixels)
    cmp = image_header(comparison, "comparison", options.max_pixels)
    in_memory_only = options.align is not None or options.resize or options.save_branches
    if options.windowed is None and (in_memory_only or ref.pixels <= WINDOWED_MIN_PIXELS):
        return None
    if options.align is not None or options.resize:
        raise InputError("--align and --resize are not available on the windowed path; "
                         "pass --no-windowed to process the pair in memory")
    if ref.oriented_size != cmp.oriented_size:
        raise size_mismatch(ref.oriented_size, cmp.oriented_size)
    return PairInput(None, None, windowed=True, reference_path=reference, comparison_path=comparison)


def check_raster_pixels(raster: Any, max_pixels: int | None, name: str) -> None:
    """Refuse a GeoTIFF (or band folder) to be read whole when it has more than `max_pixels` pixels."""
    pixels = raster.width * raster.height
    if max_pixels is not None and pixels > max_pixels:
        raise PixelLimitError(f"{name}: {raster.path} is {raster.width}×{raster.height} = {pixels:,} pixels, "
                              f"over the limit of {max_pixels:,} pixels for reading a raster whole "
                              "(a GeoTIFF pair is processed in windows with --windowed)")


def _read_raster(path: Any, bands: tuple[int | str, ...] | None, name: str, max_pixels: int | None
                 ) -> tuple[np.ndarray, Any, np.ndarray | None, list[str]]:
    """A whole GeoTIFF or band folder: (image, georeference, nodata mask or None, band labels)."""
    from changeseg.io import geotiff

    with geotiff.gdal_env(), geotiff.GeoRaster(path, bands, name) as raster:
        check_raster_pixels(raster, max_pixels, name)
        image = raster.read()
        return image, raster.georef, raster.nodata_mask(image), raster.band_labels


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
        check_raster_pixels(ref, options.max_pixels, "reference")
        check_raster_pixels(cmp, options.max_pixels, "comparison")
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
    probability.tif and regions.geojson; with `options.save_branches` the branch activation
    maps in branches/. The windowed GeoTIFF path writes only the GeoTIFFs, the GeoJSON and
    regions.json. Outputs an earlier run left in the folder are removed first
    (`changeseg.inference.outputs`); a folder that cannot be written is an OutputError.

    The work comes in three stages, which a batch run overlaps across pairs
    (`changeseg.inference.batch_pipeline`): `prepare_loaded` (read, scale, align),
    `infer_prepared` (the model) and `write_inference` (regions and files); a windowed pair is
    one stage, `detect_windowed`.
    """
    options = options or DetectOptions()
    if pair.windowed:
        return detect_windowed(backend, pair, out_dir, options, extra, on_tile)
    inference = infer_prepared(backend, prepare_loaded(backend, pair, options), options, on_tile)
    return write_inference(backend, pair, inference, out_dir, options, extra)


def detect_windowed(backend: ProbaBackend, pair: PairInput, out_dir: str | os.PathLike,
                    options: DetectOptions, extra: dict[str, Any] | None = None,
                    on_tile: TileCallback | None = None) -> dict[str, Any]:
    """Detect a pair that `load_pair` left on disk (`pair.windowed`): large image files through
    `changeseg.inference.windowed`, large GeoTIFF pairs through `changeseg.inference.geo`.

    These paths collect regions strip by strip (`changeseg.inference.tiling.StreamingRegions`)
    and do not split merged regions nor grow their boxes: `options.split_depth` / `split_cover`
    and the model's own `metadata.split_depth` / `split_cover` / `box_grow` are ignored here."""
    from changeseg.inference.geo import detect_geotiff_windowed

    assert pair.reference_path is not None and pair.comparison_path is not None
    if options.save_branches:
        raise InputError("--save-branches needs the pair in memory; pass --no-windowed (and crop a "
                         "large raster) to draw branch maps")
    prepare_output_folder(out_dir)
    if pair.georef is None:  # image files (PNG, JPEG, …): decoded once each and spooled to disk
        from changeseg.inference.windowed import detect_images_windowed

        return detect_images_windowed(backend, pair.reference_path, pair.comparison_path, out_dir,
                                      bands=options.bands, threshold=options.threshold,
                                      min_area=options.min_area, tiling=options.tiling_for(windowed=True),
                                      save_probability=options.save_probability, scale=options.scale,
                                      max_pixels=options.max_pixels, extra=extra, on_tile=on_tile)
    return detect_geotiff_windowed(backend, pair.reference_path, pair.comparison_path, out_dir,
                                   bands=options.bands, threshold=options.threshold,
                                   min_area=options.min_area, tiling=options.tiling_for(windowed=True),
                                   extra=extra, on_tile=on_tile, scale=options.scale)


def prepare_loaded(backend: ProbaBackend, pair: PairInput, options: DetectOptions) -> PreparedPair:
    """Stage 1 of `detect_to_folder`: check the bands, scale and align (or size-check) a loaded pair."""
    assert pair.reference is not None and pair.comparison is not None
    if pair.reference.shape[2] > 4:
        check_channels(backend, pair.reference, "reference")
    return prepare_pair(backend, pair.reference, pair.comparison, options.resize, options.align,
                        pair.unknown, pair.comparison_unknown, options.scale)


@dataclass
class Inference:
    """What the model made of a prepared pair: class probabilities (and branch maps when asked for)."""

    prepared: PreparedPair
    probabilities: np.ndarray  # K×H×W float32
    inference_ms: float
    branch_maps: tuple[list[dict[str, np.ndarray]], list[int]] | None = None


def infer_prepared(backend: ProbaBackend, prepared: PreparedPair, options: DetectOptions,
                   on_tile: TileCallback | None = None) -> Inference:
    """Stage 2 of `detect_to_folder`, the model's: class probabilities (tiled when large) and,
    with `options.save_branches`, the branch activation maps."""
    branch_maps = None
    if options.save_branches:
        from changeseg.inference.branches import branch_maps_of, check_branch_size

        check_branch_size(prepared.reference.shape, options.tiling_for(windowed=False).tile_size)
        branch_maps = branch_maps_of(backend, prepared.reference, prepared.comparison)
    started = time.perf_counter()
    probs = predict_proba_auto(backend, prepared.reference, prepared.comparison,
                               options.tiling_for(windowed=False), on_tile)
    return Inference(prepared, probs, (time.perf_counter() - started) * 1e3, branch_maps)


def write_inference(backend: ProbaBackend, pair: PairInput, inference: Inference, out_dir: str | os.PathLike,
                    options: DetectOptions, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Stage 3 of `detect_to_folder`: regions and mask from the probabilities, then the output
    folder (cleared of an earlier run's outputs, regions.json last); returns the summary."""
    prepared = inference.prepared
    result = result_of(backend, prepared, inference.probabilities, options.threshold, options.min_area,
                       inference.inference_ms, options.split_depth, options.split_cover)
    shown = result.comparison
    if shown.shape[2] not in (1, 3, 4) or (pair.band_labels is not None and shown.dtype != np.uint8):
        from changeseg.io.geotiff import display_rgb

        result.comparison = display_rgb(result.comparison, pair.band_labels)  # for overlay.png only
    extra = dict(extra or {})
    hooks = []
    if pair.georef is not None and pair.georef.georeferenced:
        extra["georeference"] = pair.georef.to_dict()
        hooks.append(_geo_outputs(result, pair.georef))
    if inference.branch_maps is not None:
        hooks.append(_branch_outputs(*inference.branch_maps, prepared.reference.shape[:2]))
    prepare_output_folder(out_dir)
    result.save(out_dir, save_probability=options.save_probability, extra=extra,
                before_summary=_chain(hooks) if hooks else None)
    return {**result.summary(), **extra}


def _branch_outputs(levels: list[dict[str, np.ndarray]], strides: list[int], size: tuple[int, int]) -> Any:
    """A `before_summary` hook writing branches/level<k>_<branch>.png and branches.json."""
    from changeseg.inference.branches import write_branch_maps

    return lambda out: write_branch_maps(out, levels, strides, size)


def _chain(hooks: list[Any]) -> Any:
    """One `before_summary` hook that runs several and returns every file they wrote."""
    return lambda out: [path for hook in hooks for path in hook(out)]
