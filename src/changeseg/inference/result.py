"""The result of change detection, and pair checks — free of torch, shared by every backend."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from changeseg.errors import InputError
from changeseg.inference.regions import Region, find_regions
from changeseg.io.images import to_uint8_rgb, write_json, write_png

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
    class_names: list[str] = field(default_factory=lambda: ["unchanged", "changed"])
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
        """The comparison image (H×W×3 uint8) with changed regions tinted and outlined."""
        image = to_uint8_rgb(self.comparison)
        tinted = image.astype(np.float32)
        colours = self._pixel_colours()
        selected = self.mask
        tinted[selected] = (1 - alpha) * tinted[selected] + alpha * colours[selected]
        if self.unknown is not None:  # cannot be judged: greyed out
            tinted[self.unknown] = 0.35 * tinted[self.unknown] + 0.65 * 128.0
        out = tinted.round().astype(np.uint8)
        contours, _ = cv2.findContours(self.mask.astype(np.uint8), cv2.RETR_EXTERNAL,
                                       cv2.CHAIN_APPROX_SIMPLE)
        thickness = max(1, round(max(self.mask.shape) / 400))
        cv2.drawContours(out, contours, -1, (255, 255, 0), thickness)
        return out

    def _pixel_colours(self) -> np.ndarray:
        colours = np.zeros((*self.mask.shape, 3), np.float32)
        colours[:] = CLASS_COLOURS["changed"]
        if self.class_map is not None:
            for index, name in enumerate(self.class_names):
                if name in CLASS_COLOURS:
                    colours[self.class_map == index] = CLASS_COLOURS[name]
        return colours

    def summary(self) -> dict[str, Any]:
        """A JSON-ready summary: model, threshold, changed fraction, timings and regions.

        Pairs with unknown pixels (outside an alignment's overlap, or nodata) also carry
        `unknown_fraction` and `unknown_pixels`; aligned pairs carry the `alignment` report.
        """
        height, width = self.mask.shape
        extra: dict[str, Any] = {}
        if self.unknown is not None:
            extra["unknown_fraction"] = round(self.unknown_fraction, 6)
            extra["unknown_pixels"] = int(self.unknown.sum())
        if self.alignment is not None:
            extra["alignment"] = self.alignment
        return {
            "model": self.model_name,
            "trained": self.trained,
            "width": width,
            "height": height,
            "threshold": self.threshold,
            "changed_fraction": round(self.changed_fraction, 6),
            "changed_pixels": int(self.mask.sum()),
            "region_count": len(self.regions),
            **({"class_names": list(self.class_names)} if self.class_map is not None else {}),
            "timings_ms": {k: round(v, 2) for k, v in self.timings_ms.items()},
            **extra,
            "regions": [r.to_dict() for r in self.regions],
        }

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
            write_png(out / "mask.png", self.mask.astype(np.uint8) * 255),
            write_png(out / "overlay.png", self.overlay()),
        ]
        if self.class_map is not None:
            written.append(write_png(out / "types.png",
                                     np.where(self.mask, self.class_map, 0).astype(np.uint8)))
        if save_probability:
            written.append(write_png(out / "probability.png",
                                     (self.probability * 255).round().astype(np.uint8)))
        if self.unknown is not None and self.unknown.any():
            written.append(write_png(out / "unknown.png", self.unknown.astype(np.uint8) * 255))
        if before_summary is not None:
            written.extend(before_summary(out))
        written.append(write_json(out / "regions.json", {**self.summary(), **(extra or {})}))
        return written


def match_size(reference: np.ndarray, comparison: np.ndarray, resize: bool) -> np.ndarray:
    """The comparison image, checked (or, with `resize`, resized) to the reference's size."""
    if reference.shape[:2] == comparison.shape[:2]:
        return comparison
    ref_size = f"{reference.shape[1]}×{reference.shape[0]}"
    cmp_size = f"{comparison.shape[1]}×{comparison.shape[0]}"
    if not resize:
        raise InputError(f"reference is {ref_size} but comparison is {cmp_size} (width×height); "
                         "use resize=True (--resize) to resize the comparison")
    resized = cv2.resize(comparison, (reference.shape[1], reference.shape[0]),
                         interpolation=cv2.INTER_AREA)
    return resized[:, :, None] if resized.ndim == 2 else resized


def result_from_probabilities(probs: np.ndarray, comparison: np.ndarray, threshold: float,
                              min_area: int, class_names: list[str], model_name: str = "",
                              trained: bool = True, unknown: np.ndarray | None = None) -> ChangeResult:
    """Turn class probabilities (num_classes×H×W) into a ChangeResult.

    The change probability is 1 − p(class 0); pixels above `threshold` are changed; typed
    models label each changed pixel with its most likely change class; regions smaller than
    `min_area` pixels are dropped from the regions and the mask. Pixels flagged in `unknown`
    (H×W bool) get probability 0 and are never changed.
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
    raw_mask = probability > threshold
    class_map = None
    if probs.shape[0] > 2:
        class_map = (probs[1:].argmax(axis=0) + 1).astype(np.uint8)
        class_map[~raw_mask] = 0
    regions, mask = find_regions(raw_mask, probability, min_area, class_map,
                                 class_names if class_map is not None else None)
    if class_map is not None:
        class_map[~mask] = 0
    return ChangeResult(probability, mask, regions, comparison, threshold, class_map,
                        list(class_names), {}, model_name, trained, unknown)
