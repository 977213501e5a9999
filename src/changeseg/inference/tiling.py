"""Any image size: overlapping tiles blended into one seamless probability map.

An image larger than the tile size is cut into overlapping tiles of one common shape; each
tile pair goes through the backend, and the tiles' class probabilities are blended with
weights that favour tile centres (a separable raised-cosine ramp over the overlap, with a
floor so tile edges still count where nothing else covers them) and normalised by the sum
of the weights, so the seams disappear.

Tiles are processed one row of tiles at a time and the blended map comes out as horizontal
strips as soon as no later tile can touch them (`iter_blended_strips`). Memory is therefore
bounded by the tile batch plus one strip (classes × tile height × image width float32), not
by the image: the windowed GeoTIFF path (`changeseg.inference.geo`) reads the tiles from and
writes the strips to disk. `predict_proba_tiled` is the in-memory version for arrays.

Everything here is torch-free and works with any *backend*: an object whose
`predict_proba(reference, comparison)` maps two prepared H×W×C images to a
num_classes×H×W probability array (the PyTorch `ChangeDetector`, the ONNX runtime, or a
test double). A backend that also has `predict_proba_batch(references, comparisons)` (N×H×W×C
in, N×K×H×W out) receives `batch_size` tiles at a time.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from changeseg.errors import InputError
from changeseg.inference.backend import ProbaBackend
from changeseg.inference.regions import Region

DEFAULT_TILE_SIZE = 1024
DEFAULT_TILE_OVERLAP = 128
DEFAULT_WEIGHT_FLOOR = 0.05
# The windowed paths' tiles (pairs left on disk): 512 pixels with a 64-pixel overlap, the same
# share of overlap as 1024 / 128 and a smaller peak — on a 10 000² pair 1.11-1.21 against
# 1.56 GiB as GeoTIFF on PyTorch, 0.96 against 1.20 GiB as PNG or JPEG on OpenVINO
# (docs/benchmarks.md, "Memory").
WINDOWED_TILE_SIZE = 512
WINDOWED_TILE_OVERLAP = 64


def default_overlap(tile_size: int) -> int:
    """The overlap used when none is given: a quarter of the tile, at most 128 pixels."""
    return min(DEFAULT_TILE_OVERLAP, tile_size // 4)


@dataclass(frozen=True)
class TilingOptions:
    """How to tile: `tile_size` pixels square (0 = never tile), `overlap` pixels, `batch_size` tiles.

    Images whose larger side is at most `tile_size` are predicted whole. `overlap=None` means
    `default_overlap(tile_size)` (128 pixels for the default 1024-pixel tiles).
    """

    tile_size: int = DEFAULT_TILE_SIZE
    overlap: int | None = None
    batch_size: int = 1

    def __post_init__(self) -> None:
        if self.overlap is None:
            object.__setattr__(self, "overlap", default_overlap(self.tile_size))
        check_tiling(self.tile_size, self.overlap, self.batch_size)

    def applies_to(self, height: int, width: int) -> bool:
        """Whether an image of this size is large enough to be tiled."""
        return self.tile_size > 0 and max(height, width) > self.tile_size


@dataclass(frozen=True)
class Tile:
    """One tile window in pixel coordinates (y, x of the top-left corner; height, width)."""

    y: int
    x: int
    height: int
    width: int

    @property
    def slices(self) -> tuple[slice, slice]:
        """Row and column slices selecting this tile from an H×W(×C) array."""
        return slice(self.y, self.y + self.height), slice(self.x, self.x + self.width)


def default_windowed_tiling(batch_size: int = 1) -> TilingOptions:
    """The windowed paths' default tiling (`WINDOWED_TILE_SIZE`, `WINDOWED_TILE_OVERLAP`)."""
    return TilingOptions(WINDOWED_TILE_SIZE, WINDOWED_TILE_OVERLAP, batch_size)


