"""Side-by-side panels of the worst images of an evaluation, with a colour legend and scores.

Each panel shows reference | comparison | ground truth | prediction, a caption with the
image's name and scores, and a legend of the label colours. :class:`WorstImages` keeps the
panels of the ``k`` lowest-F1 images while an evaluation streams.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping, Sequence
from typing import Any

import cv2
import numpy as np

from changeseg.errors import InputError
from changeseg.evaluation.pixels import PixelCounts, PreparedImage
from changeseg.io.images import to_uint8_rgb
from changeseg.labels import IGNORE_INDEX

_PANEL_TITLES = ("reference", "comparison", "ground truth", "prediction")
_BACKGROUND = 32
_TEXT = (235, 235, 235)
_FONT = cv2.FONT_HERSHEY_SIMPLEX
_BAR = 20  # height of the caption and title bars
_GAP = 4  # between tiles
_GREY = (96, 96, 96)  # ignored pixels
_WHITE = (255, 255, 255)  # change (binary); correct change in a binary prediction
_FP = (230, 40, 40)  # red: predicted change where there is none
_FN = (40, 140, 255)  # blue: missed change
_PALETTE = np.array([
    (0, 0, 0), (255, 255, 255), (230, 40, 40), (40, 140, 255), (60, 200, 60), (250, 200, 30),
    (190, 70, 220), (30, 210, 210), (250, 130, 40), (150, 150, 255), (120, 80, 40),
], dtype=np.uint8)


class WorstImages:
    """Keeps panels of the ``k`` images with the lowest F1 while streaming.

    Images with neither true nor predicted change are perfect (they rank as F1 = 1, although
    their F1 is 0 by the zero-denominator rule); among equal F1 more wrong pixels rank worse.
    Each panel is captioned with its image's scores (:func:`panel_caption`).
    """

    def __init__(self, k: int, panel_size: int, class_names: Sequence[str] | None = None) -> None:
        self.k = max(int(k), 0)
        self.panel_size = panel_size
        self.class_names = list(class_names) if class_names is not None else None
        self._heap: list[tuple[float, int, int, str, float, np.ndarray]] = []
        self._seen = 0

    def offer(self, row: Mapping[str, Any], counts: PixelCounts, reference: Any,
              comparison: Any, image: PreparedImage) -> None:
        """Consider one image (its per-image row and counts); keep its panel if it ranks."""
        if self.k == 0:
            return
        self._seen += 1
        changed = counts.tp + counts.fp + counts.fn > 0
        f1 = float(row["f1"]) if changed else 1.0
        errors = counts.fp + counts.fn
        key = (-f1, errors, -self._seen)  # heap top = the least bad image kept
        if len(self._heap) >= self.k and key <= self._heap[0][:3]:
            return
        panel = make_panel(reference, comparison, image.target, image.prediction,
                           num_classes=image.num_classes, max_side=self.panel_size,
                           caption=panel_caption(row), class_names=self.class_names)
        item = (*key, image.name, float(row["f1"]), panel)
        if len(self._heap) < self.k:
            heapq.heappush(self._heap, item)
        else:
            heapq.heapreplace(self._heap, item)

    def panels(self) -> list[tuple[str, float, np.ndarray]]:
        """``(name, f1, panel)`` from the worst image to the least bad."""
        ordered = sorted(self._heap, key=lambda item: item[:3], reverse=True)
        return [(name, f1, panel) for *_key, name, f1, panel in ordered]


def panel_caption(row: Mapping[str, Any]) -> str:
    """One line naming an image and its scores, from its per-image row (ASCII, for OpenCV text)."""
    name = str(row["name"]).encode("ascii", "replace").decode("ascii")
    fp, fn = int(row["fp"]), int(row["fn"])
    if int(row["true_changed_pixels"]) == 0:
        return f"{name}: no true change, {fp} false-alarm px"
    return (f"{name}: F1 {float(row['f1']):.3f} (P {float(row['precision']):.3f}, "
            f"R {float(row['recall']):.3f}), {fp} false-alarm px, {fn} missed px")


def _display_rgb(image: Any) -> np.ndarray:
    """Any image (H×W, H×W×C, C×H×W tensor; uint8/uint16/float) as H×W×3 uint8."""
    array = image.detach().cpu().numpy() if hasattr(image, "detach") else np.asarray(image)
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3:
        raise InputError(f"cannot display an image of shape {array.shape}")
    if array.shape[0] <= 16 and array.shape[2] > 16:  # channels first
        array = np.transpose(array, (1, 2, 0))
    if array.shape[2] > 4:  # multispectral: the first three bands
        array = array[:, :, :3]
    if array.dtype == np.bool_:
        array = array.astype(np.uint8) * 255
    if array.dtype not in (np.uint8, np.uint16):
        array = array.astype(np.float32)
    return to_uint8_rgb(np.ascontiguousarray(array))


def _colour_labels(target: np.ndarray, prediction: np.ndarray | None, num_classes: int
                   ) -> np.ndarray:
    """Colour a label map (prediction None) or a prediction against its label."""
    ignored = target == IGNORE_INDEX
    if num_classes == 2 and prediction is not None:
        pred = prediction != 0
        true = (target != 0) & ~ignored
        out = np.zeros((*target.shape, 3), np.uint8)
        out[pred & true] = _WHITE
        out[pred & ~true] = _FP
        out[~pred & true] = _FN
    else:
        labels = target if prediction is None else prediction
        out = _PALETTE[np.clip(labels, 0, None) % len(_PALETTE)]
    out[ignored] = _GREY
    return out


def legend_entries(num_classes: int, class_names: Sequence[str] | None = None
                   ) -> list[tuple[tuple[int, int, int], str]]:
    """``(colour, label)`` of every colour the ground-truth and prediction tiles use."""
    if num_classes == 2:
        entries = [((0, 0, 0), "no change"), (_WHITE, "change / found"), (_FP, "false alarm"),
                   (_FN, "missed")]
    else:
        names = list(class_names) if class_names is not None else []
        entries = [(tuple(int(c) for c in _PALETTE[k % len(_PALETTE)]),
                    names[k] if k < len(names) else f"class {k}") for k in range(num_classes)]
    return [*entries, (_GREY, "ignored")]


def _fitted_scale(text: str, width: int, scale: float = 0.45, smallest: float = 0.3) -> float:
    """The largest font scale up to `scale` (not below `smallest`) at which `text` fits `width`."""
    (text_width, _), _ = cv2.getTextSize(text, _FONT, scale, 1)
    if text_width <= width:
        return scale
    return max(smallest, scale * width / text_width)


def _draw_legend(entries: Sequence[tuple[tuple[int, int, int], str]], width: int) -> np.ndarray:
    """Legend rows (a swatch and its label per entry, wrapped to `width`) as an RGB strip."""
    swatch, row_height, scale = 10, 18, 0.4
    placed: list[tuple[int, int, tuple[int, int, int], str]] = []
    x, y = 4, 0
    for colour, label in entries:
        (text_width, _), _ = cv2.getTextSize(label, _FONT, scale, 1)
        item = swatch + 4 + text_width + 12
        if x > 4 and x + item > width:
            x, y = 4, y + row_height
        placed.append((x, y, colour, label))
        x += item
    strip = np.full((y + row_height + 4, width, 3), _BACKGROUND, np.uint8)
    for x, y, colour, label in placed:
        top = y + 4
        cv2.rectangle(strip, (x, top), (x + swatch - 1, top + swatch - 1), (200, 200, 200), 1)
        strip[top + 1:top + swatch - 1, x + 1:x + swatch - 1] = colour
        cv2.putText(strip, label, (x + swatch + 4, top + swatch - 1), _FONT, scale, _TEXT, 1,
                    cv2.LINE_AA)
    return strip


def make_panel(
    reference: Any,
    comparison: Any,
    target: np.ndarray,
    prediction: np.ndarray,
    num_classes: int = 2,
    max_side: int = 384,
    caption: str = "",
    class_names: Sequence[str] | None = None,
) -> np.ndarray:
    """Side-by-side uint8 RGB panel: reference | comparison | ground truth | prediction.

    Images of any dtype and channel count are shown through ``to_uint8_rgb`` (first three
    bands of multispectral images). Ground truth: change white, ignored grey. Binary
    prediction: correct change white, false alarms red, misses blue; multi-class labels and
    predictions use one colour per class (named by `class_names`). Each tile is shrunk so its
    longest side is at most ``max_side``, and titled. A `caption` (e.g. the image's scores,
    :func:`panel_caption`) goes on a bar above the tiles, and a legend of the label colours
    (:func:`legend_entries`) below them.
    """
    target = np.asarray(target)
    prediction = np.asarray(prediction)
    h, w = target.shape
    # shrink large images to max_side; enlarge tiny ones so the titles fit
    scale = max_side / max(h, w) if max(h, w) > max_side else max(1.0, 128 / w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    tiles = []
    for picture in (reference, comparison):
        rgb = _display_rgb(picture)
        interpolation = cv2.INTER_AREA if rgb.shape[1] > size[0] else cv2.INTER_LINEAR
        tiles.append(cv2.resize(rgb, size, interpolation=interpolation))
    for labels in (_colour_labels(target, None, num_classes),
                   _colour_labels(target, prediction, num_classes)):
        tiles.append(cv2.resize(labels, size, interpolation=cv2.INTER_NEAREST))
    width = 4 * size[0] + 3 * _GAP
    top = _BAR if caption else 0
    body = np.full((top + _BAR + size[1], width, 3), _BACKGROUND, np.uint8)
    if caption:
        cv2.putText(body, caption, (4, _BAR - 6), _FONT, _fitted_scale(caption, width - 8), _TEXT, 1,
                    cv2.LINE_AA)
    for i, (tile, title) in enumerate(zip(tiles, _PANEL_TITLES)):
        x = i * (size[0] + _GAP)
        body[top + _BAR:, x:x + size[0]] = tile
        cv2.putText(body, title, (x + 4, top + _BAR - 6), _FONT, 0.45, _TEXT, 1, cv2.LINE_AA)
    legend = _draw_legend(legend_entries(num_classes, class_names), width)
    return np.concatenate([body, legend], axis=0)
