"""ChangeResult of a typed model: binary mask.png stays, types.png and typed regions are added."""

from __future__ import annotations

import json

import numpy as np

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
