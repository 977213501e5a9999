"""Large image files (PNG, JPEG, TIFF, WebP, BMP) with bounded memory: spooled, tiled, streamed out.

Those formats cannot be read in windows, so `detect_images_windowed` decodes each image once,
adapts it to the model's bands and *spools* it, uncompressed, to a temporary file in the
output folder; the decoded array is dropped before the next image is read. Tiles are then read
back one row of tiles at a time (one band of rows of each image), predicted and blended
(`iter_blended_strips`); each finished strip is thresholded at once, its regions collected
(`StreamingRegions`), and only compact per-pixel maps are kept: the change code of each pixel
(uint8: 0 unchanged, else its class — 1 for a binary model) and, when probability.png is
asked for, its 8-bit value. Regions under `min_area` are then dropped strip by strip
(`StreamingRegions.strip_labels`), and mask.png, types.png, probability.png and overlay.png
are written band by band (`write_png_bands`; the overlay reads the comparison back from its
spool). regions.json comes last, as on every path.

No full-size float array exists at any point: the peak is the model and one row of tiles,
plus 1–2 bytes per pixel. The outputs are those of the in-memory path (`detect_to_folder` with
`windowed=False`); regions.json adds a `windowed` block.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from changeseg.errors import InputError
from changeseg.inference.backend import ProbaBackend, backend_min_area, backend_threshold
from changeseg.inference.outputs import SPOOL_PREFIX
from changeseg.inference.result import as_bytes, overlay_bands, size_mismatch, summary_record
from changeseg.inference.tiling import (
    StreamingRegions,
    Tile,
    TileCallback,
    TilingOptions,
    change_classes,
    default_windowed_tiling,
    iter_blended_strips,
)
from changeseg.io.images import (
    DEFAULT_MAX_PIXELS,
    display_range,
    output_error,
    read_image,
    row_bands,
    to_float,
    write_json,
    write_png,
    write_png_bands,
)
from changeseg.io.scaling import apply_range, resolve_scaling, sampled_rows, value_range
from changeseg.labels import is_change

SPOOL_BAND_ROWS = 256  # rows written to a spool file at a time


@dataclass
class SpooledImage:
    """A decoded image kept, uncompressed and row-major (H×W×C), in a temporary file.

    `display` is what `to_uint8_rgb` stretches it by (float images: its minimum and maximum).
    """

    path: Path
    height: int
    width: int
    channels: int
    dtype: np.dtype
    display: tuple[float, float] | None = None

    def read(self, top: int, rows: int) -> np.ndarray:
        """Rows [top, top + rows) of the image (rows×W×C), read straight into a new array."""
        rows = max(0, min(rows, self.height - top))
        out = np.empty((rows, self.width, self.channels), self.dtype)
        with self.path.open("rb") as handle:
            handle.seek(top * out[:1].nbytes)
            if handle.readinto(memoryview(out).cast("B")) != out.nbytes:
                raise InputError(f"spooled image {self.path} is shorter than expected")
        return out

    def read_window(self, y: int, x: int, height: int, width: int) -> np.ndarray:
        """A window (height×width×C) of the image: `changeseg.io.scaling.RowReader`."""
        return self.read(y, height)[:, x:x + width]


def spool_image(backend: ProbaBackend, source: str | os.PathLike, name: str, folder: Path,
                bands: str | Sequence[int | str] | None = None, max_pixels: int | None = DEFAULT_MAX_PIXELS
                ) -> SpooledImage:
    """Decode an image file, adapt it to the model's bands (`backend.prepare`) and spool it into
    `folder` (a hidden temporary file; the caller deletes it). Only the decoded image is ever held."""
    from changeseg.io.geotiff import parse_bands, select_bands

    image = select_bands(read_image(source, name, max_pixels), parse_bands(bands), name)
    image = backend.prepare(image, name)  # type: ignore[attr-defined]
    fd, temporary = tempfile.mkstemp(prefix=f"{SPOOL_PREFIX}{name}.", suffix=".tmp", dir=folder)
    path = Path(temporary)
    try:
        with os.fdopen(fd, "wb") as handle:
            for band in row_bands(image, SPOOL_BAND_ROWS):
                handle.write(memoryview(np.ascontiguousarray(band)).cast("B"))
    except OSError as exc:
        path.unlink(missing_ok=True)
        raise output_error(path, exc) from None
    height, width, channels = image.shape
    return SpooledImage(path, height, width, channels, image.dtype, display_range(image))


class _RowOfTiles:
    """Reads the tiles of one row of tiles from two spooled images, holding one band of each."""

    def __init__(self, reference: SpooledImage, comparison: SpooledImage,
                 ranges: tuple[tuple[float, float] | None, tuple[float, float] | None]) -> None:
        self.images = (reference, comparison)
        self.ranges = ranges
        self.mixed = reference.dtype != comparison.dtype
        self.top: int | None = None
        self.bands: tuple[np.ndarray, ...] = ()

    def __call__(self, tile: Tile) -> tuple[np.ndarray, np.ndarray]:
        if self.top != tile.y:
            self.bands = ()  # drop the previous row's bands before reading the next
            self.bands = tuple(image.read(tile.y, tile.height) for image in self.images)
            self.top = tile.y
        columns = slice(tile.x, tile.x + tile.width)
        ref, cmp = (apply_range(band[:, columns], bounds) for band, bounds in zip(self.bands, self.ranges))
        if self.mixed or ref.dtype != cmp.dtype:  # e.g. 8- and 16-bit: one 0–1 scale, as prepare_pair does
            ref, cmp = to_float(ref), to_float(cmp)
        return ref, cmp


def _spool_range(backend: Any, image: SpooledImage, scale: str | None) -> tuple[float, float] | None:
    """The raw values the scaling maps to 0 and 1 (percentiles from evenly spaced rows), or None."""
    scaling = resolve_scaling(scale, backend, image.dtype)
    if scaling.method == "percentile":
        return value_range(sampled_rows(image.read_window, image.height, image.width), scaling)
    return value_range(np.zeros((1, 1, image.channels), image.dtype), scaling)


def _mask_bands(codes: np.ndarray) -> Iterator[np.ndarray]:
    """mask.png's rows (0/255 uint8), one band at a time."""
    for band in row_bands(codes):
        yield as_bytes(band > 0) * np.uint8(255)


