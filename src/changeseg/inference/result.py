"""The result of change detection, and pair checks — free of torch, shared by every backend."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from changeseg.errors import InputError
from changeseg.inference.regions import Region, find_regions
from changeseg.inference.tiling import change_classes
from changeseg.io.images import display_range, to_uint8_rgb, write_json, write_png
from changeseg.labels import BINARY_CLASSES, is_change
from changeseg.region_split import DEFAULT_MAX_COVER

CLASS_COLOURS = {
    "changed": (255, 48, 48),
    "appear": (40, 200, 60),
    "disappear": (255, 48, 48),
    "exchange": (255, 190, 0),
}


@dataclass
class ChangeResult:
    """What changed between a reference and a comparison image."""

    probability: np.ndarray  # H×W float32, probability of any change
    mask: np.ndarray  # H×W bool, changed pixels (after the minimum-area filter)
    regions: list[Region]
    comparison: np.ndarray  # the comparison image as given (H×W×C)
    threshold: float
    class_map: np.ndarray | None = None  # H×W class indices for typed-change models
    class_names: list[str] = field(default_factory=lambda: list(BINARY_CLASSES))
    timings_ms: dict[str, float] = field(default_factory=dict)
    model_name: str = ""
    trained: bool = True
    unknown: np.ndarray | None = None  # H×W bool: pixels that cannot be judged (outside the overlap)
    alignment: dict[str, Any] | None = None  # the alignment report when the pair was registered

    @property
    def unknown_fraction(self) -> float:
        """Fraction of pixels that cannot be judged (0 when everything is known)."""
        return float(self.unknown.mean()) if self.unknown is not None and self.unknown.size else 0.0

    @property
    def changed_fraction(self) -> float:
        """Fraction of pixels marked as changed."""
        return float(self.mask.mean()) if self.mask.size else 0.0

    def overlay(self, alpha: float = 0.45) -> np.ndarray:
        """The comparison image (H×W×3 uint8) with changed regions tinted and outlined.

        Built band by band (`overlay_bands`): no float copy of the whole image.
        """
        out = np.empty((*self.mask.shape, 3), np.uint8)
        value_range = display_range(self.comparison)
        bands = overlay_bands(lambda top, rows: self.comparison[top:top + rows], self.mask,
                              self.class_map, self.class_names, self.unknown, alpha, value_range)
        for top, band in bands:
            out[top:top + len(band)] = band
        return out

    def summary(self) -> dict[str, Any]:
        """A JSON-ready summary: model, threshold, changed fraction, timings and regions.

        Pairs with unknown pixels (outside an alignment's overlap, or nodata) also carry
        `unknown_fraction` and `unknown_pixels`; aligned pairs carry the `alignment` report.
        """
        height, width = self.mask.shape
        return summary_record(
            self.model_name, self.trained, width, height, self.threshold, int(self.mask.sum()), self.regions,
            self.timings_ms, list(self.class_names) if self.class_map is not None else None,
            None if self.unknown is None else int(self.unknown.sum()), self.alignment)

    def save(self, out_dir: str | os.PathLike, save_probability: bool = False,
             extra: dict[str, Any] | None = None, before_summary: Callable[[Path], list[Path]] | None = None
             ) -> list[Path]:
        """Write mask.png (0/255), overlay.png, regions.json and optionally probability.png.

        Typed models also write types.png: the change type of each changed pixel as its class
        index (0 unchanged, then `class_names` in order: appear 1, disappear 2, exchange 3).
        unknown.png (255 = cannot be judged) is written when the result has unknown pixels.
        `before_summary(out)` may write more files (e.g. GeoTIFFs); `extra` keys are merged
        into regions.json. regions.json is always written last, so its presence means the
        folder is complete.
        """
        out = Path(out_dir)
        written = [
            write_png(out / "mask.png", as_bytes(self.mask) * np.uint8(255)),
            write_png(out / "overlay.png", self.overlay()),
        ]
        if self.class_map is not None:
            written.append(write_png(out / "types.png",
                                     np.where(self.mask, self.class_map, 0).astype(np.uint8)))
        if save_probability:
            written.append(write_png(out / "probability.png", probability_png(self.probability)))
        if self.unknown is not None and self.unknown.any():
            written.append(write_png(out / "unknown.png", as_bytes(self.unknown) * np.uint8(255)))
        if before_summary is not None:
            written.extend(before_summary(out))
        written.append(write_json(out / "regions.json", {**self.summary(), **(extra or {})}))
        return written


def summary_record(model_name: str, trained: bool, width: int, height: int, threshold: float,
                   changed_pixels: int, regions: Sequence[Region], timings_ms: dict[str, float],
                   class_names: list[str] | None = None, unknown_pixels: int | None = None,
                   alignment: dict[str, Any] | None = None) -> dict[str, Any]:
    """The regions.json summary of one detection (`ChangeResult.summary` and the windowed paths).

    `class_names` are given for typed models only; `unknown_pixels` when some pixels could
    not be judged; `alignment` for a registered pair.
    """
    pixels = width * height
    extra: dict[str, Any] = {}
    if unknown_pixels is not None:
        extra["unknown_fraction"] = round(unknown_pixels / pixels if pixels else 0.0, 6)
        extra["unknown_pixels"] = int(unknown_pixels)
    if alignment is not None:
        extra["alignment"] = alignment
    return {
        "model": model_name,
        "trained": trained,
        "width": width,
        "height": height,
        "threshold": threshold,
        "changed_fraction": round(changed_pixels / pixels if pixels else 0.0, 6),
        "changed_pixels": int(changed_pixels),
        "region_count": len(regions),
        **({"class_names": list(class_names)} if class_names is not None else {}),
        "timings_ms": {k: round(v, 2) for k, v in timings_ms.items()},
        **extra,
        "regions": [r.to_dict() for r in regions],
    }


OVERLAY_BAND_ROWS = 256
OUTLINE_COLOUR = (255, 255, 0)
RowReader = Callable[[int, int], np.ndarray]  # read(top, rows) -> rows [top, top + rows) of an image


def as_bytes(mask: np.ndarray) -> np.ndarray:
    """A mask as uint8 (nonzero where set) without a copy when it is bool or uint8 already."""
    return mask.view(np.uint8) if mask.dtype == np.bool_ else mask.astype(np.uint8, copy=False)


def probability_png(probability: np.ndarray, band_rows: int = OVERLAY_BAND_ROWS) -> np.ndarray:
    """probability.png's pixels: round(255 · p) as H×W uint8, computed one band of rows at a time."""
    out = np.empty(probability.shape, np.uint8)
    for top in range(0, probability.shape[0], band_rows):
        band = probability[top:top + band_rows]
        out[top:top + band_rows] = (band.astype(np.float32, copy=False) * 255).round()
    return out


def class_colours(class_names: Sequence[str] | None, count: int = 256) -> np.ndarray:
    """The tint of each class index (count×3 float32): `CLASS_COLOURS` by name, "changed" otherwise."""
    table = np.empty((count, 3), np.float32)
    table[:] = CLASS_COLOURS["changed"]
    for index, name in enumerate(class_names or []):
        if name in CLASS_COLOURS and index < count:
            table[index] = CLASS_COLOURS[name]
    return table


def overlay_bands(read_comparison: RowReader, changed: np.ndarray, class_map: np.ndarray | None,
                  class_names: Sequence[str] | None, unknown: np.ndarray | None = None, alpha: float = 0.45,
                  value_range: tuple[float, float] | None = None, band_rows: int = OVERLAY_BAND_ROWS
                  ) -> Iterator[tuple[int, np.ndarray]]:
    """The overlay image as (top, h×W×3 uint8) bands of rows, top to bottom.

    Changed pixels (`changed` nonzero, H×W) of the comparison (`read_comparison(top, rows)`,
    shown through `to_uint8_rgb` with `value_range`) are tinted by their class (`class_map`,
    named by `class_names`; plain "changed" red without one), unknown pixels greyed, and the
    outlines of the changed areas drawn on top. Pixels are blended through lookup tables
    (`_BlendTables`), one band at a time, so whole images, in memory or read from disk band by
    band, cost no full-size copy (the outlines are drawn once into an H×W uint8 map: OpenCV draws
    thick lines clipped to a band slightly differently); the pixels are those of blending the
    whole image at once in float32.
    """
    height, width = changed.shape
    mask = as_bytes(changed)
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    outline = np.zeros((height, width), np.uint8)
    cv2.drawContours(outline, contours, -1, 255, max(1, round(max(height, width) / 400)))
    del contours
    blend = _BlendTables(class_colours(class_names if class_map is not None else None), alpha)
    for top in range(0, height, band_rows):
        bottom = min(top + band_rows, height)
        image = to_uint8_rgb(read_comparison(top, bottom - top), value_range)
        selected = mask[top:bottom] > 0
        grey = unknown[top:bottom] > 0 if unknown is not None else None
        for index, pixels in _pixels_by_class(selected, None if class_map is None else class_map[top:bottom]):
            _apply_table(image, blend.table(index, False), pixels if grey is None else pixels & ~grey)
            if grey is not None:
                _apply_table(image, blend.table(index, True), pixels & grey)
        if grey is not None:
            _apply_table(image, blend.table(None, True), grey & ~selected)
        lines = outline[top:bottom] > 0
        if lines.any():
            _copy_where(np.broadcast_to(np.array(OUTLINE_COLOUR, np.uint8), image.shape), lines, image)
        yield top, image


class _BlendTables:
    """What `overlay_bands` makes of each 8-bit value, as 256-entry lookup tables (cv2.LUT).

    A table's entries are computed with the float32 arithmetic of blending one pixel (tint,
    then grey, rounded once), so looking values up gives the very pixels of computing each one,
    at a fraction of the cost of gathering and scattering the selected pixels.
    """

    def __init__(self, colours: np.ndarray, alpha: float) -> None:
        self.colours = colours
        self.alpha = alpha
        self.tables: dict[tuple[int | None, bool], np.ndarray] = {}

    def table(self, index: int | None, grey: bool) -> np.ndarray:
        """The 256×1×3 uint8 table tinting by class `index` (None: no tint), then greying if `grey`."""
        key = (index, grey)
        if key not in self.tables:
            values = np.repeat(np.arange(256, dtype=np.float32)[:, None], 3, axis=1)
            if index is not None:
                values = (1 - self.alpha) * values + self.alpha * self.colours[index][None, :]
            if grey:  # cannot be judged: greyed out
                values = 0.35 * values + 0.65 * 128.0
            self.tables[key] = values.round().astype(np.uint8).reshape(256, 1, 3)
        return self.tables[key]


def _pixels_by_class(selected: np.ndarray, class_map: np.ndarray | None) -> Iterator[tuple[int, np.ndarray]]:
    """(class index, where) for each class among the `selected` pixels of a band (index 0 untyped)."""
    if not selected.any():
        return
    if class_map is None:
        yield 0, selected
        return
    for index in np.flatnonzero(np.bincount(class_map[selected].ravel())):
        yield int(index), selected & (class_map == index)


def _apply_table(image: np.ndarray, table: np.ndarray, where: np.ndarray) -> None:
    """Replace the pixels of H×W×3 uint8 `image` at `where` (H×W bool) by their `table` values."""
    if where.any():
        _copy_where(cv2.LUT(image, table), where, image)


def _copy_where(source: np.ndarray, where: np.ndarray, image: np.ndarray) -> None:
    """Copy `source` into `image` (both H×W×3 uint8) at `where` (H×W bool), in place."""
    copied = cv2.copyTo(source, where.view(np.uint8), image)  # OpenCV's masked copy: ~100× np.copyto's
    if copied is not image:  # OpenCV allocated instead of writing in place (never for matching arrays)
        image[...] = copied


def size_mismatch(reference: tuple[int, ...], comparison: tuple[int, ...]) -> InputError:
    """The error for a pair whose (width, height) sizes differ and that is not to be resized."""
    return InputError(f"reference is {reference[0]}×{reference[1]} but comparison is {comparison[0]}×"
                      f"{comparison[1]} (width×height); use resize=True (--resize) to resize the comparison")


def match_size(reference: np.ndarray, comparison: np.ndarray, resize: bool) -> np.ndarray:
    """The comparison image, checked (or, with `resize`, resized) to the reference's size."""
    if reference.shape[:2] == comparison.shape[:2]:
        return comparison
    if not resize:
        raise size_mismatch(reference.shape[1::-1], comparison.shape[1::-1])
    resized = cv2.resize(comparison, (reference.shape[1], reference.shape[0]),
                         interpolation=cv2.INTER_AREA)
    return resized[:, :, None] if resized.ndim == 2 else resized


def result_from_probabilities(probs: np.ndarray, comparison: np.ndarray, threshold: float,
                              min_area: int, class_names: list[str], model_name: str = "",
                              trained: bool = True, unknown: np.ndarray | None = None,
                              split_depth: float = 0.0, split_cover: float = DEFAULT_MAX_COVER,
                              box_grow: float = 1.0) -> ChangeResult:
    """Turn class probabilities (num_classes×H×W) into a ChangeResult.

    The change probability is 1 − p(class 0); pixels at or above `threshold` are changed
    (`changeseg.labels.is_change`); typed
    models label each changed pixel with its most likely change class; with `split_depth` > 0
    regions holding several blobs are split (`changeseg.region_split`, with `split_cover`);
    regions smaller than `min_area` pixels are dropped from the regions and the mask. Pixels
    flagged in `unknown` (H×W bool) get probability 0 and are never changed.
    """
    if not 0.0 <= threshold <= 1.0:
        raise InputError(f"threshold must be between 0 and 1, got {threshold}")
    probability = (1.0 - probs[0]).astype(np.float32)
    if unknown is not None:
        if unknown.shape != probability.shape:
            raise InputError(f"unknown mask of shape {unknown.shape} does not match the "
                             f"probabilities {probability.shape}")
        unknown = unknown.astype(bool, copy=False)
        probability[unknown] = 0.0
    raw_mask = is_change(probability, threshold)
    if unknown is not None:
        raw_mask &= ~unknown
    class_map = None
    if probs.shape[0] > 2:
        class_map = change_classes(probs)  # uint8, taken in bands: no H×W int64 index array
        class_map[~raw_mask] = 0
    regions, mask = find_regions(raw_mask, probability, min_area, class_map,
                                 class_names if class_map is not None else None,
                                 split_depth=split_depth, split_cover=split_cover, box_grow=box_grow)
    if class_map is not None:
        class_map[~mask] = 0
    return ChangeResult(probability, mask, regions, comparison, threshold, class_map,
                        list(class_names), {}, model_name, trained, unknown)
