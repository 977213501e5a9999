"""Splitting merged regions: one connected component of a change mask that holds several blobs.

Two defects (or buildings, or objects) whose masks touch form one connected component, so
one region and one box where the truth has two. :func:`split_components` labels a mask like
:func:`cv2.connectedComponents` and then cuts such components apart with a watershed on the
distance transform (every mask pixel's distance to the background):

1. markers are the **extended maxima** of the distance transform: the regional maxima of its
   h-maxima transform (:func:`skimage.morphology.reconstruction` of ``distance − depth`` under
   ``distance``, then :func:`skimage.morphology.local_maxima`; MATLAB's ``imextendedmax``).
   Two blob centres get a marker each when the neck between them is at least ``depth``
   pixels narrower (in inscribed radius) than the lower centre; ``depth`` is how eager the
   split is (smaller = more splits, 0 = none). :func:`skimage.morphology.h_maxima` is not used:
   it marks every one of several equally high maxima, however shallow the neck between them,
   which cuts elongated blobs whose distance ridge has two equal peaks;
2. :func:`skimage.segmentation.watershed` grows each marker over ``−distance``, inside its
   component, so the cuts run along the necks;
3. a split is kept only where the pieces fit boxes better than the whole: the pieces'
   bounding boxes together cover at most ``max_cover`` times the pixels of the component's
   own box. Two overlapping rectangles meeting at an offset pass (their boxes are much smaller
   than their union's); an elongated blob with a waist, cut in two, does not (its pieces'
   boxes tile its box, cover ≈ 1 or more). ``inf`` keeps every watershed split.

Both the regions of a detection (:func:`changeseg.inference.regions.find_regions`) and the
boxes protocol of evaluation use it, and evaluation may not import inference, so it lives at
the bottom of the package: it imports nothing from changeseg but its errors, and any layer
may import it. scikit-image (a core dependency) is imported only when a split is asked for.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from changeseg.errors import InputError

DEFAULT_MAX_COVER = 1.0
"""Keep a split only when the pieces' boxes together are no larger than the whole's box."""


def check_split(depth: float, max_cover: float = DEFAULT_MAX_COVER) -> None:
    """Raise :class:`InputError` for a negative or non-finite depth or a non-positive cover."""
    if not math.isfinite(depth) or depth < 0:
        raise InputError(f"split depth must be a finite number >= 0 (0 = off), got {depth}")
    if math.isnan(max_cover) or max_cover <= 0:
        raise InputError(f"split max_cover must be > 0 (inf = keep every split), got {max_cover}")


def component_stats(labels: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-label statistics in the layout of :func:`cv2.connectedComponentsWithStats`.

    Returns ``(stats, centroids)``: ``count×5`` int32 rows ``x, y, width, height, area`` and
    ``count×2`` float64 centroids ``x, y``, for labels 1..count-1 of an int label image;
    row 0 (the background) and absent labels are zeros.
    """
    height, width = labels.shape
    ys, xs = np.nonzero(labels)
    lab = labels[ys, xs]
    area = np.bincount(lab, minlength=count)[:count]
    lo_x, lo_y = np.full(count, width), np.full(count, height)
    hi_x, hi_y = np.full(count, -1), np.full(count, -1)
    np.minimum.at(lo_x, lab, xs)
    np.minimum.at(lo_y, lab, ys)
    np.maximum.at(hi_x, lab, xs)
    np.maximum.at(hi_y, lab, ys)
    present = area > 0
    stats = np.zeros((count, 5), dtype=np.int32)
    stats[present] = np.stack([lo_x, lo_y, hi_x - lo_x + 1, hi_y - lo_y + 1, area], axis=1)[present]
    centroids = np.zeros((count, 2), dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        centroids[present] = (np.stack([np.bincount(lab, weights=xs, minlength=count),
                                        np.bincount(lab, weights=ys, minlength=count)], axis=1)
                              / area[:, None])[present]
    return stats, centroids


def _box_areas(labels: np.ndarray, count: int) -> np.ndarray:
    """Bounding-box area in pixels of labels 0..count-1 (0 for absent labels)."""
    stats, _centroids = component_stats(labels, count)
    return stats[:, 2].astype(np.int64) * stats[:, 3]


def split_components(mask: np.ndarray, depth: float = 0.0, max_cover: float = DEFAULT_MAX_COVER,
                     connectivity: int = 8) -> tuple[int, np.ndarray]:
    """Connected components of a binary mask, merged blobs split apart (see the module doc).

    Args:
        mask: H×W bool (or 0/1) mask.
        depth: how much narrower (pixels of inscribed radius) a neck must be than the blob
            centres it joins for a cut; 0 (default) splits nothing and returns exactly
            OpenCV's connected components. A component no deeper than `depth` (its largest
            inscribed radius) has no such neck and is never split.
        max_cover: keep a component's split only if its pieces' boxes cover at most this
            multiple of the component's box area (``inf``: keep every split).
        connectivity: 8 (default) or 4, for the components and the watershed alike.

    Returns:
        ``(count, labels)`` as :func:`cv2.connectedComponents`: int32 labels, 0 the
        background, regions numbered 1..count-1: first the pieces of split components (in the
        raster order of their blob centres), then the components kept whole (in OpenCV's order).
    """
    check_split(depth, max_cover)
    if connectivity not in (4, 8):
        raise InputError(f"connectivity must be 4 or 8, got {connectivity}")
    binary = np.asarray(mask).astype(np.uint8)
    if depth == 0:
        return cv2.connectedComponents(binary, connectivity=connectivity, ltype=cv2.CV_32S)
    count, components, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=connectivity,
                                                                   ltype=cv2.CV_32S)
    if count <= 1:
        return count, components
    # A component's distances to the background are the same on the whole image as in its own
    # box plus one background pixel: every path to another component crosses background first.
    distance = cv2.distanceTransform(binary, cv2.DIST_L2, 5)
    deepest = np.zeros(count, dtype=np.float32)
    np.maximum.at(deepest, components.ravel(), distance.ravel())
    pieces: list[tuple[int, tuple[slice, slice], np.ndarray, int]] = []  # (key, window, labels, k)
    for component in np.flatnonzero(deepest > depth):  # never 0: the background's distance is 0
        window = _window(stats[component], binary.shape)
        split = _split_one(components[window] == component, distance[window], depth, max_cover,
                           connectivity, int(stats[component, cv2.CC_STAT_WIDTH])
                           * int(stats[component, cv2.CC_STAT_HEIGHT]))
        if split is None:
            continue
        labels, first = split
        rows, cols = np.divmod(first, labels.shape[1])
        keys = (rows + window[0].start) * binary.shape[1] + cols + window[1].start
        pieces.extend((int(key), window, labels, k) for k, key in enumerate(keys, start=1))
    if not pieces:
        return count, components
    # number the pieces first (raster order of their markers), then the unsplit components
    pieces.sort(key=lambda piece: piece[0])
    was_split = np.zeros(count, dtype=bool)
    numbered = np.zeros(count, dtype=np.int32)
    out = np.zeros(binary.shape, dtype=np.int32)
    for number, (_key, window, labels, k) in enumerate(pieces, start=1):
        region = labels == k
        was_split[components[window][region]] = True
        out[window][region] = number
    whole = np.flatnonzero(~was_split[1:]) + 1
    numbered[whole] = np.arange(len(pieces) + 1, len(pieces) + 1 + len(whole), dtype=np.int32)
    keep = ~was_split[components]
    out[keep] = numbered[components[keep]]
    return len(pieces) + len(whole) + 1, out


