"""Joint augmentations for change pairs, and conversion of a sample to tensors.

Every transform is a callable ``transform(sample, rng) -> sample`` taking a `PairSample` and
a ``numpy.random.Generator``; all randomness comes from that generator, so the same seed
gives the same result. Geometric transforms move the reference, the comparison, the mask
and any boxes identically: images are interpolated bilinearly, the mask by nearest
neighbour, and areas brought in from outside the image are 0 in the images and 255
(`IGNORE_INDEX`) in the mask. They work for any channel count and for uint8, uint16 and
float32 images (OpenCV). Inputs are never modified in place.

`to_tensors` turns a sample into what a model takes: float32 C×H×W images scaled by their
dtype range and normalised, an int64 H×W mask.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from changeseg.data.pairs import PairSample, clip_boxes, crop_sample
from changeseg.errors import InputError
from changeseg.io.images import to_float
from changeseg.labels import IGNORE_INDEX

Transform = Callable[[PairSample, np.random.Generator], PairSample]

_NEAREST = getattr(cv2, "INTER_NEAREST_EXACT", cv2.INTER_NEAREST)
_IMAGE_KEYS = ("reference", "comparison")


class Compose:
    """Apply transforms in order, all drawing from the one generator passed to the call."""

    def __init__(self, transforms: Sequence[Transform]):
        self.transforms = list(transforms)

    def __call__(self, sample: PairSample, rng: np.random.Generator) -> PairSample:
        for transform in self.transforms:
            sample = transform(sample, rng)
        return sample

    def __repr__(self) -> str:
        return f"Compose({self.transforms!r})"


# ---------------------------------------------------------------- geometry helpers


def _restore_channels(result: np.ndarray, like: np.ndarray) -> np.ndarray:
    return result[:, :, None] if like.ndim == 3 and result.ndim == 2 else result


def _warp_boxes(boxes: np.ndarray, matrix: np.ndarray, width: int, height: int) -> np.ndarray:
    """Map inclusive-corner boxes through a 2×3 pixel-coordinate matrix; keep their envelope."""
    boxes = np.asarray(boxes, dtype=np.int64).reshape(-1, 5)
    if not len(boxes):
        return boxes.copy()
    x1, y1, x2, y2 = (boxes[:, i].astype(np.float64) for i in range(4))
    corners = np.stack(
        [
            np.stack([x1, y1], 1),
            np.stack([x2, y1], 1),
            np.stack([x1, y2], 1),
            np.stack([x2, y2], 1),
        ],
        axis=1,
    )  # N×4×2
    moved = corners @ matrix[:, :2].T + matrix[:, 2]
    out = np.empty_like(boxes)
    out[:, 0] = np.floor(moved[:, :, 0].min(1) + 1e-6)
    out[:, 1] = np.floor(moved[:, :, 1].min(1) + 1e-6)
    out[:, 2] = np.ceil(moved[:, :, 0].max(1) - 1e-6)
    out[:, 3] = np.ceil(moved[:, :, 1].max(1) - 1e-6)
    out[:, 4] = boxes[:, 4]
    return clip_boxes(out, width, height)


def _map_sample(
    sample: PairSample,
    image_fn: Callable[[np.ndarray], np.ndarray],
    mask_fn: Callable[[np.ndarray], np.ndarray],
    matrix: np.ndarray | None,
) -> PairSample:
    out: dict[str, Any] = dict(sample)
    for key in _IMAGE_KEYS:
        out[key] = np.ascontiguousarray(_restore_channels(image_fn(sample[key]), sample[key]))
    out["mask"] = np.ascontiguousarray(mask_fn(sample["mask"]))
    if "boxes" in sample and matrix is not None:
        height, width = out["mask"].shape
        out["boxes"] = _warp_boxes(sample["boxes"], matrix, width, height)
    return out  # type: ignore[return-value]


def hflip(sample: PairSample) -> PairSample:
    """Mirror a sample left-right."""
    width = sample["mask"].shape[1]
    matrix = np.array([[-1.0, 0, width - 1], [0, 1, 0]])
    return _map_sample(sample, lambda a: a[:, ::-1], lambda m: m[:, ::-1], matrix)


def vflip(sample: PairSample) -> PairSample:
    """Mirror a sample top-bottom."""
    height = sample["mask"].shape[0]
    matrix = np.array([[1.0, 0, 0], [0, -1, height - 1]])
    return _map_sample(sample, lambda a: a[::-1], lambda m: m[::-1], matrix)


def rot90(sample: PairSample, k: int) -> PairSample:
    """Rotate a sample by k × 90° counter-clockwise (as ``numpy.rot90``)."""
    for _ in range(k % 4):
        width = sample["mask"].shape[1]
        matrix = np.array([[0.0, 1, 0], [-1, 0, width - 1]])
        sample = _map_sample(sample, np.rot90, np.rot90, matrix)
    return sample


def affine(sample: PairSample, matrix: np.ndarray, width: int, height: int) -> PairSample:
    """Warp a sample with a 2×3 matrix (source → destination pixels) onto a width×height grid."""

    def image_fn(a: np.ndarray) -> np.ndarray:
        return cv2.warpAffine(
            np.ascontiguousarray(a),
            matrix,
            (width, height),
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=0,
        )

    def mask_fn(m: np.ndarray) -> np.ndarray:
        return cv2.warpAffine(
            np.ascontiguousarray(m),
            matrix,
            (width, height),
            flags=cv2.INTER_NEAREST,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=IGNORE_INDEX,
        )

    return _map_sample(sample, image_fn, mask_fn, matrix)


def rotate(sample: PairSample, degrees: float) -> PairSample:
    """Rotate a sample by `degrees` counter-clockwise about its centre, keeping its size."""
    height, width = sample["mask"].shape
    matrix = cv2.getRotationMatrix2D(((width - 1) / 2.0, (height - 1) / 2.0), degrees, 1.0)
    return affine(sample, matrix, width, height)


def resize(sample: PairSample, width: int, height: int) -> PairSample:
    """Resize a sample to width×height (images bilinear, mask nearest neighbour)."""
    h, w = sample["mask"].shape
    sx, sy = width / w, height / h
    matrix = np.array([[sx, 0, 0.5 * sx - 0.5], [0, sy, 0.5 * sy - 0.5]])
    return _map_sample(
        sample,
        lambda a: cv2.resize(
            np.ascontiguousarray(a), (width, height), interpolation=cv2.INTER_LINEAR
        ),
        lambda m: cv2.resize(np.ascontiguousarray(m), (width, height), interpolation=_NEAREST),
        matrix,
    )


def scale_sample(sample: PairSample, factor: float) -> PairSample:
    """Resize a sample by `factor` (each side rounded, at least 1 px; see `resize`)."""
    height, width = sample["mask"].shape
    return resize(sample, max(1, round(width * factor)), max(1, round(height * factor)))


# ---------------------------------------------------------------- random geometric transforms


class HorizontalFlip:
    """Mirror left-right with probability `p`."""

    def __init__(self, p: float = 0.5):
        self.p = p

    def __call__(self, sample: PairSample, rng: np.random.Generator) -> PairSample:
        return hflip(sample) if rng.random() < self.p else sample


class VerticalFlip:
    """Mirror top-bottom with probability `p`."""

    def __init__(self, p: float = 0.5):
        self.p = p

    def __call__(self, sample: PairSample, rng: np.random.Generator) -> PairSample:
        return vflip(sample) if rng.random() < self.p else sample


class RandomRotate90:
    """With probability `p`, rotate by 90°, 180° or 270° (chosen uniformly)."""

    def __init__(self, p: float = 0.5):
        self.p = p

    def __call__(self, sample: PairSample, rng: np.random.Generator) -> PairSample:
        if rng.random() >= self.p:
            return sample
        return rot90(sample, int(rng.integers(1, 4)))


class RandomRotation:
    """With probability `p`, rotate by an angle drawn from [-max_degrees, max_degrees].

    The size is kept; corners brought in from outside are 0 in the images, 255 in the mask.
    """

    def __init__(self, max_degrees: float = 10.0, p: float = 0.5):
        self.max_degrees = float(max_degrees)
        self.p = p

    def __call__(self, sample: PairSample, rng: np.random.Generator) -> PairSample:
        if rng.random() >= self.p:
            return sample
        return rotate(sample, float(rng.uniform(-self.max_degrees, self.max_degrees)))


class RandomScale:
    """With probability `p`, resize by a factor drawn from [min_scale, max_scale].

    The size changes; follow it with `RandomCrop` to get a fixed training size.
    """

    def __init__(self, min_scale: float = 0.75, max_scale: float = 1.25, p: float = 0.5):
        if not 0 < min_scale <= max_scale:
            raise InputError(f"need 0 < min_scale <= max_scale, got {min_scale}, {max_scale}")
        self.min_scale, self.max_scale, self.p = float(min_scale), float(max_scale), p

    def __call__(self, sample: PairSample, rng: np.random.Generator) -> PairSample:
        if rng.random() >= self.p:
            return sample
        return scale_sample(sample, float(rng.uniform(self.min_scale, self.max_scale)))


class RandomCrop:
    """Cut a random `size` window (int or (height, width)); pad smaller images.

    Padding puts the image at a random place inside the window: 0 around the images, 255
    around the mask.
    """

    def __init__(self, size: int | Sequence[int]):
        self.height, self.width = (size, size) if isinstance(size, int) else (size[0], size[1])
        if self.height <= 0 or self.width <= 0:
            raise InputError(f"crop size must be positive, got {size}")

    def __call__(self, sample: PairSample, rng: np.random.Generator) -> PairSample:
        h, w = sample["mask"].shape
        y = (
            int(rng.integers(0, h - self.height + 1))
            if h >= self.height
            else -int(rng.integers(0, self.height - h + 1))
        )
        x = (
            int(rng.integers(0, w - self.width + 1))
            if w >= self.width
            else -int(rng.integers(0, self.width - w + 1))
        )
        return crop_sample(sample, y, x, self.height, self.width)


# ---------------------------------------------------------------- photometric transform

_YIQ = np.array(
    [[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]], np.float32
)
_YIQ_INV = np.linalg.inv(_YIQ).astype(np.float32)
_DTYPE_MAX = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}


class ColorJitter:
    """Random brightness, contrast, saturation and hue changes of one image or both.

    Factors are drawn from [1 - x, 1 + x] for brightness, contrast and saturation, and the
    hue is turned by up to ``hue × 360°`` (a rotation of the chroma plane in YIQ space; only
    3-channel images get it). Saturation blends each pixel with its channel mean, so it works
    for any channel count. `apply_to`: ``"both"``, ``"one"`` (one image picked at random),
    ``"reference"`` or ``"comparison"``; with ``independent=True`` each image gets its own
    factors, otherwise both get the same. Integer images are clipped to their dtype range;
    float images are not clipped. Applied with probability `p`.
    """

    def __init__(
        self,
        brightness: float = 0.2,
        contrast: float = 0.2,
        saturation: float = 0.2,
        hue: float = 0.02,
        apply_to: str = "both",
        independent: bool = True,
        p: float = 1.0,
    ):
        if apply_to not in ("both", "one", "reference", "comparison"):
            raise InputError(
                f"apply_to must be 'both', 'one', 'reference' or 'comparison', got {apply_to!r}"
            )
        self.brightness, self.contrast = brightness, contrast
        self.saturation, self.hue = saturation, hue
        self.apply_to, self.independent, self.p = apply_to, independent, p

    def _factors(self, rng: np.random.Generator) -> tuple[float, float, float, float]:
        def draw(x: float) -> float:
            return float(rng.uniform(1 - x, 1 + x)) if x > 0 else 1.0

        angle = float(rng.uniform(-self.hue, self.hue)) * 2 * np.pi if self.hue > 0 else 0.0
        return draw(self.brightness), draw(self.contrast), draw(self.saturation), angle

    def __call__(self, sample: PairSample, rng: np.random.Generator) -> PairSample:
        if rng.random() >= self.p:
            return sample
        if self.apply_to == "both":
            keys = list(_IMAGE_KEYS)
        elif self.apply_to == "one":
            keys = [_IMAGE_KEYS[int(rng.integers(2))]]
        else:
            keys = [self.apply_to]
        out: dict[str, Any] = dict(sample)
        shared = self._factors(rng)
        for key in keys:
            factors = self._factors(rng) if self.independent else shared
            out[key] = jitter_image(sample[key], *factors)
        return out  # type: ignore[return-value]


def jitter_image(
    image: np.ndarray, brightness: float, contrast: float, saturation: float, hue_angle: float
) -> np.ndarray:
    """Apply given brightness/contrast/saturation factors and a hue angle (radians) to an image."""
    x = image.astype(np.float32)
    x = x * brightness
    if contrast != 1.0:
        mean = x.mean()
        x = mean + contrast * (x - mean)
    if saturation != 1.0 and x.shape[2] > 1:
        grey = x.mean(axis=2, keepdims=True)
        x = grey + saturation * (x - grey)
    if hue_angle != 0.0 and x.shape[2] == 3:
        c, s = np.cos(hue_angle), np.sin(hue_angle)
        turn = np.array([[1, 0, 0], [0, c, -s], [0, s, c]], np.float32)
        x = x @ (_YIQ_INV @ turn @ _YIQ).T
    return in_image_dtype(x, image.dtype)


def in_image_dtype(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Float pixel values back in an image's dtype: rounded and clipped to its range if integer."""
    top = _DTYPE_MAX.get(np.dtype(dtype))
    if top is not None:
        return np.clip(np.rint(values), 0, top).astype(dtype)
    return values.astype(dtype)


