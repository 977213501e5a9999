"""Reading and writing images: any path, PIL image or array in; atomic PNG/JSON out.

Images are returned as numpy arrays H×W×C with their original dtype (uint8, uint16 or
float32), so 16-bit and multispectral data keep their range until the model's
normalisation decides how to scale them.
"""

from __future__ import annotations

import json
import os
import struct
import tempfile
import warnings
import zlib
from collections.abc import Callable, Iterable, Iterator
from io import BytesIO
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image, ImageOps

from changeseg.errors import InputError, OutputError
from changeseg.io.header import ALLOWED_FORMATS, ImageHeader, check_pixel_limit, read_header
from changeseg.io.native import native_stderr

ImageLike = str | os.PathLike | Image.Image | np.ndarray

# Files declaring more pixels are refused before decoding (`read_image(max_pixels=...)`, CLI --max-pixels).
DEFAULT_MAX_PIXELS = 100_000_000
_MAX_FOR_DTYPE = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}


def read_image(source: ImageLike, name: str = "image", max_pixels: int | None = DEFAULT_MAX_PIXELS
               ) -> np.ndarray:
    """Load an image from a path, a PIL image or an array as an H×W×C numpy array.

    Greyscale comes back with one channel, RGB with three (in RGB order), RGBA keeps its
    alpha (drop it with `to_model_channels`). Files must be PNG, JPEG, TIFF, WebP or BMP; a
    file whose header declares more than `max_pixels` pixels (None = no limit) is refused
    before it is decoded (PixelLimitError). EXIF orientation is applied, for files and PIL
    images alike, so the array is the picture as a viewer shows it. Raises InputError naming
    `name` when the source is missing, unreadable or not an allowed image.
    """
    if isinstance(source, np.ndarray):
        array = source
    elif isinstance(source, Image.Image):
        array = np.asarray(ImageOps.exif_transpose(source))
    elif isinstance(source, (str, os.PathLike)):
        array = _read_path(Path(source), name, max_pixels)
    else:
        raise InputError(f"{name}: expected a path, PIL image or numpy array, got {type(source).__name__}")
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[0] == 0 or array.shape[1] == 0:
        raise InputError(f"{name}: expected an H×W or H×W×C image, got an array of shape {array.shape}")
    if array.dtype == np.bool_:
        array = array.astype(np.uint8) * 255
    if array.dtype not in (np.uint8, np.uint16, np.float32, np.float64):
        array = array.astype(np.float32)
    return array


def decode_image(data: bytes, name: str = "image", max_pixels: int | None = DEFAULT_MAX_PIXELS
                 ) -> np.ndarray:
    """Decode image file bytes into an H×W or H×W×C array (RGB order, EXIF orientation applied).

    The header is checked first (`changeseg.io.header`): a format outside the allow-list is an
    InputError and more than `max_pixels` declared pixels a PixelLimitError, both raised
    before any pixel is decoded. Native decoder warnings never reach the terminal when
    `changeseg.io.native.quiet_native_output` is on; a failed decode names the last one.
    """
    header = read_header(data, name)
    check_pixel_limit(header, max_pixels, name)
    return _decode(data, header, name, "")


def _decode(data: bytes, header: ImageHeader, name: str, where: str) -> np.ndarray:
    # What the codec printed is only hidden, not quoted: worker threads are never captured, so
    # quoting it would make the same bad file's message depend on the thread that read it.
    with native_stderr():
        try:
            array = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        except cv2.error:  # e.g. OpenCV's own size assertion: fall back to Pillow
            array = None
    orientation = header.orientation
    if array is not None and header.format == "TIFF":
        orientation = 1  # OpenCV's TIFF decoder applies the Orientation tag itself
    if array is not None and array.ndim == 3 and array.shape[2] in (3, 4):
        swap_red_blue(array)  # OpenCV's BGR(A) → RGB(A) in place: a large image is never copied for it
    if array is None:
        array = _decode_with_pil(data)  # already RGB(A)
    if array is None:
        raise InputError(f"{name}: not a readable image{': ' + where.strip() if where else ''} "
                         f"(a truncated or corrupt {header.format} file)")
    return apply_orientation(array, orientation)


