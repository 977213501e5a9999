"""Image headers: the format allow-list, sizes and orientation read without decoding, bombs refused."""

from __future__ import annotations

import struct
import time
import zlib

import cv2
import numpy as np
import pytest
from PIL import Image

from changeseg.errors import InputError, PixelLimitError
from changeseg.io.header import ALLOWED_FORMATS, ImageHeader, check_pixel_limit, read_header, sniff_format
from changeseg.io.images import decode_image, encode_png, read_image

HDR_SIDE = 12000


def radiance_hdr_bomb(path, side: int = HDR_SIDE):
    """A valid Radiance HDR file claiming side×side pixels, every scanline a run-length-encoded black.

    For 12000² it is about 9 MB on disk; decoded it would be 12000² × 3 float32 values (1.7 GB).
    """
    header = f"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y {side} +X {side}\n".encode()
    runs = bytearray()
    left = side
    while left:
        run = min(127, left)
        runs += bytes([128 + run, 0])  # a run of `run` zero bytes
        left -= run
    scanline = bytes([2, 2, side >> 8, side & 0xFF]) + bytes(runs) * 4  # R, G, B, E planes
    path.write_bytes(header + scanline * side)
    return path


def png_claiming(width: int, height: int) -> bytes:
    """A valid 1×1 PNG whose IHDR claims width×height (CRC fixed up): a decompression-bomb header."""
    data = bytearray(encode_png(np.zeros((1, 1), np.uint8)))
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


@pytest.mark.parametrize("fmt, suffix", [("PNG", "png"), ("JPEG", "jpg"), ("TIFF", "tif"), ("WEBP", "webp"),
                                         ("BMP", "bmp")])
def test_every_allowed_format_is_identified_from_its_header(fmt, suffix, tmp_path, rng):
    image = rng.integers(0, 256, (13, 21, 3), dtype=np.uint8)
    path = tmp_path / f"x.{suffix}"
    Image.fromarray(image).save(path)
    header = read_header(path)
    assert header == ImageHeader(fmt, 21, 13, 1)
    assert fmt in ALLOWED_FORMATS
    assert read_image(path).shape == (13, 21, 3)


def test_a_radiance_hdr_bomb_is_refused_by_format_in_milliseconds(tmp_path):
    small = radiance_hdr_bomb(tmp_path / "small.hdr", side=64)  # the generator writes real HDR files:
    assert cv2.imdecode(np.fromfile(small, np.uint8), cv2.IMREAD_UNCHANGED).shape == (64, 64, 3)
    path = radiance_hdr_bomb(tmp_path / "bomb.hdr")
    assert path.stat().st_size > 8_000_000
    started = time.perf_counter()
    with pytest.raises(InputError, match="a Radiance HDR image, not an allowed format") as raised:
        read_image(path, "comparison")
    elapsed = time.perf_counter() - started
    assert "PNG, JPEG, TIFF, WebP or BMP" in str(raised.value) and str(path) in str(raised.value)
    assert elapsed < 0.5  # decoding it would take seconds and gigabytes
    with pytest.raises(InputError, match="Radiance HDR"):
        decode_image(path.read_bytes(), "comparison")


@pytest.mark.parametrize("content, kind", [(b"GIF89a" + bytes(20), "a GIF image"),
                                           (b"v/1\x01" + bytes(20), "an OpenEXR image"),
                                           (b"P6\n4 4\n255\n" + bytes(48), "not an image format"),
                                           (b"", "an empty file")])
def test_other_formats_are_refused_by_name(content, kind, tmp_path):
    path = tmp_path / "x.img"
    path.write_bytes(content)
    with pytest.raises(InputError, match=kind):
        read_header(path, "reference")


def test_pixel_limit_is_checked_from_the_header_before_decoding(tmp_path):
    data = png_claiming(50_000, 40_000)  # 2 gigapixels declared in a 70-byte file
    header = read_header(data)
    assert (header.format, header.width, header.height) == ("PNG", 50_000, 40_000)
    started = time.perf_counter()
    with pytest.raises(PixelLimitError, match="is 50000×40000 = 2000000000 pixels; the limit is 1000000"):
        decode_image(data, "reference", max_pixels=1_000_000)
    (tmp_path / "bomb.png").write_bytes(data)
    with pytest.raises(PixelLimitError, match="bomb.png is 50000×40000"):
        read_image(tmp_path / "bomb.png", "reference", max_pixels=1_000_000)
    assert time.perf_counter() - started < 0.5
    check_pixel_limit(header, None)  # None: no limit
    check_pixel_limit(header, header.pixels)  # at the limit is allowed


def test_corrupt_header_with_a_valid_signature(tmp_path):
    with pytest.raises(InputError, match="PNG signature with a corrupt header"):
        read_header(b"\x89PNG\r\n\x1a\n" + b"\x00" * 30)


def test_orientation_and_oriented_size_from_the_header(tmp_path, rng):
    image = Image.fromarray(rng.integers(0, 256, (10, 30, 3), dtype=np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6
    image.save(tmp_path / "o.jpg", exif=exif)
    header = read_header(tmp_path / "o.jpg")
    assert header.orientation == 6 and (header.width, header.height) == (30, 10)
    assert header.oriented_size == (10, 30)


def test_sniffing_needs_the_exact_signatures():
    assert sniff_format(b"\x89PNG\r\n\x1a\n") == "PNG"
    assert sniff_format(b"RIFF\x00\x00\x00\x00WEBPVP8 ") == "WEBP"
    assert sniff_format(b"RIFF\x00\x00\x00\x00WAVEfmt ") is None  # a RIFF that is not WebP
    assert sniff_format(b"MM\x00*") == "TIFF" and sniff_format(b"BM") == "BMP"
    assert sniff_format(b"#?RADIANCE") is None
