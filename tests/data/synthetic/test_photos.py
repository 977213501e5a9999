"""Photo sources of the generator: folders, lists, greyscale and float photos, scikit-image."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from changeseg.data.synthetic.generator import SyntheticPairGenerator
from changeseg.errors import InputError
from changeseg.io.images import write_png
from tests.data.synthetic.helpers import assert_same_sample, make_photo


def test_photo_folder_is_searched_recursively_and_skips_non_images(tmp_path, photos):
    folder = tmp_path / "photos"
    write_png(folder / "a.png", photos[0])
    write_png(folder / "sub" / "b.png", photos[1])
    cv2.imwrite(str(folder / "c.jpg"), photos[2][:, :, ::-1])
    (folder / "notes.txt").write_text("not a photo")
    write_png(folder / ".hidden" / "d.png", photos[0])
    gen = SyntheticPairGenerator(folder, size=64, seed=1)
    assert gen.photos.names == ["a.png", "c.jpg", "sub/b.png"]
    assert gen.settings()["photos"]["count"] == 3
    sample = gen.sample(0)
    assert sample["reference"].shape == (64, 64, 3)
    assert_same_sample(sample, SyntheticPairGenerator(str(folder), size=64, seed=1).sample(0))


def test_missing_or_empty_photo_sources_are_input_errors(tmp_path):
    with pytest.raises(InputError, match="not found"):
        SyntheticPairGenerator(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no images"):
        SyntheticPairGenerator(tmp_path / "empty")
    (tmp_path / "text").mkdir()
    (tmp_path / "text" / "readme.txt").write_text("hello")
    with pytest.raises(InputError, match="no images"):
        SyntheticPairGenerator(tmp_path / "text")
    with pytest.raises(InputError, match="empty"):
        SyntheticPairGenerator([])
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "x.png").write_bytes(b"not a png")
    with pytest.raises(InputError, match="x.png"):
        SyntheticPairGenerator(tmp_path / "broken", size=64).sample(0)


def test_greyscale_and_float_photos_are_accepted(rng):
    grey = make_photo(rng, 120, 120)[:, :, 0]
    floats = make_photo(rng, 120, 120).astype(np.float32) / 255.0
    sample = SyntheticPairGenerator([grey, floats], size=64).sample(1)
    assert sample["reference"].shape == (64, 64, 3)


def test_default_photos_come_from_scikit_image():
    pytest.importorskip("skimage")
    gen = SyntheticPairGenerator(size=64, seed=0)
    assert gen.settings()["photos"]["source"] == "scikit-image"
    assert len(gen.photos) >= 2
    sample = gen.sample(0)
    assert sample["reference"].shape == (64, 64, 3)
    assert sample["reference"].std() > 5  # a real photo, not a blank
