"""Image operations for copy-paste change: fit a real cut-out into a scene, cast its shadow,
and remove an object that the scene already holds.

All functions work on float32 RGB arrays in [0, 255] (scenes) and float32 alphas in [0, 1];
none of them draws random numbers itself - the caller passes every random choice - so the
generator stays reproducible.
"""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["match_colour", "perspective_scale", "remove_object", "resize_cutout", "shadow_of"]


def resize_cutout(rgb: np.ndarray, alpha: np.ndarray, height: int, width: int
                  ) -> tuple[np.ndarray, np.ndarray]:
    """A cut-out resized to height×width (float32 RGB, float32 alpha)."""
    shrinking = height < rgb.shape[0] and width < rgb.shape[1]
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    patch = cv2.resize(rgb, (width, height), interpolation=interpolation).astype(np.float32)
    mask = cv2.resize(alpha, (width, height), interpolation=interpolation)
    return patch, np.clip(mask, 0.0, 1.0).astype(np.float32)


def match_colour(patch: np.ndarray, alpha: np.ndarray, under: np.ndarray,
                 strength: float) -> np.ndarray:
    """Pull an object's per-channel mean towards the scene it is pasted on.

    The gain per channel is ``(scene_mean / object_mean) ** strength`` (clipped to
    [0.6, 1.6]): strength 0 keeps the object's colours, 1 gives it the scene's mean colour
    and brightness - the illumination and white balance of the scene, not its texture.
    """
    weight = alpha[:, :, None]
    total = float(weight.sum())
    if total < 1.0 or strength <= 0:
        return patch
    object_mean = (patch * weight).sum(axis=(0, 1)) / total
    scene_mean = (under * weight).sum(axis=(0, 1)) / total
    gain = np.clip(((scene_mean + 1.0) / (object_mean + 1.0)) ** strength, 0.6, 1.6)
    return np.clip(patch * gain.astype(np.float32), 0.0, 255.0)


def shadow_of(alpha: np.ndarray, offset: tuple[float, float], squash: float,
              blur: float) -> np.ndarray:
    """The soft cast shadow of an object standing on the ground, in the object's box.

    The silhouette is flattened towards its bottom edge by `squash` (0 = upright, 1 = flat),
    shifted by `offset` = (dx, dy) pixels and blurred with sigma `blur`; values in [0, 1].
    """
    height, width = alpha.shape
    bottom = float(height - 1)
    matrix = np.array([[1.0, 0.0, offset[0]],
                       [0.0, 1.0 - squash, squash * bottom + offset[1]]], np.float32)
    shadow = cv2.warpAffine(alpha, matrix, (width, height), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    if blur > 0:
        shadow = cv2.GaussianBlur(shadow, (0, 0), blur)
    return np.clip(shadow, 0.0, 1.0)


def remove_object(image: np.ndarray, mask: np.ndarray, radius: int) -> np.ndarray:
    """The scene with the object under `mask` (bool) inpainted from its surroundings.

    The mask is grown by `radius` pixels first so the object's soft edge and contact shadow
    go too (OpenCV's Telea inpainting on the uint8 image).
    """
    grown = cv2.dilate(mask.astype(np.uint8), np.ones((2 * radius + 1, 2 * radius + 1),
                                                      np.uint8))
    source = np.clip(image + 0.5, 0, 255).astype(np.uint8)
    filled = cv2.inpaint(source, grown, max(3, radius), cv2.INPAINT_TELEA)
    return filled.astype(np.float32)


def perspective_scale(row: float, rows: int, horizon: float) -> float:
    """How large an object standing at `row` looks relative to one at the bottom edge.

    Ground-plane perspective: apparent size grows linearly with the distance below the
    horizon (given as a fraction of the image height); never below 0.15.
    """
    horizon_row = horizon * rows
    return max(0.15, (row - horizon_row) / max(1.0, rows - horizon_row))
