"""The generator's settings: validation and round trip."""

from __future__ import annotations

import json

import pytest

from changeseg.data.synthetic.config import SynthConfig
from changeseg.data.synthetic.generator import SyntheticPairGenerator
from changeseg.errors import ConfigError, InputError
from tests.data.synthetic.helpers import generator


def test_config_validation_and_round_trip(photos):
    config = SynthConfig(max_shift=2.0, change_weights=(1.0, 0.0, 2.0))
    assert SynthConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    with pytest.raises(ConfigError):
        SynthConfig(min_changes=3, max_changes=1)
    with pytest.raises(ConfigError):
        SynthConfig(p_noise=1.5)
    with pytest.raises(ConfigError):
        SynthConfig(change_weights=(0.0, 0.0, 0.0))
    with pytest.raises(ConfigError):
        SynthConfig.from_dict({"not_a_setting": 1})
    with pytest.raises(ConfigError):
        generator(photos, not_a_setting=1)
    with pytest.raises(ConfigError):
        SyntheticPairGenerator(photos, size=8)
    with pytest.raises(InputError):
        generator(photos).sample(-1)
