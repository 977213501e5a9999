"""Changed regions: connected components of a change mask, with their scores."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from changeseg.box_grow import grow_box
from changeseg.region_split import DEFAULT_MAX_COVER, component_stats, split_components


@dataclass(frozen=True)
class Region:
    """One connected changed area of the mask (pixel coordinates, x right, y down)."""

    id: int
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 — x1/y1 exclusive
    area: int
    centroid: tuple[float, float]  # x, y
    mean_score: float
    max_score: float
    label: str = "changed"

    def to_dict(self) -> dict:
        """A JSON-ready dict of the region (built field by field: a batch writes thousands)."""
        return {"id": self.id, "box": list(self.box), "area": self.area,
                "centroid": [round(c, 2) for c in self.centroid], "mean_score": round(self.mean_score, 4),
                "max_score": round(self.max_score, 4), "label": self.label}


def find_regions(mask: np.ndarray, probability: np.ndarray, min_area: int = 0,
                 labels: np.ndarray | None = None, class_names: list[str] | None = None,
                 split_depth: float = 0.0, split_cover: float = DEFAULT_MAX_COVER,
                 box_grow: float = 1.0) -> tuple[list[Region], np.ndarray]:
    """Connected components (8-connected) of a binary mask, largest first, and the kept mask.

    Components smaller than `min_area` pixels are dropped from both the regions and the
    returned mask. If a per-pixel class map `labels` and its `class_names` are given, each
    region is named by its majority class. `split_depth` > 0 first splits components that hold
    several blobs (`changeseg.region_split.split_components`, with `split_cover`); `min_area`
    then applies to the pieces. 0 (default) keeps every component whole. `box_grow` > 1 scales
    each region's box about its centre (`changeseg.box_grow.grow_box`; a model trained on shrunk
    boxes marks cores); the area, centroid, scores and the mask stay the component's own.
    """
    if split_depth != 0:  # split_components refuses a negative depth
        count, components = split_components(mask, split_depth, split_cover)
        stats, centroids = component_stats(components, count)
    else:
        count, components, stats, centroids = cv2.connectedComponentsWithStats(
            mask.astype(np.uint8), connectivity=8)
    areas = stats[:, cv2.CC_STAT_AREA]
    keep = areas >= max(min_area, 1)
    keep[0] = False
    changed = components > 0
    members = components[changed]
    scores = probability[changed].astype(np.result_type(probability.dtype, np.float32), copy=False)
    means = np.bincount(members, weights=scores, minlength=count) / np.maximum(areas, 1)
    maxima = np.full(count, -np.inf, scores.dtype)  # ufunc.at is ~30× slower when the dtypes differ
    np.maximum.at(maxima, members, scores)
    kept = np.flatnonzero(keep)
    kept_labels = ["changed"] * kept.size
    if labels is not None and class_names is not None:
        classes = labels[changed].astype(np.int64)
        kinds = int(classes.max()) + 1 if classes.size else 1
        votes = np.bincount(members * kinds + classes, minlength=count * kinds).reshape(count, kinds)
        # the majority class (the lowest index on a tie), looked up for kept components only
        kept_labels = [class_names[int(i)] for i in votes[kept].argmax(axis=1)]
    regions = []
    height, width = mask.shape[:2]
    for index, label in zip(kept, kept_labels, strict=True):
        x, y, w, h, area = (int(v) for v in stats[index])
        box = grow_box((x, y, x + w, y + h), box_grow, width, height)
        regions.append(Region(0, box, area,
                              (float(centroids[index][0]), float(centroids[index][1])),
                              float(means[index]), float(maxima[index]), label))
    regions.sort(key=lambda r: (-r.area, r.box))
    numbered = [Region(i + 1, r.box, r.area, r.centroid, r.mean_score, r.max_score, r.label)
                for i, r in enumerate(regions)]
    return numbered, keep[components]
