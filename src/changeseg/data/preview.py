"""A contact sheet of synthetic pairs: reference | comparison | typed label, one row per pair."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from changeseg.data.synthetic.generator import SyntheticPair
from changeseg.errors import InputError
from changeseg.io.images import atomic_write, write_png

__all__ = ["TYPE_COLOURS", "contact_sheet", "write_sheet"]

# label colours (RGB): appear green, disappear red, exchange amber - as in the overlay
TYPE_COLOURS = np.array([[0, 0, 0], [40, 200, 60], [230, 40, 40], [250, 180, 20]], np.uint8)


def contact_sheet(pairs: Sequence[SyntheticPair], columns: int = 2, tile: int = 160,
                  gap: int = 4) -> np.ndarray:
    """Pairs laid out as RGB uint8 image: each cell is reference | comparison | label.

    The label shows the typed mask in the overlay's colours (appear green, disappear red,
    exchange amber) over a darkened comparison, so the change can be found in the scene.
    """
    if not pairs:
        raise ValueError("contact_sheet needs at least one pair")
    cells = []
    for pair in pairs:
        views = []
        for image in (pair.reference, pair.comparison):
            views.append(cv2.resize(image, (tile, tile), interpolation=cv2.INTER_AREA))
        typed = cv2.resize(pair.typed_mask, (tile, tile), interpolation=cv2.INTER_NEAREST)
        label = (views[1] * 0.35).astype(np.uint8)
        label[typed > 0] = TYPE_COLOURS[typed[typed > 0]]
        views.append(label)
        spacer = np.full((tile, gap, 3), 255, np.uint8)
        cells.append(np.concatenate([views[0], spacer, views[1], spacer, views[2]], axis=1))
    rows = []
    blank = np.full_like(cells[0], 255)
    for start in range(0, len(cells), columns):
        row = cells[start:start + columns] + [blank] * (columns - len(cells[start:start + columns]))
        spacer = np.full((tile, 4 * gap, 3), 255, np.uint8)
        parts = []
        for number, cell in enumerate(row):
            parts.extend([cell] if number == 0 else [spacer, cell])
        rows.append(np.concatenate(parts, axis=1))
    spacer_row = np.full((gap * 2, rows[0].shape[1], 3), 255, np.uint8)
    out = [rows[0]]
    for row in rows[1:]:
        out.extend([spacer_row, row])
    return np.concatenate(out, axis=0)


def write_sheet(path: str | os.PathLike, sheet: np.ndarray, quality: int = 88) -> Path:
    """Write a contact sheet atomically as PNG, or as JPEG (`quality`) for a .jpg/.jpeg name."""
    target = Path(path)
    if target.suffix.lower() == ".png":
        return write_png(target, sheet)
    if target.suffix.lower() not in (".jpg", ".jpeg"):
        raise InputError(f"contact sheet {target}: use a .png or .jpg file name")
    ok, data = cv2.imencode(".jpg", np.ascontiguousarray(sheet[:, :, ::-1]),
                            [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise InputError(f"contact sheet {target}: JPEG encoding failed")
    return atomic_write(target, lambda tmp: tmp.write_bytes(data.tobytes()))
