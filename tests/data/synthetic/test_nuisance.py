"""Whole-image nuisance: the season-like colour shift."""

from __future__ import annotations

import numpy as np

from changeseg.data.synthetic.nuisance import season


def test_season_shift_turns_green_but_not_grey():
    image = np.zeros((32, 64, 3), np.uint8)
    image[:, :32] = (60, 160, 50)  # foliage green
    image[:, 32:] = (128, 128, 128)  # grey road
    changed = 0
    for seed in range(6):
        out, params = season(image, np.random.default_rng(seed), 20.0)
        green_shift = np.abs(out[:, :32].astype(int) - image[:, :32]).mean()
        grey = out[:, 32:].astype(int)
        # grey keeps its hue: channels move together by the small warmth gain only
        assert np.abs(grey - 128).max() <= 128 * 0.05 + 2
        changed += green_shift > 3
        assert set(params) == {"hue", "saturation", "warmth"}
    assert changed >= 4