def _window(stat: np.ndarray, shape: tuple[int, ...]) -> tuple[slice, slice]:
    """A component's box plus one pixel each way (where the image has one)."""
    x, y, width, height = (int(v) for v in stat[:4])
    return (slice(max(y - 1, 0), min(y + height + 1, shape[0])),
            slice(max(x - 1, 0), min(x + width + 1, shape[1])))


def _split_one(inside: np.ndarray, distance: np.ndarray, depth: float, max_cover: float,
               connectivity: int, box_area: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Pieces of one component (labels 1..k in its window, and each marker's first raster index),
    or None when it holds fewer than two blobs or its pieces' boxes fail the cover test."""
    try:
        from skimage.measure import label
        from skimage.morphology import local_maxima, reconstruction
        from skimage.segmentation import watershed
    except ImportError as error:  # pragma: no cover - scikit-image is a core dependency
        raise InputError("splitting regions needs scikit-image: pip install scikit-image") from error
    skconn = 2 if connectivity == 8 else 1
    own = np.where(inside, distance, 0).astype(np.float32)
    domes = reconstruction(own - depth, own, method="dilation")
    markers = label(local_maxima(domes, connectivity=skconn) & (own > 0), connectivity=skconn)
    if markers.max() < 2:
        return None
    labels = watershed(-own, markers, mask=inside, connectivity=skconn)
    n = int(labels.max()) + 1
    if math.isfinite(max_cover) and _box_areas(labels, n)[1:].sum() > max_cover * box_area:
        return None
    _values, first = np.unique(markers.ravel(), return_index=True)
    return labels, first[1:]
