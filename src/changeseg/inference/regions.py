"""Changed regions: connected components of a change mask, with their scores."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

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
                 split_depth: float = 0.0, split_cover: float = DEFAULT_MAX_COVER
                 ) -> tuple[list[Region], np.ndarray]:
    """Connected components (8-connected) of a binary mask, largest first, and the kept mask.

    Components smaller than `min_area` pixels are dropped from both the regions and the
    returned mask. If a per-pixel class map `labels` and its `class_names` are given, each
    region is named by its majority class. `split_depth` > 0 first splits components that hold
    several blobs (`changeseg.region_split.split_components`, with `split_cover`); `min_area`
    then applies to the pieces. 0 (default) keeps every component whole.
    """
    if split_depth != 0:  # split_components refuses a negative depth
        count, components = split_components(mask, split_depth, split_cover)
        stats, centroids = component_stats(components, count)
    else:
        count, components, stats, centroids = cv2.connectedComponentsWithStats(
            mask.astype(np.uint8), connectivity=8)
    keep = np.zeros(count, dtype=bool)
    regions = []
    for index in range(1, count):
        x, y, w, h, area = (int(v) for v in stats[index])
        if area < max(min_area, 1):
            continue
        keep[index] = True
        inside = components[y:y + h, x:x + w] == index
        scores = probability[y:y + h, x:x + w][inside]
        label = "changed"
        if labels is not None and class_names is not None:
            classes = labels[y:y + h, x:x + w][inside]
            label = class_names[int(np.bincount(classes.ravel()).argmax())]
        regions.append(Region(0, (x, y, x + w, y + h), area,
                              (float(centroids[index][0]), float(centroids[index][1])),
                              float(scores.mean()), float(scores.max()), label))
    regions.sort(key=lambda r: (-r.area, r.box))
    numbered = [Region(i + 1, r.box, r.area, r.centroid, r.mean_score, r.max_score, r.label)
                for i, r in enumerate(regions)]
    return numbered, keep[components]
