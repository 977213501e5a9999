"""Writing a fixed synthetic set in the folder layout."""

from __future__ import annotations

import json

import numpy as np
import pytest

from changeseg.data.synthetic.config import SynthConfig
from changeseg.data.synthetic.generator import SyntheticPairGenerator
from changeseg.data.synthetic.writer import write_synthetic_set
from changeseg.errors import ConfigError, InputError
from changeseg.io.images import read_image
from tests.data.synthetic.helpers import SIZE, generator


def test_written_set_has_the_folder_layout_and_round_trips(tmp_path, photos):
    gen = generator(photos, seed=4)
    calls: list[int] = []
    out = write_synthetic_set(tmp_path / "set", 3, gen, start=2, progress=calls.append)
    assert calls == [1, 2, 3]
    names = [f"synth_{i:06d}" for i in (2, 3, 4)]
    for folder in ("A", "B", "label", "label_typed"):
        assert sorted(p.stem for p in (out / folder).iterdir()) == names
    meta = json.loads((out / "meta.json").read_text())
    assert meta["seed"] == 4 and meta["count"] == 3 and meta["start"] == 2
    assert meta["size"] == SIZE and meta["photos"]["source"] == "list"
    assert SynthConfig.from_dict(meta["config"]) == gen.config
    for name in names:
        sample = gen.sample(int(name[-6:]))
        np.testing.assert_array_equal(read_image(out / "A" / f"{name}.png"), sample["reference"])
        np.testing.assert_array_equal(read_image(out / "B" / f"{name}.png"), sample["comparison"])
        label = read_image(out / "label" / f"{name}.png")[:, :, 0]
        typed = read_image(out / "label_typed" / f"{name}.png")[:, :, 0]
        assert set(np.unique(label)) <= {0, 255}
        np.testing.assert_array_equal(label, sample["mask"] * 255)
        np.testing.assert_array_equal(typed, sample["typed_mask"])


def test_writing_refuses_an_existing_set_unless_overwriting(tmp_path, photos):
    gen = SyntheticPairGenerator(photos, size=32)
    write_synthetic_set(tmp_path, 1, gen)
    with pytest.raises(InputError, match="already holds"):
        write_synthetic_set(tmp_path, 1, gen)
    write_synthetic_set(tmp_path, 2, gen, overwrite=True)
    assert len(list((tmp_path / "A").iterdir())) == 2
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="not a folder"):
        write_synthetic_set(tmp_path / "file", 1, gen)
    with pytest.raises(ConfigError):
        write_synthetic_set(tmp_path / "new", 1, gen, size=64)