def detect_images_windowed(backend: ProbaBackend, reference: str | os.PathLike, comparison: str | os.PathLike,
                           out_dir: str | os.PathLike, *, bands: str | Sequence[int | str] | None = None,
                           threshold: float | None = None, min_area: int | None = None,
                           tiling: TilingOptions | None = None, save_probability: bool = False,
                           scale: str | None = None, max_pixels: int | None = DEFAULT_MAX_PIXELS,
                           extra: dict[str, Any] | None = None, on_tile: TileCallback | None = None
                           ) -> dict[str, Any]:
    """Detect changes in a pair of large image files with bounded memory (see the module docstring);
    write mask.png, overlay.png, types.png (typed models), probability.png (`save_probability`)
    and regions.json (last) into `out_dir`, which must exist; return the regions.json summary.

    `threshold` and `min_area` default to the model's own; `scale` is the radiometric scaling
    (`changeseg.io.scaling`; percentiles come from evenly spaced rows). The pair must have one
    size (no alignment or resizing on this path). Regions are collected strip by strip and never
    split (`changeseg.region_split`) nor their boxes grown: a model's `metadata.split_depth` /
    `split_cover` / `box_grow` are ignored on this path.
    """
    started = time.perf_counter()
    tiling = tiling or default_windowed_tiling()
    if not tiling.tile_size:  # "never tile" cannot bound memory: use the default tiles
        tiling = default_windowed_tiling(tiling.batch_size)
    class_names = list(backend.class_names)  # type: ignore[attr-defined]
    typed = len(class_names) > 2
    threshold = backend_threshold(backend) if threshold is None else float(threshold)
    min_area = backend_min_area(backend) if min_area is None else int(min_area)
    if not 0.0 <= threshold <= 1.0:
        raise InputError(f"threshold must be between 0 and 1, got {threshold}")
    out = Path(out_dir)
    spools: list[SpooledImage] = []
    try:
        ref = spool_image(backend, reference, "reference", out, bands, max_pixels)
        spools.append(ref)
        cmp = spool_image(backend, comparison, "comparison", out, bands, max_pixels)
        spools.append(cmp)
        if (ref.width, ref.height) != (cmp.width, cmp.height):
            raise size_mismatch((ref.width, ref.height), (cmp.width, cmp.height))
        height, width = ref.height, ref.width
        ranges = (_spool_range(backend, ref, scale), _spool_range(backend, cmp, scale))
        inferred_at = time.perf_counter()
        codes = np.zeros((height, width), np.uint8)  # 0 unchanged, else the change class
        probability8 = np.zeros((height, width), np.uint8) if save_probability else None
        streaming = StreamingRegions(width, len(class_names))
        strips: list[tuple[int, int]] = []
        for top, strip in iter_blended_strips(backend, _RowOfTiles(ref, cmp, ranges), height, width,
                                              tiling.tile_size, int(tiling.overlap or 0), tiling.batch_size,
                                              on_tile=on_tile):
            rows = strip.shape[1]
            probability = np.subtract(1.0, strip[0], dtype=np.float32)
            changed = is_change(probability, threshold)
            classes = change_classes(strip) if typed else None
            streaming.add_strip(top, changed, probability, classes)
            band = codes[top:top + rows]
            if classes is None:
                band[changed] = 1
            else:
                np.copyto(band, classes, where=changed)
            if probability8 is not None:
                probability8[top:top + rows] = (probability * 255).round()
            strips.append((top, rows))
            del probability, changed, classes
        postprocess_at = time.perf_counter()
        regions, lookup = streaming.finish(min_area, class_names if typed else None)
        if (lookup[1:] == 0).any():  # some regions are under min_area: clear their pixels
            for top, rows in strips:
                band = codes[top:top + rows]
                band[lookup[streaming.strip_labels(top, band > 0)] == 0] = 0
        changed_pixels = int(np.count_nonzero(codes))
        _write_outputs(out, codes, probability8, cmp, ranges[1], class_names if typed else None)
    finally:
        for spool in spools:
            spool.path.unlink(missing_ok=True)
    done = time.perf_counter()
    timings = {"read": (inferred_at - started) * 1e3, "inference": (postprocess_at - inferred_at) * 1e3,
               "postprocess": (done - postprocess_at) * 1e3, "total": (done - started) * 1e3}
    summary = summary_record(getattr(backend, "name", ""), getattr(backend, "trained", True), width, height,
                             threshold, changed_pixels, regions, timings, class_names if typed else None)
    summary["windowed"] = {"tile_size": tiling.tile_size, "tile_overlap": int(tiling.overlap or 0),
                           "tile_batch": tiling.batch_size}
    summary.update(extra or {})
    write_json(out / "regions.json", summary)
    return summary


def _write_outputs(out: Path, codes: np.ndarray, probability8: np.ndarray | None, comparison: SpooledImage,
                   comparison_range: tuple[float, float] | None, class_names: list[str] | None) -> list[Path]:
    """mask.png, overlay.png, types.png (typed), probability.png (when kept), each band by band."""
    height, width = codes.shape
    written = [write_png_bands(out / "mask.png", width, height, _mask_bands(codes))]
    read: Callable[[int, int], np.ndarray] = comparison.read
    display = comparison.display
    if comparison_range is not None:  # shown as the model saw it, scaled to 0–1 (as the in-memory path)
        read = lambda top, rows: apply_range(comparison.read(top, rows), comparison_range)  # noqa: E731
        display = (0.0, 1.0)
    overlay = overlay_bands(read, codes, codes if class_names is not None else None, class_names,
                            value_range=display)
    written.append(write_png_bands(out / "overlay.png", width, height, (band for _, band in overlay)))
    if class_names is not None:
        written.append(write_png(out / "types.png", codes))
    if probability8 is not None:
        written.append(write_png(out / "probability.png", probability8))
    return written
