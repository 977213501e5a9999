"""Image reading of every input kind, channel adaptation, and atomic writes."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image

from changeseg.errors import InputError
from changeseg.io.images import (
    atomic_write,
    read_image,
    read_mask,
    to_float,
    to_model_channels,
    to_uint8_rgb,
    write_png,
)


def test_rgb_png_round_trips_in_rgb_order(tmp_path, rng):
    image = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    write_png(tmp_path / "a.png", image)
    assert np.array_equal(read_image(tmp_path / "a.png"), image)
    # OpenCV stores BGR on disk: the first channel in the file is our blue
    assert np.array_equal(cv2.imread(str(tmp_path / "a.png"))[:, :, 0], image[:, :, 2])


def test_sixteen_bit_keeps_its_range(tmp_path, rng):
    image = rng.integers(0, 65536, (10, 12), dtype=np.uint16)
    write_png(tmp_path / "g16.png", image)
    loaded = read_image(tmp_path / "g16.png")
    assert loaded.dtype == np.uint16 and loaded.shape == (10, 12, 1)
    assert np.array_equal(loaded[:, :, 0], image)
    assert to_float(loaded).max() == pytest.approx(image.max() / 65535)


def test_rgba_greyscale_pil_and_arrays(tmp_path, rng):
    rgba = rng.integers(0, 256, (8, 9, 4), dtype=np.uint8)
    write_png(tmp_path / "rgba.png", rgba)
    assert np.array_equal(read_image(tmp_path / "rgba.png"), rgba)
    assert to_model_channels(rgba, 3).shape == (8, 9, 3)
    grey = rng.integers(0, 256, (8, 9), dtype=np.uint8)
    adapted = to_model_channels(read_image(Image.fromarray(grey)), 3)
    assert adapted.shape == (8, 9, 3) and np.array_equal(adapted[:, :, 2], grey)
    assert read_image(grey.astype(bool)).max() == 255
    assert read_image(rgba[:, :, :3].astype(np.float32) / 255).dtype == np.float32


def test_jpeg_and_path_strings(tmp_path, rng):
    image = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    Image.fromarray(image).save(tmp_path / "x.jpg")
    assert read_image(str(tmp_path / "x.jpg")).shape == (16, 16, 3)


@pytest.mark.parametrize("content, message", [(None, "file not found"), (b"hello", "not a readable image"),
                                              (b"", "not a readable image")])
def test_bad_files_give_clear_errors(tmp_path, content, message):
    path = tmp_path / "bad.png"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(InputError, match=message):
        read_image(path, "reference")
    with pytest.raises(InputError, match="not a file"):
        read_image(tmp_path)
    with pytest.raises(InputError, match="expected a path"):
        read_image(42)


def test_channel_mismatch_is_an_error():
    with pytest.raises(InputError, match="5 channels"):
        to_model_channels(np.zeros((4, 4, 5), np.uint8), 3)


def test_uint8_display_of_any_dtype():
    assert to_uint8_rgb(np.full((2, 2, 1), 65535, np.uint16)).max() == 255
    assert to_uint8_rgb(np.full((2, 2, 3), 0.5, np.float32))[0, 0, 0] == 128
    assert to_uint8_rgb(np.linspace(-3, 5, 12, dtype=np.float32).reshape(2, 2, 3)).max() == 255


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.json"
    target.write_text("old")

    def fail(tmp):
        tmp.write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(target, fail)
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]


def test_mask_reading_takes_the_first_channel(tmp_path):
    mask = np.zeros((5, 5, 3), np.uint8)
    mask[1:3, 1:3] = 255
    write_png(tmp_path / "m.png", mask)
    loaded = read_mask(tmp_path / "m.png")
    assert loaded.shape == (5, 5) and loaded.sum() == 4 * 255