def swap_red_blue(image: np.ndarray, band_rows: int = 256) -> np.ndarray:
    """Exchange the first and third channels of an H×W×C (C = 3 or 4) array in place, one band
    of rows at a time (BGR(A) ↔ RGB(A)), so the extra memory is one band, not the image."""
    code = cv2.COLOR_BGR2RGB if image.shape[2] == 3 else cv2.COLOR_BGRA2RGBA
    native = image.dtype in (np.uint8, np.uint16, np.float32) and image.flags.c_contiguous  # OpenCV in place
    for top in range(0, image.shape[0], band_rows):
        band = image[top:top + band_rows]
        if native:
            cv2.cvtColor(band, code, dst=band)  # OpenCV copies an aliased source: one band
        else:
            band[:, :, :3] = band[:, :, 2::-1]  # numpy copies the overlapping right-hand side first
    return image


def apply_orientation(array: np.ndarray, orientation: int) -> np.ndarray:
    """The image as a viewer shows it, given its stored pixels and EXIF orientation (1–8)."""
    if orientation in (2, 4, 5, 7):  # mirrored orientations: undo the mirror first
        array = array[:, ::-1]
    turns = {3: 2, 4: 2, 5: 1, 6: 3, 7: 3, 8: 1}.get(orientation, 0)  # quarter turns anticlockwise
    if turns:
        array = np.rot90(array, turns)
    return np.ascontiguousarray(array)


def image_header(path: str | os.PathLike, name: str = "image", max_pixels: int | None = DEFAULT_MAX_PIXELS
                 ) -> ImageHeader:
    """An image file's header (format, size, orientation), checked as `read_image` checks it —
    the file exists, its format is allowed, it declares at most `max_pixels` pixels — without
    decoding a pixel."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{name}: file not found: {path}")
    if not path.is_file():
        raise InputError(f"{name}: not a file: {path}")
    header = read_header(path, name)
    check_pixel_limit(header, max_pixels, name, f"{path} ")
    return header


def _read_path(path: Path, name: str, max_pixels: int | None) -> np.ndarray:
    header = image_header(path, name, max_pixels)  # format and size from the header, before reading it all
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"{name}: cannot read {path}: {exc.strerror or exc}") from None
    return _decode(data, header, name, f"{path} ")


def _decode_with_pil(data: bytes) -> np.ndarray | None:
    """Pillow's decoding, for what OpenCV cannot read; palette and CMYK images become RGB(A)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limit was checked
            with Image.open(BytesIO(data), formats=ALLOWED_FORMATS) as image:
                if image.mode in ("P", "PA"):
                    keep_alpha = "transparency" in image.info or image.mode == "PA"
                    image = image.convert("RGBA" if keep_alpha else "RGB")
                elif image.mode in ("1", "CMYK", "YCbCr", "LAB", "HSV"):
                    image = image.convert("RGB")
                return np.asarray(image)
    except Exception:  # PIL raises many types for undecodable data; all mean "cannot decode"
        return None


def to_float(image: np.ndarray) -> np.ndarray:
    """Scale an image to float32 in [0, 1] by its dtype's range (floats are kept as they are)."""
    scale = _MAX_FOR_DTYPE.get(image.dtype)
    if scale is None:
        return image.astype(np.float32, copy=False)
    return image.astype(np.float32) / scale