class ToneCurve:
    """A season-like radiometric change of one image: a random gain and gamma per channel.

    Each channel of the chosen image becomes ``top · gain · (x / top) ** gamma`` with ``gain``
    drawn from [1 − s, 1 + s] and ``log(gamma)`` from [−s, s] (s = `strength`), channel by
    channel, so the curve is non-linear and the colour balance shifts (green to brown, a
    bluer or warmer cast) — the kind of difference between two seasons or two sensors that
    `ColorJitter`'s linear, mostly shared factors do not reach. ``top`` is the dtype's range
    for integer images and the image's own maximum for float ones. Only one image is changed
    (picked at random), as in a real pair; geometry and mask are untouched. Applied with
    probability `p`.
    """

    def __init__(self, strength: float = 0.4, p: float = 0.5):
        if not 0.0 < strength < 1.0:
            raise InputError(f"tone curve strength must lie in (0, 1), got {strength}")
        self.strength, self.p = float(strength), float(p)

    def __call__(self, sample: PairSample, rng: np.random.Generator) -> PairSample:
        if rng.random() >= self.p:
            return sample
        key = _IMAGE_KEYS[int(rng.integers(2))]
        image = sample[key]
        channels = image.shape[2]
        gain = rng.uniform(1 - self.strength, 1 + self.strength, channels).astype(np.float32)
        gamma = np.exp(rng.uniform(-self.strength, self.strength, channels)).astype(np.float32)
        out: dict[str, Any] = dict(sample)
        out[key] = tone_curve_image(image, gain, gamma)
        return out  # type: ignore[return-value]


