"""ChangeResult: typed models (mask.png stays, types.png and typed regions are added), and the overlay."""

from __future__ import annotations

import json

import numpy as np
import pytest

from changeseg.inference.result import result_from_probabilities
from changeseg.io.images import read_mask

TYPED = ["unchanged", "appear", "disappear", "exchange"]


def typed_probabilities() -> np.ndarray:
    """4×8×8 class probabilities: an appear block top-left, an exchange block bottom-right."""
    probs = np.zeros((4, 8, 8), np.float32)
    probs[0] = 1.0
    probs[:, 1:3, 1:3] = np.array([0.1, 0.6, 0.2, 0.1])[:, None, None]
    probs[:, 5:8, 4:8] = np.array([0.2, 0.1, 0.3, 0.4])[:, None, None]
    return probs


def test_typed_result_writes_binary_mask_and_types(tmp_path):
    comparison = np.zeros((8, 8, 3), np.uint8)
    result = result_from_probabilities(typed_probabilities(), comparison, 0.5, 0, TYPED)
    written = {p.name for p in result.save(tmp_path)}
    assert {"mask.png", "types.png", "overlay.png", "regions.json"} <= written
    mask = read_mask(tmp_path / "mask.png")
    assert set(np.unique(mask)) == {0, 255} and (mask > 0).sum() == 4 + 12
    types = read_mask(tmp_path / "types.png")
    assert (types[1:3, 1:3] == 1).all() and (types[5:8, 4:8] == 3).all()
    assert (types[mask == 0] == 0).all()
    summary = json.loads((tmp_path / "regions.json").read_text())
    assert summary["class_names"] == TYPED
    assert sorted(r["label"] for r in summary["regions"]) == ["appear", "exchange"]


def test_binary_result_has_no_types(tmp_path):
    probs = typed_probabilities()
    binary = np.stack([probs[0], 1.0 - probs[0]])
    result = result_from_probabilities(binary, np.zeros((8, 8, 3), np.uint8), 0.5, 0,
                                       ["unchanged", "changed"])
    assert "types.png" not in {p.name for p in result.save(tmp_path)}
    assert "class_names" not in json.loads((tmp_path / "regions.json").read_text())


def whole_image_overlay(result, alpha=0.45):
    """The overlay as it was computed before it went band by band: the whole image in float32."""
    import cv2

    from changeseg.inference.result import CLASS_COLOURS
    from changeseg.io.images import to_uint8_rgb

    tinted = to_uint8_rgb(result.comparison).astype(np.float32)
    colours = np.zeros((*result.mask.shape, 3), np.float32)
    colours[:] = CLASS_COLOURS["changed"]
    if result.class_map is not None:
        for index, name in enumerate(result.class_names):
            if name in CLASS_COLOURS:
                colours[result.class_map == index] = CLASS_COLOURS[name]
    tinted[result.mask] = (1 - alpha) * tinted[result.mask] + alpha * colours[result.mask]
    if result.unknown is not None:
        tinted[result.unknown] = 0.35 * tinted[result.unknown] + 0.65 * 128.0
    out = tinted.round().astype(np.uint8)
    contours, _ = cv2.findContours(result.mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(out, contours, -1, (255, 255, 0), max(1, round(max(result.mask.shape) / 400)))
    return out


@pytest.mark.parametrize("dtype, size", [(np.uint8, (300, 500)), (np.uint16, (1700, 900)),
                                         (np.float32, (830, 1210))])
def test_overlay_by_bands_equals_the_whole_image_overlay(rng, dtype, size):
    import cv2

    from changeseg.inference.result import ChangeResult, overlay_bands
    from changeseg.io.images import display_range

    scale = {np.uint8: 255, np.uint16: 65535, np.float32: 3.0}[dtype]
    comparison = (rng.random((*size, 3)) * scale).astype(dtype)
    mask = cv2.GaussianBlur(rng.random(size).astype(np.float32), (0, 0), 5) > 0.5  # blobs of all sizes
    unknown = np.zeros(size, bool)
    unknown[:40, :60] = True
    mask &= ~unknown
    class_map = np.where(mask, rng.integers(1, 4, size), 0).astype(np.uint8)
    result = ChangeResult(np.zeros(size, np.float32), mask, [], comparison, 0.5, class_map, TYPED,
                          unknown=unknown)
    expected = whole_image_overlay(result)  # thick outlines (up to 4 px) cross band edges here
    assert np.array_equal(result.overlay(), expected)
    bands = overlay_bands(lambda top, rows: comparison[top:top + rows], mask, class_map, TYPED, unknown,
                          value_range=display_range(comparison), band_rows=7)
    assert np.array_equal(np.concatenate([band for _, band in bands]), expected)


@pytest.mark.parametrize("typed, with_unknown", [(False, False), (False, True), (True, False)])
def test_overlay_of_untyped_results_and_without_unknown_pixels_equals_the_whole_image_overlay(rng, typed,
                                                                                           with_unknown):
    import cv2

    from changeseg.inference.result import ChangeResult

    size = (260, 333)
    comparison = (rng.random((*size, 3)) * 255).astype(np.uint8)
    mask = cv2.GaussianBlur(rng.random(size).astype(np.float32), (0, 0), 4) > 0.5
    unknown = None
    if with_unknown:
        unknown = np.zeros(size, bool)
        unknown[100:180, 50:300] = True  # crosses changed areas: those pixels are tinted, then greyed
    class_map = np.where(mask, rng.integers(1, 4, size), 0).astype(np.uint8) if typed else None
    names = TYPED if typed else ["unchanged", "changed"]
    result = ChangeResult(np.zeros(size, np.float32), mask, [], comparison, 0.5, class_map, names,
                          unknown=unknown)
    assert np.array_equal(result.overlay(), whole_image_overlay(result))
