"""Image operations of the synthetic generator: crops, object shapes, blending and pasting."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np


@dataclass
class PlacedObject:
    """A cut-out: RGB patch (float32) and soft alpha, both bh×bw, placed at (y0, x0) in canvas."""

    patch: np.ndarray
    alpha: np.ndarray
    y0: int
    x0: int
    source: str
    shadow: np.ndarray | None = None  # darkening (0..1) cast on the scene before pasting
    category: str = "blob"



def to_uint8(image: np.ndarray) -> np.ndarray:
    """Round a float image to uint8 (values clipped to [0, 255]); `image` is not modified."""
    out = image + np.float32(0.5)
    np.clip(out, 0.0, 255.9, out=out)
    return out.astype(np.uint8)


def random_crop(photo: np.ndarray, out_h: int, out_w: int, rng: np.random.Generator,
                 zoom: tuple[float, float], stretch: float) -> np.ndarray:
    """A random crop of `photo` resized to out_h×out_w, with a random horizontal flip
    (see `_crop_window`)."""
    return apply_crop(photo, crop_window(photo, out_h, out_w, rng, zoom, stretch), out_h, out_w)


def apply_crop(image: np.ndarray, window: tuple[int, int, int, int, bool], out_h: int,
                out_w: int, nearest: bool = False) -> np.ndarray:
    """Cut `window` (top, left, height, width, flip) from `image` and resize it to out_h×out_w."""
    top, left, crop_h, crop_w, flip = window
    shrinking = crop_h > out_h and crop_w > out_w
    interpolation = (cv2.INTER_NEAREST if nearest
                     else cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
    resized = cv2.resize(image[top:top + crop_h, left:left + crop_w], (out_w, out_h),
                         interpolation=interpolation)
    return cv2.flip(resized, 1) if flip else resized


def crop_window(photo: np.ndarray, out_h: int, out_w: int, rng: np.random.Generator,
                 zoom: tuple[float, float], stretch: float) -> tuple[int, int, int, int, bool]:
    """A random crop window (top, left, height, width, flip) of `photo` for an out_h×out_w
    output.

    The crop covers between zoom[0] and zoom[1] times the output size in photo pixels
    (limited by the photo), its aspect ratio jittered by up to exp(±stretch).
    """
    height, width = photo.shape[:2]
    factor = rng.uniform(*zoom)
    aspect = math.exp(rng.uniform(-stretch, stretch)) if stretch else 1.0
    crop_h, crop_w = out_h * factor * aspect, out_w * factor / aspect
    limit = min(1.0, height / crop_h, width / crop_w)  # shrink uniformly to fit the photo
    crop_h = max(1, min(height, int(round(crop_h * limit))))
    crop_w = max(1, min(width, int(round(crop_w * limit))))
    top = int(rng.integers(0, height - crop_h + 1))
    left = int(rng.integers(0, width - crop_w + 1))
    return top, left, crop_h, crop_w, bool(rng.random() < 0.5)


def random_shape(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A random smooth, solid shape filling most of a height×width box (float32 0/1)."""
    y = np.linspace(-1.0, 1.0, height, dtype=np.float32)[:, None]
    x = np.linspace(-1.0, 1.0, width, dtype=np.float32)[None, :]
    if rng.random() < 0.5:  # blob: a centred bump plus smooth noise, thresholded
        grid = rng.standard_normal((int(rng.integers(3, 7)), int(rng.integers(3, 7))))
        noise = cv2.resize(grid.astype(np.float32), (width, height), interpolation=cv2.INTER_CUBIC)
        field_ = 1.0 - (x * x + y * y) + rng.uniform(0.25, 0.6) * noise
        shape = (field_ > rng.uniform(0.2, 0.45)).astype(np.uint8)
    else:  # polygon with random radii, corners rounded by blur and re-threshold
        corners = int(rng.integers(4, 11))
        angles = np.sort(rng.uniform(0.0, 2 * math.pi, corners))
        radii = rng.uniform(0.55, 1.0, corners)
        points = np.stack([(np.cos(angles) * radii + 1) * (width - 1) / 2,
                           (np.sin(angles) * radii + 1) * (height - 1) / 2], axis=1)
        shape = np.zeros((height, width), np.uint8)
        cv2.fillPoly(shape, [np.round(points).astype(np.int32)], 1)
        sigma = 0.06 * min(height, width)
        shape = (cv2.GaussianBlur(shape.astype(np.float32), (0, 0), sigma) > 0.5).astype(np.uint8)
    # keep the largest part, holes filled
    contours, _ = cv2.findContours(shape, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    solid = np.zeros((height, width), np.uint8)
    if contours:
        cv2.drawContours(solid, [max(contours, key=cv2.contourArea)], -1, 1, thickness=-1)
    if solid.sum() < 0.15 * height * width:  # degenerate draw: fall back to an ellipse
        solid = (x * x + y * y <= 0.8).astype(np.uint8)
    return solid.astype(np.float32)


def blend(target: np.ndarray, patch: np.ndarray, alpha: np.ndarray, top: int,
           left: int) -> None:
    """Alpha-blend `patch` into float `target` in place at (top, left), clipped to its bounds."""
    th, tw = target.shape[:2]
    ph, pw = alpha.shape
    y0, x0, y1, x1 = max(top, 0), max(left, 0), min(top + ph, th), min(left + pw, tw)
    if y1 <= y0 or x1 <= x0:
        return
    a = alpha[y0 - top:y1 - top, x0 - left:x1 - left, None]
    region = target[y0:y1, x0:x1]
    region += a * (patch[y0 - top:y1 - top, x0 - left:x1 - left] - region)


def claim(occupied: np.ndarray, objects: Sequence[PlacedObject | None], gap: int) -> bool:
    """Mark the objects' footprints (grown by `gap` px) as occupied, unless they overlap an
    occupied pixel; returns whether they were free."""
    footprint = np.zeros_like(occupied)
    for obj in objects:
        if obj is not None:
            region = footprint[obj.y0:obj.y0 + obj.alpha.shape[0],
                               obj.x0:obj.x0 + obj.alpha.shape[1]]
            np.maximum(region, (obj.alpha > 0.02).astype(np.uint8), out=region)
    footprint = cv2.dilate(footprint, np.ones((2 * gap + 1, 2 * gap + 1), np.uint8))
    if np.any(footprint & occupied):
        return False
    occupied |= footprint
    return True


def paste(image: np.ndarray, alphas: np.ndarray, obj: PlacedObject, code: int) -> None:
    """Alpha-blend `obj` (after its cast shadow, if any) into `image` and record its alpha in
    channel code-1 of `alphas`. The shadow is not labelled: it is lighting, not an object."""
    if obj.shadow is not None:
        h, w = obj.shadow.shape
        region = image[obj.y0:obj.y0 + h, obj.x0:obj.x0 + w]
        region *= (1.0 - obj.shadow[:region.shape[0], :region.shape[1], None])
    blend(image, obj.patch, obj.alpha, obj.y0, obj.x0)
    h, w = obj.alpha.shape
    channel = alphas[obj.y0:obj.y0 + h, obj.x0:obj.x0 + w, code - 1]
    np.maximum(channel, obj.alpha, out=channel)