def tone_curve_image(image: np.ndarray, gain: np.ndarray, gamma: np.ndarray) -> np.ndarray:
    """Apply a per-channel gain and gamma (`ToneCurve`) to an H×W×C image of any dtype."""
    top = _DTYPE_MAX.get(image.dtype)
    scale = top if top is not None else max(float(image.max()), 1e-6)
    x = np.clip(image.astype(np.float32) / scale, 0.0, None)
    return in_image_dtype(scale * gain * np.power(x, gamma), image.dtype)


# ---------------------------------------------------------------- tensors


def _per_channel(values: Sequence[float] | float, channels: int, what: str) -> np.ndarray:
    array = np.atleast_1d(np.asarray(values, dtype=np.float32))
    if array.size == 1:
        return np.repeat(array, channels)
    if array.size != channels:
        raise InputError(f"{what} has {array.size} values but the image has {channels} channels")
    return array


def image_to_tensor(
    image: np.ndarray, mean: Sequence[float] | float, std: Sequence[float] | float
) -> torch.Tensor:
    """H×W×C image → float32 C×H×W tensor: scaled by dtype range (`to_float`), then normalised."""
    x = to_float(image)
    channels = x.shape[2]
    m, s = _per_channel(mean, channels, "mean"), _per_channel(std, channels, "std")
    if np.any(s <= 0):
        raise InputError(f"std must be positive, got {std}")
    x = (x - m) / s
    return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1), dtype=np.float32))


