"""Growing boxes about their centres: the inverse of training on shrunk boxes.

A model trained on targets whose boxes were shrunk by ``S`` of each side (the ``deeppcb``
reader's ``shrink``) marks each object's core; its regions' boxes grown by ``1 / (1 - 2S)``
get the objects' extent back. Used by the boxes protocol (`changeseg.evaluation.boxes`) and by
the regions of a prediction (`changeseg.inference.regions`, a model's ``metadata.box_grow``).
"""

from __future__ import annotations

import math

import numpy as np

from changeseg.errors import InputError


def check_grow(grow: float) -> None:
    """Raise InputError unless `grow` (a box scale factor) is a finite number >= 1."""
    if not (np.isfinite(grow) and grow >= 1.0):
        raise InputError(f"box grow must be a number >= 1 (1 keeps each region's own box), got {grow}")


def grow_boxes(boxes: np.ndarray, factor: float, shape: tuple[int, ...]) -> np.ndarray:
    """``N×4`` inclusive-corner boxes scaled by `factor` about their centres, clipped to `shape` (H, W).

    A box covering ``w`` pixel columns covers ``w · factor`` after it, centred where it was, so
    a core found by a model trained on shrunk boxes gets the extent of the box it came from.
    """
    check_grow(factor)
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if factor == 1.0 or len(boxes) == 0:
        return boxes
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    half = ((boxes[:, 2:] - boxes[:, :2] + 1) * factor - 1) / 2
    limit = np.array([shape[1] - 1, shape[0] - 1], dtype=np.float64)
    return np.concatenate([np.clip(centre - half, 0, limit), np.clip(centre + half, 0, limit)], axis=1)


def grow_box(box: tuple[int, int, int, int], factor: float, width: int, height: int
             ) -> tuple[int, int, int, int]:
    """An ``x0, y0, x1, y1`` box with **exclusive** ends scaled by `factor` about its centre.

    The same geometry as `grow_boxes`, rounded outwards to whole pixels and clipped to a
    `width` × `height` image (a region's box, `changeseg.inference.regions.Region.box`).
    """
    if factor == 1.0:
        return box
    x0, y0, x1, y1 = box
    ((gx0, gy0, gx1, gy1),) = grow_boxes(np.array([[x0, y0, x1 - 1, y1 - 1]]), factor, (height, width))
    return (math.floor(gx0 + 1e-9), math.floor(gy0 + 1e-9),
            math.ceil(gx1 - 1e-9) + 1, math.ceil(gy1 - 1e-9) + 1)
