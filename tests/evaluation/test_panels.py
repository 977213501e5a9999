"""Worst-image panels: any input image, a caption with the image's scores, a colour legend."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from changeseg.evaluation.panels import (
    WorstImages,
    legend_entries,
    make_panel,
    panel_caption,
)
from changeseg.evaluation.pixels import PixelCounts, prepare_image

FALSE_ALARM, MISSED = (230, 40, 40), (40, 140, 255)


def _labels(width: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """A 40×`width` label (a change square, an ignored top row) and a prediction overlapping it."""
    target = np.zeros((40, width), np.uint8)
    target[5:10, 5:10] = 1
    target[0, :] = 255
    prediction = np.zeros((40, width), np.int64)
    prediction[5:12, 5:12] = 1
    return target, prediction


def _has_colour(image: np.ndarray, colour: tuple[int, int, int]) -> bool:
    return bool((image == np.array(colour, np.uint8)).all(axis=2).any())


@pytest.mark.parametrize("reference", [
    np.full((40, 60, 13), 3000, np.uint16),  # multispectral uint16
    torch.rand(3, 40, 60),  # channels-first float tensor
    np.full((40, 60), 0.5, np.float32),  # greyscale float
])
def test_make_panel_accepts_any_image(reference: object) -> None:
    target, prediction = _labels(width=60)
    panel = make_panel(reference, reference, target, prediction, max_side=30)
    # tiles shrink to 30×20 (longest side 30), four of them with 4-px gaps, a 20-px title bar,
    # then the legend below
    assert panel.shape[1] == 4 * 30 + 3 * 4 and panel.shape[0] > 20 + 20
    assert panel.dtype == np.uint8


def test_legend_shows_every_colour_below_the_tiles() -> None:
    target, prediction = _labels()
    image = np.zeros((40, 128, 3), np.uint8)
    panel = make_panel(image, image, target, prediction, max_side=128)
    tiles, legend = panel[20:20 + 40], panel[20 + 40:]  # below the title bar: 128×40 tiles
    assert _has_colour(tiles, FALSE_ALARM)  # the prediction covers more than the change
    assert legend.shape[0] > 0
    for colour, _label in legend_entries(2):
        assert _has_colour(legend, colour), colour
    assert [label for _colour, label in legend_entries(2)] == [
        "no change", "change / found", "false alarm", "missed", "ignored"]
    # the legend of a typed model names its classes
    labels = [label for _c, label in legend_entries(4, ["unchanged", "appear", "disappear", "exchange"])]
    assert labels == ["unchanged", "appear", "disappear", "exchange", "ignored"]


def test_caption_bar_carries_the_scores() -> None:
    target, prediction = _labels()
    image = np.zeros((40, 128, 3), np.uint8)
    plain = make_panel(image, image, target, prediction, max_side=128)
    captioned = make_panel(image, image, target, prediction, max_side=128, caption="x: F1 0.5")
    assert captioned.shape[0] == plain.shape[0] + 20
    assert (captioned[:20] > 100).any()  # text drawn on the caption bar
    row = {"name": "x", "f1": 2 / 3, "precision": 0.75, "recall": 0.6, "fp": 1, "fn": 2,
           "true_changed_pixels": 5}
    assert panel_caption(row) == "x: F1 0.667 (P 0.750, R 0.600), 1 false-alarm px, 2 missed px"
    row.update(name="é", f1=0.0, true_changed_pixels=0, fp=3)
    assert panel_caption(row) == "?: no true change, 3 false-alarm px"


def test_worst_images_keep_the_lowest_f1_with_captions() -> None:
    worst = WorstImages(1, 128)
    target, _ = _labels()
    image = np.zeros((40, 128, 3), np.uint8)
    for name, prob in (("good", target == 1), ("bad", np.zeros((40, 128)))):
        prepared = prepare_image(prob.astype(np.float64), target, name=name)
        counts = PixelCounts.of(prepared)
        row = {"name": name, "f1": 1.0 if name == "good" else 0.0, "precision": 0.0, "recall": 0.0,
               "fp": counts.fp, "fn": counts.fn, "true_changed_pixels": counts.tp + counts.fn}
        worst.offer(row, counts, image, image, prepared)
    ((name, f1, panel),) = worst.panels()
    assert (name, f1) == ("bad", 0.0)
    tiles = panel[40:80]  # below the caption and title bars
    assert _has_colour(tiles, MISSED) and not _has_colour(tiles, FALSE_ALARM)
    assert (panel[:20] > 100).any()  # its caption
