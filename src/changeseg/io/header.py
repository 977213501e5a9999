"""What an image file is, from its header alone: format (an allow-list), size, EXIF orientation.

Every image changeseg decodes is first identified here, without decoding a pixel: its format
must be one of `ALLOWED_FORMATS` (PNG, JPEG, TIFF, WebP, BMP; anything else — Radiance HDR,
OpenEXR, GIF, PPM, … — is refused by name), and its declared width × height is checked
against the caller's pixel limit, so a small file that would expand to gigabytes (a
decompression bomb) is refused in microseconds. The header is parsed by Pillow's plugin for
that one format, which reads only the header and applies none of Pillow's own global limits.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import IO

from PIL import BmpImagePlugin, Image, JpegImagePlugin, PngImagePlugin, TiffImagePlugin, WebPImagePlugin

from changeseg.errors import InputError, PixelLimitError

ALLOWED_FORMATS = ("PNG", "JPEG", "TIFF", "WEBP", "BMP")
FORMAT_NAMES = "PNG, JPEG, TIFF, WebP or BMP"
ORIENTATION_TAG = 0x0112  # EXIF / TIFF Orientation
_PREFIX_BYTES = 16

_PLUGINS = {
    "PNG": PngImagePlugin.PngImageFile,
    "JPEG": JpegImagePlugin.JpegImageFile,
    "TIFF": TiffImagePlugin.TiffImageFile,
    "WEBP": WebPImagePlugin.WebPImageFile,
    "BMP": BmpImagePlugin.BmpImageFile,
}
# Formats recognised only to name them in the refusal.
_REFUSED_SIGNATURES = (
    (b"#?RADIANCE", "a Radiance HDR image"),
    (b"#?RGBE", "a Radiance HDR image"),
    (b"v/1\x01", "an OpenEXR image"),
    (b"GIF8", "a GIF image"),
    (b"\x00\x00\x00\x0cjP  ", "a JPEG 2000 image"),
    (b"\xffO\xffQ", "a JPEG 2000 codestream"),
    (b"8BPS", "a Photoshop document"),
    (b"%PDF", "a PDF document"),
)


@dataclass(frozen=True)
class ImageHeader:
    """An image file's format, stored size and EXIF orientation (1 = as stored)."""

    format: str
    width: int
    height: int
    orientation: int = 1

    @property
    def pixels(self) -> int:
        """Width × height."""
        return self.width * self.height

    @property
    def oriented_size(self) -> tuple[int, int]:
        """(width, height) after the EXIF orientation is applied (orientations 5–8 swap them)."""
        return (self.height, self.width) if self.orientation in (5, 6, 7, 8) else (self.width, self.height)


def sniff_format(prefix: bytes) -> str | None:
    """The allowed format whose signature starts `prefix` (its first 16 bytes), or None."""
    if prefix.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if prefix.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if prefix[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "TIFF"
    if prefix.startswith(b"RIFF") and prefix[8:12] == b"WEBP":
        return "WEBP"
    if prefix.startswith(b"BM"):
        return "BMP"
    return None


def _refusal(prefix: bytes, name: str, where: str) -> InputError:
    kind = next((label for signature, label in _REFUSED_SIGNATURES if prefix.startswith(signature)), None)
    if not prefix:
        what = "an empty file"
    elif kind:
        what = f"{kind}, not an allowed format"
    else:
        what = "not an image format changeseg reads"
    return InputError(f"{name}: not a readable image{': ' + where.strip() if where else ''} ({what}); "
                      f"changeseg reads {FORMAT_NAMES} files")


def _orientation(image: Image.Image, fmt: str) -> int:
    """The EXIF orientation stored in the header (no pixel data is read)."""
    try:
        if fmt == "TIFF":
            value = image.tag_v2.get(274, 1)  # type: ignore[attr-defined]
        else:
            raw = image.info.get("exif")
            if not raw:
                return 1
            exif = Image.Exif()
            exif.load(raw)
            value = exif.get(ORIENTATION_TAG, 1)
        value = int(value)
    except Exception:  # a garbled EXIF block: treat the image as stored
        return 1
    return value if 1 <= value <= 8 else 1


def _png_ihdr_size(head: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG's first chunk, which must be IHDR; None if it is not."""
    if len(head) < 24 or head[12:16] != b"IHDR":
        return None
    width, height = struct.unpack(">II", head[16:24])
    return (width, height) if width > 0 and height > 0 else None


def _parse(stream: IO[bytes], name: str, where: str) -> ImageHeader:
    prefix = stream.read(_PREFIX_BYTES)
    fmt = sniff_format(prefix)
    if fmt is None:
        raise _refusal(prefix, name, where)
    stream.seek(0)
    try:
        image = _PLUGINS[fmt](stream)
    except Exception:  # the plugin raises SyntaxError, OSError, … for a corrupt header
        stream.seek(0)
        size = _png_ihdr_size(stream.read(24)) if fmt == "PNG" else None
        if size is not None:  # e.g. a bad CRC in an ancillary chunk, which decoders only warn about
            return ImageHeader(fmt, *size)
        raise InputError(f"{name}: not a readable image{': ' + where.strip() if where else ''} "
                         f"(a {fmt} signature with a corrupt header)") from None
    try:
        width, height = image.size
        return ImageHeader(fmt, int(width), int(height), _orientation(image, fmt))
    finally:
        image.close()


def read_header(source: bytes | str | os.PathLike, name: str = "image") -> ImageHeader:
    """Identify an image from its header (file path or bytes); InputError if not an allowed format."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return _parse(BytesIO(bytes(source)), name, "")
    path = Path(source)
    try:
        with open(path, "rb") as stream:
            return _parse(stream, name, f"{path} ")
    except OSError as exc:
        raise InputError(f"{name}: cannot read {path}: {exc.strerror or exc}") from None


def check_pixel_limit(header: ImageHeader, max_pixels: int | None, name: str = "image", where: str = ""
                      ) -> None:
    """Raise PixelLimitError when the header declares more than `max_pixels` pixels (None = no limit)."""
    if max_pixels is not None and header.pixels > max_pixels:
        size = f"{header.width}×{header.height} = {header.pixels} pixels"
        raise PixelLimitError(f"{name}: {where or 'image '}is {size}; the limit is {max_pixels} pixels")