def to_model_channels(image: np.ndarray, channels: int) -> np.ndarray:
    """Adapt an H×W×C image to the channel count a model expects.

    Greyscale is repeated to three channels, an alpha channel is dropped, RGB becomes
    greyscale for one-channel models; any other mismatch is an InputError.
    """
    have = image.shape[2]
    if have == channels:
        return image
    if have == 4 and channels == 3:
        return image[:, :, :3]
    if have in (1, 2) and channels == 3:  # grey or grey+alpha
        return np.repeat(image[:, :, :1], 3, axis=2)
    if have in (3, 4) and channels == 1:
        grey = image[:, :, :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
        return grey[:, :, None].astype(image.dtype)
    raise InputError(f"image has {have} channels but the model expects {channels}")


def to_uint8_rgb(image: np.ndarray, value_range: tuple[float, float] | None = None) -> np.ndarray:
    """Return a displayable H×W×3 uint8 copy of any image (for overlays and panels).

    8- and 16-bit images are scaled by their type's range; float images by their own minimum
    and maximum, or by `value_range` (`display_range` of the whole image), so the row bands
    of an image converted one at a time match the whole image converted at once.
    """
    rgb = to_model_channels(image, 3) if image.shape[2] != 3 else image
    if rgb.dtype == np.uint8:
        return rgb.copy()
    if rgb.dtype == np.uint16:
        return (rgb / 257.0).round().astype(np.uint8)
    lo, hi = value_range if value_range is not None else display_range(rgb)
    if lo >= 0.0 and hi <= 1.0:
        return (rgb * 255.0).round().astype(np.uint8)
    return ((rgb - lo) / max(hi - lo, 1e-12) * 255.0).round().astype(np.uint8)


def display_range(image: np.ndarray) -> tuple[float, float] | None:
    """The (minimum, maximum) `to_uint8_rgb` stretches a float image by; None for 8/16-bit images."""
    if image.dtype in (np.uint8, np.uint16):
        return None
    return float(np.min(image)), float(np.max(image))


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Call `write(tmp_path)` then rename the temporary file onto `path`.

    Readers never see a half-written file, and a failure leaves the old file (or none). A
    folder that cannot be made or written (a file in the way, no permission, a full disk) is
    an OutputError naming the path, not a traceback.
    """
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as exc:
        raise output_error(target, exc) from None
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        write(tmp_path)
        os.chmod(tmp_path, 0o666 & ~_current_umask())  # mkstemp creates 0600; use normal perms
        os.replace(tmp_path, target)
    except OSError as exc:
        tmp_path.unlink(missing_ok=True)
        raise output_error(target, exc) from None
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    return target


def output_error(target: Path, exc: OSError) -> OutputError:
    """An OutputError saying why `target` cannot be written (the failing path and the reason)."""
    reason = exc.strerror or str(exc)
    if isinstance(exc, (FileExistsError, NotADirectoryError)):
        reason = "a file is in the way of the output folder"
    culprit = Path(exc.filename) if exc.filename else target
    where = "" if culprit == target or culprit.name.endswith(".tmp") else f" ({culprit})"
    return OutputError(f"cannot write to {target}: {reason}{where}")


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def encode_png(image: np.ndarray) -> bytes:
    """Encode an H×W, H×W×3 (RGB) or H×W×4 (RGBA) uint8/uint16 array as PNG bytes."""
    array = image
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim == 3 and array.shape[2] == 3:
        array = cv2.cvtColor(array, cv2.COLOR_RGB2BGR)
    elif array.ndim == 3 and array.shape[2] == 4:
        array = cv2.cvtColor(array, cv2.COLOR_RGBA2BGRA)
    with native_stderr():
        ok, buffer = cv2.imencode(".png", array)
    if not ok:
        raise InputError(f"cannot encode an array of shape {image.shape} and dtype {image.dtype} as PNG")
    return buffer.tobytes()


def write_png(path: str | os.PathLike, image: np.ndarray) -> Path:
    """Write an image as PNG atomically (see `encode_png` for accepted arrays).

    A uint8 image of more than `PNG_BAND_MIN_PIXELS` pixels is encoded band by band
    (`write_png_bands`): no colour-converted copy and no encoded buffer of the whole image.
    """
    if image.dtype == np.uint8 and image.shape[0] * image.shape[1] > PNG_BAND_MIN_PIXELS:
        return write_png_bands(path, image.shape[1], image.shape[0], row_bands(image))
    data = encode_png(image)
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


PNG_BAND_MIN_PIXELS = 1 << 24  # write_png encodes larger uint8 images band by band
PNG_BAND_ROWS = 256
_PNG_COLOUR_TYPES = {1: 0, 3: 2, 4: 6}  # channels → PNG colour type (grey, RGB, RGBA)


def row_bands(image: np.ndarray, rows: int = PNG_BAND_ROWS) -> Iterator[np.ndarray]:
    """Consecutive bands of at most `rows` rows of an array, top to bottom (views, no copies)."""
    for top in range(0, image.shape[0], rows):
        yield image[top:top + rows]


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(payload,
                                                                                          zlib.crc32(kind)))


def write_png_bands(path: str | os.PathLike, width: int, height: int, bands: Iterable[np.ndarray]) -> Path:
    """Write a PNG whose rows arrive as bands, top to bottom, atomically; one band is held at a time.

    Each band is an h×W (grey) or h×W×1/3/4 (grey, RGB, RGBA) uint8 array; together they must
    make exactly `height` rows. Rows are encoded as OpenCV's `write_png` does them (the Sub
    filter, zlib level 1, run-length strategy), so the files come out about the same size.
    """
    target = Path(path)

    def write(tmp: Path) -> None:
        with tmp.open("wb") as handle:
            compressor = zlib.compressobj(1, zlib.DEFLATED, 15, 9, zlib.Z_RLE)
            done, channels = 0, None
            for band in bands:
                band = band if band.ndim == 3 else band[:, :, None]
                if channels is None:
                    channels = band.shape[2]
                    if channels not in _PNG_COLOUR_TYPES:
                        raise InputError(f"cannot write {channels}-channel rows as PNG ({target})")
                    header = struct.pack(">IIBBBBB", width, height, 8, _PNG_COLOUR_TYPES[channels], 0, 0, 0)
                    handle.write(b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header))
                if band.dtype != np.uint8 or band.shape[1:] != (width, channels) or done + len(band) > height:
                    raise InputError(f"PNG rows of shape {band.shape} and dtype {band.dtype} do not fit a "
                                     f"{width}×{height}×{channels} uint8 image ({target})")
                rows = band.reshape(len(band), width * channels)
                filtered = np.empty((len(band), width * channels + 1), np.uint8)
                filtered[:, 0] = 1  # Sub: each byte minus the same channel of the pixel to its left
                filtered[:, 1:channels + 1] = rows[:, :channels]
                np.subtract(rows[:, channels:], rows[:, :-channels], out=filtered[:, channels + 1:])
                compressed = compressor.compress(filtered)
                if compressed:
                    handle.write(_png_chunk(b"IDAT", compressed))
                done += len(band)
            if channels is None or done != height:
                raise InputError(f"PNG rows end at row {done} of {height} ({target})")
            handle.write(_png_chunk(b"IDAT", compressor.flush()) + _png_chunk(b"IEND", b""))

    return atomic_write(target, write)


def write_json(path: str | os.PathLike, payload: Any) -> Path:
    """Write JSON atomically, pretty-printed, with a trailing newline."""
    text = json.dumps(payload, indent=2, ensure_ascii=False) + "\n"
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def header_size(path: str | os.PathLike) -> tuple[int, int] | None:
    """An image file's (width, height) as `read_image` returns it (EXIF orientation applied),
    read from its header without decoding; None when it is not a readable, allowed image."""
    try:
        return read_header(path).oriented_size
    except InputError:
        return None


def read_mask(source: ImageLike, name: str = "mask") -> np.ndarray:
    """Load a label image as an H×W uint8 array (first channel if it has several)."""
    array = read_image(source, name)
    mask = array[:, :, 0]
    if mask.dtype != np.uint8:
        mask = np.clip(mask, 0, 255).astype(np.uint8)
    return mask
