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


def _save_with_orientation(image: np.ndarray, path, orientation: int) -> None:
    picture = Image.fromarray(image)
    if path.suffix == ".tif":
        picture.save(path, tiffinfo={274: orientation})
        return
    exif = Image.Exif()
    exif[0x0112] = orientation
    options = {"lossless": True} if path.suffix == ".webp" else {}
    picture.save(path, exif=exif, **options)


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".webp", ".tif"])
@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied_like_a_viewer_does(suffix, orientation, tmp_path, rng):
    from PIL import ImageOps

    stored = rng.integers(0, 256, (12, 20, 3), dtype=np.uint8)
    stored[:4, :6] = (255, 0, 0)  # a red top-left corner, to see where it ends up
    path = tmp_path / f"photo{suffix}"
    _save_with_orientation(stored, path, orientation)
    with Image.open(path) as opened:
        expected = np.asarray(ImageOps.exif_transpose(opened).convert("RGB"))
    loaded = read_image(path)
    assert loaded.shape == expected.shape
    tolerance = 2 if suffix == ".jpg" else 0  # OpenCV's and Pillow's JPEG decoders differ slightly
    assert np.abs(loaded.astype(int) - expected.astype(int)).mean() <= tolerance
    if orientation in (5, 6, 7, 8):
        assert loaded.shape[:2] == (20, 12)  # sideways photos come out upright


def test_exif_orientation_of_pil_images_is_applied(rng):
    stored = rng.integers(0, 256, (6, 10, 3), dtype=np.uint8)
    picture = Image.fromarray(stored)
    exif = picture.getexif()
    exif[0x0112] = 8
    picture.info["exif"] = exif.tobytes()
    assert np.array_equal(read_image(picture), np.rot90(stored, 1))


def test_header_size_is_the_oriented_size(tmp_path, rng):
    from changeseg.io.images import header_size

    _save_with_orientation(rng.integers(0, 256, (7, 11, 3), dtype=np.uint8), tmp_path / "a.jpg", 6)
    assert header_size(tmp_path / "a.jpg") == (7, 11) == read_image(tmp_path / "a.jpg").shape[1::-1]
    (tmp_path / "b.gif").write_bytes(b"GIF89a" + bytes(30))
    assert header_size(tmp_path / "b.gif") is None


def test_unwritable_targets_are_output_errors_not_tracebacks(tmp_path):
    from changeseg.errors import OutputError

    blocker = tmp_path / "file"
    blocker.write_text("in the way")
    with pytest.raises(OutputError, match="a file is in the way"):
        write_png(blocker / "mask.png", np.zeros((2, 2), np.uint8))
    with pytest.raises(OutputError, match="cannot write"):
        atomic_write(tmp_path / "x.json", lambda tmp: (_ for _ in ()).throw(OSError(28, "No space left")))
    assert not list(tmp_path.glob(".x.json.*"))


@pytest.mark.parametrize("shape", [(300, 257), (300, 257, 1), (300, 257, 3), (300, 257, 4)])
def test_png_written_band_by_band_decodes_to_the_image(tmp_path, rng, shape):
    from changeseg.io.images import row_bands, write_png_bands

    image = rng.integers(0, 256, shape, dtype=np.uint8)
    path = write_png_bands(tmp_path / "bands.png", 257, 300, row_bands(image, 7))
    assert np.array_equal(read_image(path).reshape(shape), image)
    assert [p.name for p in tmp_path.iterdir()] == ["bands.png"]  # no temporary file left


def test_png_bands_that_do_not_fit_are_refused_and_leave_no_file(tmp_path, rng):
    from changeseg.io.images import row_bands, write_png_bands

    image = rng.integers(0, 256, (20, 10, 3), dtype=np.uint8)
    with pytest.raises(InputError, match="end at row 20 of 21"):
        write_png_bands(tmp_path / "short.png", 10, 21, row_bands(image, 8))
    with pytest.raises(InputError, match="do not fit"):
        write_png_bands(tmp_path / "wide.png", 9, 20, row_bands(image, 8))
    assert not list(tmp_path.iterdir())


def test_large_images_are_written_band_by_band(tmp_path, rng, monkeypatch):
    from changeseg.io import images

    calls = []
    original = images.write_png_bands
    monkeypatch.setattr(images, "write_png_bands", lambda *a: calls.append(a[1:3]) or original(*a))
    monkeypatch.setattr(images, "PNG_BAND_MIN_PIXELS", 1000)
    image = rng.integers(0, 256, (40, 30, 3), dtype=np.uint8)
    assert np.array_equal(read_image(write_png(tmp_path / "large.png", image)), image)
    assert calls == [(30, 40)]
    small = rng.integers(0, 256, (20, 30), dtype=np.uint8)
    write_png(tmp_path / "small.png", small)
    assert calls == [(30, 40)]  # at most PNG_BAND_MIN_PIXELS: one encoded buffer, as before


def test_images_pillow_decodes_keep_their_colours(tmp_path, rng, monkeypatch):
    from changeseg.io import images

    image = rng.integers(0, 256, (12, 14, 3), dtype=np.uint8)
    path = write_png(tmp_path / "a.png", image)
    assert np.array_equal(read_image(path), image)
    monkeypatch.setattr(images.cv2, "imdecode", lambda *a: None)  # as for a file OpenCV cannot read
    assert np.array_equal(read_image(path), image)  # Pillow's RGB is not swapped as if it were BGR