def check_tiling(tile_size: int, overlap: int, batch_size: int = 1) -> None:
    """Raise InputError unless tile size, overlap and batch size make sense together."""
    if tile_size < 0:
        raise InputError(f"tile size must be 0 (no tiling) or positive, got {tile_size}")
    if 0 < tile_size < 32:
        raise InputError(f"tile size must be at least 32 pixels, got {tile_size}")
    if overlap < 0:
        raise InputError(f"tile overlap must be 0 or more pixels, got {overlap}")
    if tile_size and overlap * 2 > tile_size:
        raise InputError(f"tile overlap ({overlap}) must be at most half the tile size ({tile_size})")
    if batch_size < 1:
        raise InputError(f"tile batch must be at least 1, got {batch_size}")


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of size `tile` covering [0, length) with at least `overlap` overlap.

    The first tile starts at 0 and the last ends at `length`; the starts in between are
    spread evenly, so every overlap is at least `overlap` pixels.
    """
    if length <= tile:
        return [0]
    stride = tile - overlap
    count = math.ceil((length - tile) / stride) + 1
    span = length - tile
    return [round(i * span / (count - 1)) for i in range(count)]


def tile_grid(height: int, width: int, tile_size: int, overlap: int) -> list[list[Tile]]:
    """Rows of tiles covering an H×W image; every tile has the same shape.

    A side shorter than `tile_size` gives tiles as long as that side.
    """
    check_tiling(tile_size, overlap)
    if tile_size == 0:
        return [[Tile(0, 0, height, width)]]
    tile_h, tile_w = min(tile_size, height), min(tile_size, width)
    ys = tile_starts(height, tile_h, overlap)
    xs = tile_starts(width, tile_w, overlap)
    return [[Tile(y, x, tile_h, tile_w) for x in xs] for y in ys]


def ramp_weights(length: int, ramp: int, floor: float = DEFAULT_WEIGHT_FLOOR) -> np.ndarray:
    """1-D blending weights: a raised-cosine rise over `ramp` pixels at each end, 1 in between.

    The ends start at `floor` (> 0), so a tile edge that nothing else covers still counts.
    """
    weights = np.ones(length, np.float32)
    ramp = min(ramp, length // 2)
    if ramp > 0:
        position = (np.arange(ramp, dtype=np.float32) + 0.5) / ramp
        rise = floor + (1.0 - floor) * (0.5 - 0.5 * np.cos(np.pi * position))
        weights[:ramp] = rise
        weights[length - ramp:] = rise[::-1]
    return weights


def blend_weights(height: int, width: int, overlap: int,
                  floor: float = DEFAULT_WEIGHT_FLOOR) -> np.ndarray:
    """Separable H×W tile weights: the outer product of two `ramp_weights` (highest in the middle)."""
    if not 0.0 < floor <= 1.0:
        raise InputError(f"blending weight floor must be in (0, 1], got {floor}")
    return np.outer(ramp_weights(height, overlap, floor), ramp_weights(width, overlap, floor))


TileReader = Callable[[Tile], tuple[np.ndarray, np.ndarray]]
TileCallback = Callable[[int, int], None]
# Class probabilities (one K×h×w array per tile) of a batch of tiles, computed elsewhere.
TilePredictor = Callable[[Sequence[Tile]], Sequence[np.ndarray]]


def tile_batches(height: int, width: int, tile_size: int, overlap: int, batch_size: int = 1
                 ) -> list[list[Tile]]:
    """The batches of tiles `iter_blended_strips` predicts, in the order it predicts them."""
    check_tiling(tile_size, overlap, batch_size)
    return [row[start:start + batch_size] for row in tile_grid(height, width, tile_size, overlap)
            for start in range(0, len(row), batch_size)]


def predict_tile_pairs(backend: ProbaBackend, pairs: Sequence[tuple[np.ndarray, np.ndarray]]
                       ) -> list[np.ndarray]:
    """Probabilities of prepared tile pairs: one batched forward pass when the backend has
    `predict_proba_batch`, else one call per tile (the path every tiled prediction takes)."""
    batched = getattr(backend, "predict_proba_batch", None)
    if batched is not None and len(pairs) > 1:
        references = np.stack([p[0] for p in pairs])
        comparisons = np.stack([p[1] for p in pairs])
        return list(batched(references, comparisons))
    return [backend.predict_proba(reference, comparison) for reference, comparison in pairs]


def iter_blended_strips(backend: ProbaBackend, read_tile: TileReader, height: int, width: int,
                        tile_size: int = DEFAULT_TILE_SIZE, overlap: int = DEFAULT_TILE_OVERLAP,
                        batch_size: int = 1, floor: float = DEFAULT_WEIGHT_FLOOR,
                        on_tile: TileCallback | None = None, predict_tiles: TilePredictor | None = None
                        ) -> Iterator[tuple[int, np.ndarray]]:
    """Blend tiled predictions and yield the finished map as (row, K×h×W float32) strips, top to bottom.

    `read_tile(tile)` returns the prepared reference and comparison tiles (H×W×C). Strips are
    yielded as soon as no later tile overlaps them; together they cover every row once. A strip
    is a view of the blending buffer, valid until the next strip is asked for: copy what must
    outlive that. Peak memory: `batch_size` tiles plus one K×tile×W accumulator.
    `on_tile(done, total)` reports progress after each batch. With `predict_tiles`, the
    probabilities of each batch (the batches of `tile_batches`, in that order) come from it
    instead of `read_tile` + `backend` — e.g. from workers of a cluster — and are blended
    exactly the same way.
    """
    check_tiling(tile_size, overlap, batch_size)
    if height < 1 or width < 1:
        raise InputError(f"cannot tile an empty {width}×{height} image")
    rows = tile_grid(height, width, tile_size, overlap)
    total = sum(len(row) for row in rows)
    tile_h, tile_w = rows[0][0].height, rows[0][0].width
    weights = blend_weights(tile_h, tile_w, overlap, floor)
    accumulator: np.ndarray | None = None  # K × tile_h × W, weighted sums for rows [top, top+tile_h)
    weight_sum = np.zeros((tile_h, width), np.float32)
    done = 0
    for index, row in enumerate(rows):
        top = row[0].y
        for start in range(0, len(row), batch_size):
            batch = row[start:start + batch_size]
            if predict_tiles is not None:
                probabilities = predict_tiles(batch)
            else:
                probabilities = predict_tile_pairs(backend, [read_tile(tile) for tile in batch])
            for tile, probs in zip(batch, probabilities):
                probs = np.asarray(probs, np.float32)
                if probs.ndim != 3 or probs.shape[1:] != (tile.height, tile.width):
                    raise InputError(f"backend returned probabilities of shape {probs.shape} for a "
                                     f"{tile.width}×{tile.height} tile")
                if accumulator is None:
                    accumulator = np.zeros((probs.shape[0], tile_h, width), np.float32)
                columns = slice(tile.x, tile.x + tile.width)
                accumulator[:, :, columns] += probs * weights
                weight_sum[:, columns] += weights
            done += len(batch)
            if on_tile is not None:
                on_tile(done, total)
        assert accumulator is not None
        end = rows[index + 1][0].y if index + 1 < len(rows) else height
        finished = end - top
        # Normalised in place: the strip is a view of the accumulator, no K×h×W copy.
        np.divide(accumulator[:, :finished], weight_sum[:finished], out=accumulator[:, :finished])
        yield top, accumulator[:, :finished]
        # Rows [end, top + tile_h) are shared with the next tile row: move them to the top.
        carried = tile_h - finished
        accumulator[:, :carried] = accumulator[:, finished:]
        accumulator[:, carried:] = 0.0
        weight_sum[:carried] = weight_sum[finished:]
        weight_sum[carried:] = 0.0


def predict_proba_tiled(backend: ProbaBackend, reference: np.ndarray, comparison: np.ndarray,
                        tile_size: int = DEFAULT_TILE_SIZE, overlap: int = DEFAULT_TILE_OVERLAP,
                        batch_size: int = 1, floor: float = DEFAULT_WEIGHT_FLOOR,
                        on_tile: TileCallback | None = None) -> np.ndarray:
    """Class probabilities (K×H×W float32) of two prepared same-size images, predicted tile by tile."""
    if reference.shape[:2] != comparison.shape[:2]:
        raise InputError(f"reference {reference.shape[1]}×{reference.shape[0]} and comparison "
                         f"{comparison.shape[1]}×{comparison.shape[0]} must have the same size to tile")
    height, width = reference.shape[:2]

    def read(tile: Tile) -> tuple[np.ndarray, np.ndarray]:
        rows, columns = tile.slices
        return reference[rows, columns], comparison[rows, columns]

    output: np.ndarray | None = None
    for top, strip in iter_blended_strips(backend, read, height, width, tile_size, overlap,
                                          batch_size, floor, on_tile):
        if output is None:
            output = np.empty((strip.shape[0], height, width), np.float32)
        output[:, top:top + strip.shape[1]] = strip
    assert output is not None
    return output


def predict_proba_auto(backend: ProbaBackend, reference: np.ndarray, comparison: np.ndarray,
                       tiling: TilingOptions | None = None,
                       on_tile: TileCallback | None = None) -> np.ndarray:
    """Whole-image prediction for images up to the tile size, tiled prediction above it."""
    tiling = tiling or TilingOptions()
    height, width = reference.shape[:2]
    if not tiling.applies_to(height, width):
        return np.asarray(backend.predict_proba(reference, comparison), np.float32)
    return predict_proba_tiled(backend, reference, comparison, tiling.tile_size, int(tiling.overlap or 0),
                               tiling.batch_size, on_tile=on_tile)


class Tiled:
    """A backend that predicts pairs larger than `tiling.tile_size` tile by tile, as `detect`
    does (`predict_proba_auto`), so `evaluate` can score exactly what `detect` would write."""

    def __init__(self, backend: ProbaBackend, tiling: TilingOptions) -> None:
        self.backend = backend
        self.tiling = tiling

    def __getattr__(self, name: str) -> Any:  # prepare, class_names, config, name, precision, ...
        return getattr(self.backend, name)

    def predict_proba(self, reference: np.ndarray, comparison: np.ndarray) -> np.ndarray:
        """Class probabilities (K×H×W) of one prepared pair, tiled where it is large."""
        return predict_proba_auto(self.backend, reference, comparison, self.tiling)


def change_classes(strip: np.ndarray, band_rows: int = 128) -> np.ndarray:
    """The most likely change class (1…K−1, uint8 h×W) of each pixel of a K×h×W probability strip
    — `strip[1:].argmax(axis=0) + 1` for finite probabilities (ties go to the lower class) —
    taken `band_rows` rows at a time by running comparisons: no h×W int64 index array."""
    out = np.ones(strip.shape[1:], np.uint8)
    for top in range(0, strip.shape[1], band_rows):
        rows = slice(top, top + band_rows)
        best = strip[1, rows].copy()
        classes = out[rows]
        for k in range(2, strip.shape[0]):
            better = strip[k, rows] > best
            classes[better] = k
            np.maximum(best, strip[k, rows], out=best)
    return out


def _label_components(mask: np.ndarray) -> tuple[int, np.ndarray, np.ndarray, np.ndarray]:
    """8-connected components of a strip: (count, int32 labels, stats, centroids), as OpenCV gives them."""
    return cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8, ltype=cv2.CV_32S)


def _offset_labels(local: np.ndarray, offset: int) -> np.ndarray:
    """A strip's own component labels (int32, 0 = none) turned into provisional ones, in place."""
    if offset:
        np.add(local, np.int32(offset), out=local, where=local > 0)
    return local


