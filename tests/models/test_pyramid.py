"""MSF: any number of levels, output at the finest used stride with the head width."""

from __future__ import annotations

import pytest
import torch

from changeseg.errors import ConfigError
from changeseg.models.pyramid import MergeSpatial

CHANNELS = [8, 16, 24, 32]


def pyramid_features(size: int = 64) -> list[torch.Tensor]:
    torch.manual_seed(0)
    return [torch.randn(2, c, size // r, size // r) for c, r in zip(CHANNELS, (4, 8, 16, 32))]


@pytest.mark.parametrize("levels", [1, 2, 3, 4])
def test_fewer_levels_give_a_coarser_map(levels):
    msf = MergeSpatial(CHANNELS, width=12, levels=levels)
    out = msf(pyramid_features())
    stride = 4 * 2 ** (4 - levels)
    assert out.shape == (2, 12, 64 // stride, 64 // stride)


def test_deep_levels_reach_the_output():
    msf = MergeSpatial(CHANNELS, width=12, levels=4).eval()
    features = pyramid_features()
    base = msf(features)
    features[3] = features[3] + 5.0
    assert not torch.allclose(base, msf(features))


def test_level_count_is_checked():
    with pytest.raises(ConfigError):
        MergeSpatial(CHANNELS, levels=5)
    with pytest.raises(ConfigError):
        MergeSpatial(CHANNELS, levels=0)
