"""The MTF branch activation maps of one pair as images (the patent's Fig. 12).

The merge-temporal-features module combines, at every pyramid level, an *info* branch `i`
(both images' content), an *appear* branch `a` (only in the comparison), a *disappear*
branch `d` (only in the reference) and an *exchange* branch `e` (|difference|). A backend
that can expose them (`ChangeDetector.branch_maps`) returns, per level, each branch's map:
the mean absolute activation over the branch's channels, on that level's grid.

`write_branch_maps` writes them into ``OUT/branches/`` as ``level<k>_<branch>.png`` (k = 1 for
the finest level used, stride 4 for most backbones), each resized to the image size and
scaled 0–255 by one factor per level — the maps of one level share it, so a brighter `a`
than `d` means a stronger appear than disappear response — plus ``branches.json`` with each
level's stride, scale and each map's mean and maximum activation. Torch-free.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from changeseg.errors import InputError
from changeseg.inference.outputs import BRANCHES_FOLDER
from changeseg.io.images import write_json, write_png

BRANCH_NAMES = {"i": "info", "a": "appear", "d": "disappear", "e": "exchange"}
SCALE_PERCENTILE = 99.5  # a level's maps are scaled so this percentile of all of them is 255


def branch_maps_of(backend: Any, reference: np.ndarray, comparison: np.ndarray
                   ) -> tuple[list[dict[str, np.ndarray]], list[int]]:
    """(per-level branch maps, finest first; each level's stride) from a backend that exposes them.

    Raises InputError when the backend cannot (the ONNX runtime's graph returns only the
    probabilities).
    """
    compute = getattr(backend, "branch_maps", None)
    if compute is None:
        raise InputError("branch maps (--save-branches) need the PyTorch backend (--backend torch); "
                         "an exported ONNX graph returns only the probabilities")
    return compute(reference, comparison)


def render_branch_maps(levels: Sequence[dict[str, np.ndarray]], strides: Sequence[int],
                       size: tuple[int, int]) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """8-bit images named ``level<k>_<branch>`` at `size` (height, width), and their description."""
    height, width = size
    images: dict[str, np.ndarray] = {}
    described = []
    for number, (maps, stride) in enumerate(zip(levels, strides, strict=True), start=1):
        grid = (-(-height // stride), -(-width // stride))  # the level's cells that cover the image
        cropped = {b: np.asarray(m, np.float32)[:grid[0], :grid[1]] for b, m in maps.items()}
        stacked = np.concatenate([m.ravel() for m in cropped.values()])
        scale = float(np.percentile(stacked, SCALE_PERCENTILE)) if stacked.size else 0.0
        scale = scale if scale > 0 else 1.0
        entry: dict[str, Any] = {"level": number, "stride": int(stride), "scale": round(scale, 6), "maps": {}}
        for branch, cell in cropped.items():
            resized = cv2.resize(cell, (width, height), interpolation=cv2.INTER_LINEAR)
            scaled = np.clip(resized / scale, 0.0, 1.0) * 255.0
            images[f"level{number}_{branch}"] = scaled.round().astype(np.uint8)
            entry["maps"][branch] = {"name": BRANCH_NAMES.get(branch, branch),
                                     "mean": round(float(cell.mean()), 6), "max": round(float(cell.max()), 6)}
        described.append(entry)
    return images, {"size": [width, height], "scale_percentile": SCALE_PERCENTILE, "levels": described}


def write_branch_maps(out_dir: str | os.PathLike, levels: Sequence[dict[str, np.ndarray]],
                      strides: Sequence[int], size: tuple[int, int]) -> list[Path]:
    """Write ``branches/level<k>_<branch>.png`` and ``branches/branches.json`` (see the module docstring)."""
    folder = Path(out_dir) / BRANCHES_FOLDER
    images, description = render_branch_maps(levels, strides, size)
    written = [write_png(folder / f"{name}.png", image) for name, image in images.items()]
    written.append(write_json(folder / "branches.json", description))
    return written


def check_branch_size(shape: tuple[int, ...], tile_size: int) -> None:
    """Branch maps come from one forward pass over the whole pair: refuse pairs larger than a tile."""
    if tile_size and max(shape[:2]) > tile_size:
        raise InputError(f"--save-branches runs one pass over the whole pair, so it takes images up to "
                         f"--tile-size ({tile_size}) pixels a side; this pair is {shape[1]}×{shape[0]} "
                         "(raise --tile-size or crop the pair)")