class StreamingRegions:
    """Connected changed regions of a mask that arrives in horizontal strips, top to bottom.

    Each strip is labelled on its own (8-connected); components touching across a strip
    boundary are joined with a union-find, and per-label statistics are merged at the end.
    `finish` gives the same regions as `changeseg.inference.regions.find_regions` on the whole
    mask, with memory proportional to one strip plus a few numbers per component.
    """

    def __init__(self, width: int, num_classes: int = 0) -> None:
        self.width = width
        self.num_classes = num_classes  # > 2: typed change, count classes per region
        self.count = 0  # provisional labels so far (label 0 is background)
        self._parent: list[np.ndarray] = [np.zeros(1, np.int64)]
        # per strip: n × [area, x0, y0, x1, y1, sum_x, sum_y, sum_p, max_p]
        self._stats: list[np.ndarray] = []
        self._classes: list[np.ndarray] = []
        self._last_row: np.ndarray | None = None
        self._unions: list[tuple[int, int]] = []
        self._offsets: dict[int, int] = {}  # strip top → provisional labels before it

    def add_strip(self, top: int, mask: np.ndarray, probability: np.ndarray,
                  class_map: np.ndarray | None = None) -> np.ndarray:
        """Add rows [top, top + h) of the mask; returns their provisional labels (int32 h×W, 0 = none)."""

        count, local, stats, centroids = _label_components(mask)
        self._offsets[top] = self.count
        n = count - 1
        if n:
            area = stats[1:, cv2.CC_STAT_AREA].astype(np.float64)
            x0 = stats[1:, cv2.CC_STAT_LEFT].astype(np.float64)
            y0 = stats[1:, cv2.CC_STAT_TOP].astype(np.float64) + top
            x1 = x0 + stats[1:, cv2.CC_STAT_WIDTH]
            y1 = y0 + stats[1:, cv2.CC_STAT_HEIGHT]
            foreground = local > 0
            flat_labels = local[foreground]
            flat_probs = probability[foreground].astype(np.float64)
            sum_p = np.bincount(flat_labels, weights=flat_probs, minlength=count)[1:]
            max_p = np.full(count, -np.inf)
            np.maximum.at(max_p, flat_labels, flat_probs)
            table = np.stack([area, x0, y0, x1, y1, centroids[1:, 0] * area, (centroids[1:, 1] + top) * area,
                              sum_p, max_p[1:]], axis=1)
            self._stats.append(table)
            if self.num_classes > 2 and class_map is not None:
                combined = flat_labels.astype(np.int64) * self.num_classes + class_map[foreground]
                histogram = np.bincount(combined, minlength=count * self.num_classes)
                self._classes.append(histogram.reshape(count, self.num_classes)[1:])
            self._parent.append(np.arange(self.count + 1, self.count + 1 + n, dtype=np.int64))
        labels = _offset_labels(local, self.count)
        if self._last_row is not None and n:
            self._join(self._last_row, labels[0])
        self._last_row = labels[-1].copy()
        self.count += n
        return labels

    def strip_labels(self, top: int, mask: np.ndarray) -> np.ndarray:
        """The provisional labels `add_strip` returned for the strip at `top`, recomputed from the
        same mask rows (labelling is deterministic), so a caller need not keep them: with the
        lookup of `finish`, `lookup[labels] > 0` marks the pixels of the regions kept."""
        if top not in self._offsets:
            raise InputError(f"no strip was added at row {top}")
        return _offset_labels(_label_components(mask)[1], self._offsets[top])

    def _join(self, above: np.ndarray, below: np.ndarray) -> None:
        pairs = []
        for shift in (-1, 0, 1):  # 8-connectivity: up-left, up, up-right
            if shift < 0:
                a, b = above[:shift], below[-shift:]
            elif shift > 0:
                a, b = above[shift:], below[:-shift]
            else:
                a, b = above, below
            both = (a > 0) & (b > 0)
            if both.any():
                pairs.append(np.stack([a[both], b[both]], axis=1))
        if pairs:
            unique = np.unique(np.concatenate(pairs), axis=0)
            self._unions.extend((int(x), int(y)) for x, y in unique)

    def _roots(self) -> np.ndarray:
        parent = np.concatenate(self._parent)

        def find(i: int) -> int:
            while parent[i] != i:
                parent[i] = parent[parent[i]]
                i = int(parent[i])
            return i

        for a, b in self._unions:
            ra, rb = find(a), find(b)
            if ra != rb:
                parent[max(ra, rb)] = min(ra, rb)
        while True:  # flatten every chain
            grand = parent[parent]
            if np.array_equal(grand, parent):
                return parent
            parent = grand

    def finish(self, min_area: int = 0, class_names: Sequence[str] | None = None
               ) -> tuple[list, np.ndarray]:
        """The regions (largest first, ids from 1) and a lookup: provisional label → region id.

        Region id 0 in the lookup means the label belongs to a region dropped by `min_area`.
        Merged regions are not split here (unlike `find_regions` with `split_depth`).
        """

        lookup = np.zeros(self.count + 1, np.int32)
        if self.count == 0:
            return [], lookup
        roots = self._roots()[1:]
        stats = np.concatenate(self._stats)
        unique_roots, group = np.unique(roots, return_inverse=True)
        groups = len(unique_roots)

        def total(column: int) -> np.ndarray:
            return np.bincount(group, weights=stats[:, column], minlength=groups)

        def extreme(column: int, ufunc: np.ufunc, start: float) -> np.ndarray:
            out = np.full(groups, start)
            ufunc.at(out, group, stats[:, column])
            return out

        area = total(0)
        x0, y0 = extreme(1, np.minimum, np.inf), extreme(2, np.minimum, np.inf)
        x1, y1 = extreme(3, np.maximum, -np.inf), extreme(4, np.maximum, -np.inf)
        sum_x, sum_y, sum_p = total(5), total(6), total(7)
        max_p = extreme(8, np.maximum, -np.inf)
        classes = None
        if self._classes:
            per_label = np.concatenate(self._classes)
            classes = np.zeros((groups, per_label.shape[1]), np.int64)
            np.add.at(classes, group, per_label)
        candidates = []
        for g in range(groups):
            if area[g] < max(min_area, 1):
                continue
            label = "changed"
            if classes is not None and class_names is not None:
                label = class_names[int(classes[g].argmax())]
            box = (int(x0[g]), int(y0[g]), int(x1[g]), int(y1[g]))
            candidates.append((g, Region(0, box, int(area[g]), (sum_x[g] / area[g], sum_y[g] / area[g]),
                                         float(sum_p[g] / area[g]), float(max_p[g]), label)))
        candidates.sort(key=lambda item: (-item[1].area, item[1].box))
        region_of_group = np.zeros(groups, np.int32)
        regions = []
        for number, (g, r) in enumerate(candidates, start=1):
            region_of_group[g] = number
            regions.append(Region(number, r.box, r.area, r.centroid, r.mean_score, r.max_score, r.label))
        lookup[1:] = region_of_group[group]
        return regions, lookup
