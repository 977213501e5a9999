"""Reading and writing images: any path, PIL image or array in; atomic PNG/JSON out.

Images are returned as numpy arrays H×W×C with their original dtype (uint8, uint16 or
float32), so 16-bit and multispectral data keep their range until the model's
normalisation decides how to scale them.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image

from changeseg.errors import InputError

ImageLike = str | os.PathLike | Image.Image | np.ndarray

_MAX_FOR_DTYPE = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}


def read_image(source: ImageLike, name: str = "image") -> np.ndarray:
    """Load an image from a path, a PIL image or an array as an H×W×C numpy array.

    Greyscale comes back with one channel, RGB with three (in RGB order), RGBA keeps its
    alpha (drop it with `to_model_channels`). Raises InputError naming `name` when the
    source is missing, unreadable or not an image.
    """
    if isinstance(source, np.ndarray):
        array = source
    elif isinstance(source, Image.Image):
        array = np.asarray(source)
    elif isinstance(source, (str, os.PathLike)):
        array = _read_path(Path(source), name)
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


def _read_path(path: Path, name: str) -> np.ndarray:
    if not path.exists():
        raise InputError(f"{name}: file not found: {path}")
    if not path.is_file():
        raise InputError(f"{name}: not a file: {path}")
    try:
        data = np.fromfile(str(path), dtype=np.uint8)  # fromfile+imdecode copes with any path encoding
    except OSError as exc:
        raise InputError(f"{name}: cannot read {path}: {exc.strerror or exc}") from None
    array = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if array is None:
        array = _read_with_pil(path)
    if array is None:
        raise InputError(f"{name}: not a readable image: {path}")
    if array.ndim == 3 and array.shape[2] == 3:
        array = cv2.cvtColor(array, cv2.COLOR_BGR2RGB)
    elif array.ndim == 3 and array.shape[2] == 4:
        array = cv2.cvtColor(array, cv2.COLOR_BGRA2RGBA)
    return array


def _read_with_pil(path: Path) -> np.ndarray | None:
    try:
        with Image.open(path) as image:
            return np.asarray(image)
    except Exception:  # PIL raises many types for non-images; all mean "not an image"
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


def to_uint8_rgb(image: np.ndarray) -> np.ndarray:
    """Return a displayable H×W×3 uint8 copy of any image (for overlays and panels)."""
    rgb = to_model_channels(image, 3) if image.shape[2] != 3 else image
    if rgb.dtype == np.uint8:
        return rgb.copy()
    if rgb.dtype == np.uint16:
        return (rgb / 257.0).round().astype(np.uint8)
    lo, hi = float(np.min(rgb)), float(np.max(rgb))
    if lo >= 0.0 and hi <= 1.0:
        return (rgb * 255.0).round().astype(np.uint8)
    return ((rgb - lo) / max(hi - lo, 1e-12) * 255.0).round().astype(np.uint8)


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Call `write(tmp_path)` then rename the temporary file onto `path`.

    Readers never see a half-written file, and a failure leaves the old file (or none).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        write(tmp_path)
        os.chmod(tmp_path, 0o666 & ~_current_umask())  # mkstemp creates 0600; use normal perms
        os.replace(tmp_path, target)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    return target


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
    ok, buffer = cv2.imencode(".png", array)
    if not ok:
        raise InputError(f"cannot encode an array of shape {image.shape} and dtype {image.dtype} as PNG")
    return buffer.tobytes()


def write_png(path: str | os.PathLike, image: np.ndarray) -> Path:
    """Write an image as PNG atomically (see `encode_png` for accepted arrays)."""
    data = encode_png(image)
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def write_json(path: str | os.PathLike, payload: Any) -> Path:
    """Write JSON atomically, pretty-printed, with a trailing newline."""
    text = json.dumps(payload, indent=2, ensure_ascii=False) + "\n"
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def header_size(path: str | os.PathLike) -> tuple[int, int] | None:
    """An image file's (width, height) read from its header (no decoding), or None when the
    file is not a readable image."""
    try:
        with Image.open(path) as image:
            return image.size
    except Exception:  # PIL raises many types for non-images; all mean "unreadable"
        return None


def read_mask(source: ImageLike, name: str = "mask") -> np.ndarray:
    """Load a label image as an H×W uint8 array (first channel if it has several)."""
    array = read_image(source, name)
    mask = array[:, :, 0]
    if mask.dtype != np.uint8:
        mask = np.clip(mask, 0, 255).astype(np.uint8)
    return mask