def to_tensors(
    sample: PairSample, mean: Sequence[float] | float, std: Sequence[float] | float
) -> dict[str, Any]:
    """Turn a sample into tensors for a model.

    ``"reference"``/``"comparison"`` become normalised float32 C×H×W tensors (uint8 / 255,
    uint16 / 65535, floats as they are, then ``(x - mean) / std`` per channel; a single value
    applies to all channels), ``"mask"`` an int64 H×W tensor (255 stays 255), ``"boxes"`` an
    int64 N×5 tensor; other keys (``"name"``, offsets) are passed through.
    """
    out: dict[str, Any] = dict(sample)
    for key in _IMAGE_KEYS:
        out[key] = image_to_tensor(sample[key], mean, std)
    out["mask"] = torch.from_numpy(np.ascontiguousarray(sample["mask"], dtype=np.int64))
    if "boxes" in sample:
        out["boxes"] = torch.from_numpy(np.asarray(sample["boxes"], dtype=np.int64).reshape(-1, 5))
    return out


class ScaledPairs(Dataset):
    """Every pair of `dataset` resized by one fixed `factor` (images bilinear, masks nearest, so
    ignore labels stay ignore): small frames enlarged before training crops are cut from them.

    A 200×136 frame inside a 256² crop is 42 % content and 58 % padding; enlarged 2× it fills
    the crop. Keeps `names` and `class_names`.
    """

    def __init__(self, dataset: Dataset, factor: float) -> None:
        if not factor > 0:
            raise InputError(f"ScaledPairs: factor must be > 0, got {factor}")
        self.dataset, self.factor = dataset, float(factor)
        self.class_names = list(getattr(dataset, "class_names", []))
        self.names = list(getattr(dataset, "names", []))

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> PairSample:
        return scale_sample(self.dataset[index], self.factor)


class TransformedDataset(Dataset):
    """Apply a transform (and optionally `to_tensors`) to each sample of a dataset.

    Item ``i`` of epoch ``e`` is transformed with a generator seeded by (seed, e, i), so
    results are reproducible whatever the worker or order; call `set_epoch` each epoch.
    """

    def __init__(
        self,
        dataset: Dataset,
        transform: Transform | None = None,
        seed: int = 0,
        mean: Sequence[float] | float | None = None,
        std: Sequence[float] | float | None = None,
    ):
        if (mean is None) != (std is None):
            raise InputError("give both mean and std for to_tensors, or neither")
        self.dataset, self.transform, self.seed = dataset, transform, int(seed)
        self.mean, self.std = mean, std
        self.epoch = 0
        self.class_names = list(getattr(dataset, "class_names", []))
        self.names = list(getattr(dataset, "names", []))

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose random draws to use (also forwarded to the wrapped dataset)."""
        self.epoch = int(epoch)
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> Any:
        sample = self.dataset[index]
        if self.transform is not None:
            sample = self.transform(sample, np.random.default_rng([self.seed, self.epoch, index]))
        if self.mean is not None and self.std is not None:
            return to_tensors(sample, self.mean, self.std)
        return sample
