"""The change-pair sample type, helpers shared by the dataset readers, and large-image serving.

A **sample** is a plain dict (`PairSample`) of numpy arrays, never tensors:

- ``"reference"``: the image before (H×W×C, original dtype: uint8, uint16, or float32 for
  multispectral data). ``A/``, ``t0/``, ``img1``, the DeepPCB template.
- ``"comparison"``: the image after, same H×W and channel count as the reference.
- ``"mask"``: H×W uint8 class indices. Binary sets use 0 = unchanged, 1 = changed; typed sets
  use their own class list (``dataset.class_names``). ``IGNORE_INDEX`` (255) marks pixels that
  must not count (padding, unlabelled areas).
- ``"name"``: a string naming the pair inside its dataset (unique per dataset).
- optionally ``"boxes"``: an N×5 int array ``x1, y1, x2, y2, type`` (DeepPCB), corners
  inclusive, in pixel coordinates of this sample.

Readers subclass `PairDataset`; `to_tensors` in `changeseg.data.transforms` turns a sample
into tensors for a model. Large images are served as random crops (`RandomCropDataset`, for
training) or as a grid of tiles with their offsets (`TileDataset`, for evaluation).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, TypedDict

import numpy as np
from torch.utils.data import Dataset

from changeseg.errors import InputError
from changeseg.labels import BINARY_CLASSES, IGNORE_INDEX

IMAGE_EXTENSIONS: tuple[str, ...] = (
    ".png",
    ".jpg",
    ".jpeg",
    ".bmp",
    ".tif",
    ".tiff",
    ".webp",
    ".ppm",
    ".pgm",
)
"""File extensions the readers treat as images (compared case-insensitively)."""


class _RequiredSample(TypedDict):
    reference: np.ndarray
    comparison: np.ndarray
    mask: np.ndarray
    name: str


class PairSample(_RequiredSample, total=False):
    """One change pair: reference, comparison, mask, name and optional DeepPCB-style boxes.

    Serving wrappers add ``"offset"`` (y, x of the crop or tile in the full image) and
    ``"image_size"`` (H, W of the full image); `TileDataset` also adds ``"index"`` (which pair).
    """

    boxes: np.ndarray
    offset: tuple[int, int]
    image_size: tuple[int, int]
    index: int


# ---------------------------------------------------------------- sample construction


def make_sample(
    reference: np.ndarray,
    comparison: np.ndarray,
    mask: np.ndarray,
    name: str,
    boxes: np.ndarray | None = None,
) -> PairSample:
    """Check a pair's arrays and bundle them as a `PairSample`.

    Raises InputError naming the sample when the two images differ in size or channel
    count, when the mask is not H×W of the same size, or when an array has the wrong rank.
    """
    for label, image in (("reference", reference), ("comparison", comparison)):
        if image.ndim != 3:
            raise InputError(f"{name}: {label} image must be H×W×C, got shape {image.shape}")
    if reference.shape[:2] != comparison.shape[:2]:
        raise InputError(
            f"{name}: reference is {_size(reference)} but comparison is {_size(comparison)};"
            " the two images of a pair must have the same size"
        )
    if reference.shape[2] != comparison.shape[2]:
        raise InputError(
            f"{name}: reference has {reference.shape[2]} channels but comparison has"
            f" {comparison.shape[2]}"
        )
    if mask.ndim != 2 or mask.shape != reference.shape[:2]:
        raise InputError(
            f"{name}: mask of shape {mask.shape} does not match the images ({_size(reference)})"
        )
    sample: PairSample = {
        "reference": reference,
        "comparison": comparison,
        "mask": mask.astype(np.uint8, copy=False),
        "name": name,
    }
    if boxes is not None:
        sample["boxes"] = np.asarray(boxes, dtype=np.int64).reshape(-1, 5)
    return sample


def _size(image: np.ndarray) -> str:
    return f"{image.shape[1]}×{image.shape[0]}"


def binarize_mask(raw: np.ndarray) -> np.ndarray:
    """Turn a stored label into 0/1 change: 0/255 (or any 8-bit grey) by > 127; a label whose
    values are all below 128 (0/1, or class indices such as typed 0..3) by "not 0", so a typed
    label read as binary is change wherever it has any type, never silently all unchanged."""
    if raw.size and int(raw.max()) < 128:
        return (raw > 0).astype(np.uint8)
    return (raw > 127).astype(np.uint8)


def natural_key(text: str) -> list[Any]:
    """Sort key that orders embedded numbers numerically (``x_2`` before ``x_10``)."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", text)]


def list_images(folder: Path) -> dict[str, Path]:
    """Map each image file's stem in `folder` to its path (non-images and hidden files skipped)."""
    found: dict[str, Path] = {}
    for path in folder.iterdir():
        if path.name.startswith(".") or not path.is_file():
            continue
        if path.suffix.lower() in IMAGE_EXTENSIONS:
            found.setdefault(path.stem, path)
    return found


# ---------------------------------------------------------------- dataset base and subsets


class PairDataset(Dataset):
    """Base class of the readers: a map-style dataset of `PairSample` dicts.

    Subclasses fill ``names`` (one per pair, in a fixed order), ``class_names`` and
    ``root``, and implement ``load(index)``. Indexing with an int returns a fresh sample.
    """

    names: list[str]
    class_names: list[str]
    root: Path

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int) -> PairSample:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} pairs")
        return self.load(index % len(self))

    def load(self, index: int) -> PairSample:
        """Read pair number `index` from disk."""
        raise NotImplementedError

    def index_of(self, name: str) -> int:
        """Position of the pair called `name` (InputError if there is none)."""
        try:
            return self.names.index(name)
        except ValueError:
            raise InputError(f"no pair named {name!r} in {type(self).__name__}") from None

    def __repr__(self) -> str:
        root = getattr(self, "root", "?")
        return f"{type(self).__name__}(root={str(root)!r}, pairs={len(self)})"


class PairSubset(PairDataset):
    """A view of some pairs of another dataset, chosen by name or index, keeping its classes."""

    def __init__(self, dataset: PairDataset, pairs: Iterable[str | int]):
        self.dataset = dataset
        self.root = getattr(dataset, "root", Path("."))
        self.class_names = list(dataset.class_names)
        indices = [dataset.index_of(p) if isinstance(p, str) else int(p) for p in pairs]
        for index in indices:
            if not 0 <= index < len(dataset):
                raise InputError(f"pair index {index} out of range for {len(dataset)} pairs")
        self.indices = indices
        self.names = [dataset.names[i] for i in indices]

    def load(self, index: int) -> PairSample:
        """Read the `index`-th pair of the subset from the underlying dataset."""
        return self.dataset[self.indices[index]]


def carve_split(
    names: Sequence[str], fraction: float, seed: int = 0
) -> tuple[list[str], list[str]]:
    """Split names into (train, val) deterministically: the same seed gives the same split.

    The validation part holds ``round(fraction * n)`` names, at least one when fraction > 0
    and there are two or more names, and never all of them. Both lists keep input order.
    """
    if not 0.0 <= fraction < 1.0:
        raise InputError(f"validation fraction must be in [0, 1), got {fraction}")
    if len(set(names)) != len(names):
        raise InputError("carve_split: names must be unique")
    n = len(names)
    n_val = int(round(fraction * n))
    # at least one validation name when asked for any, and never all of them
    n_val = min(max(n_val, 1), n - 1) if fraction > 0 and n >= 2 else 0
    order = np.random.default_rng(seed).permutation(n)
    val_set = set(order[:n_val].tolist())
    train = [name for i, name in enumerate(names) if i not in val_set]
    val = [name for i, name in enumerate(names) if i in val_set]
    return train, val


# ---------------------------------------------------------------- cropping helpers


def crop_sample(sample: PairSample, y: int, x: int, height: int, width: int) -> PairSample:
    """Cut an H×W window at (y, x) out of a sample, padding outside the image.

    Images are padded with 0 and the mask with IGNORE_INDEX; boxes are shifted, clipped to
    the window and dropped when nothing of them is left. Negative offsets pad on top/left.
    """
    out: dict[str, Any] = dict(sample)
    for key in ("reference", "comparison"):
        out[key] = _window(sample[key], y, x, height, width, 0)
    out["mask"] = _window(sample["mask"], y, x, height, width, IGNORE_INDEX)
    if "boxes" in sample:
        out["boxes"] = shift_boxes(sample["boxes"], -x, -y, width, height)
    return out  # type: ignore[return-value]


def _window(array: np.ndarray, y: int, x: int, height: int, width: int, fill: int) -> np.ndarray:
    h, w = array.shape[:2]
    if y >= 0 and x >= 0 and y + height <= h and x + width <= w:
        return np.ascontiguousarray(array[y : y + height, x : x + width])
    out = np.full((height, width) + array.shape[2:], fill, dtype=array.dtype)
    y0, x0 = max(y, 0), max(x, 0)
    y1, x1 = min(y + height, h), min(x + width, w)
    if y1 > y0 and x1 > x0:
        out[y0 - y : y1 - y, x0 - x : x1 - x] = array[y0:y1, x0:x1]
    return out


def shift_boxes(boxes: np.ndarray, dx: int, dy: int, width: int, height: int) -> np.ndarray:
    """Move N×5 boxes by (dx, dy), clip them to a width×height image, drop empty ones."""
    boxes = np.asarray(boxes, dtype=np.int64).reshape(-1, 5).copy()
    boxes[:, [0, 2]] += dx
    boxes[:, [1, 3]] += dy
    return clip_boxes(boxes, width, height)


def clip_boxes(boxes: np.ndarray, width: int, height: int) -> np.ndarray:
    """Clip N×5 inclusive-corner boxes to the image and drop those left outside it."""
    boxes = np.asarray(boxes, dtype=np.int64).reshape(-1, 5).copy()
    keep = (boxes[:, 2] >= 0) & (boxes[:, 3] >= 0) & (boxes[:, 0] < width) & (boxes[:, 1] < height)
    boxes = boxes[keep]
    boxes[:, [0, 2]] = np.clip(boxes[:, [0, 2]], 0, width - 1)
    boxes[:, [1, 3]] = np.clip(boxes[:, [1, 3]], 0, height - 1)
    return boxes


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of size `tile` covering `length` pixels with at least `overlap`.

    The last tile ends exactly at the edge; a side shorter than a tile gives one tile at 0.
    """
    if tile <= 0 or not 0 <= overlap < tile:
        raise InputError(
            f"need tile > 0 and 0 <= overlap < tile, got tile={tile} overlap={overlap}"
        )
    if length <= tile:
        return [0]
    stride = tile - overlap
    count = math.ceil((length - tile) / stride) + 1
    starts = [min(i * stride, length - tile) for i in range(count)]
    return sorted(set(starts))


def _pair(value: int | Sequence[int], what: str) -> tuple[int, int]:
    result = (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))
    if min(result) <= 0:
        raise InputError(f"{what} must be positive, got {value}")
    return result


# ---------------------------------------------------------------- large-image serving


class RandomCropDataset(Dataset):
    """Serve random crops of a (usually small) set of large images for training.

    Each underlying pair is read once and cached. Item ``i`` of epoch ``e`` is a crop of
    `size` (an int or (height, width)) from a pair chosen at random, both drawn from a
    generator seeded by (seed, e, i), so a run is reproducible and `set_epoch` gives new
    crops each epoch. An image smaller than the crop is padded (images 0, mask 255).
    Pairs are chosen with probability proportional to their pixel count when
    `weight_by_area` (their sizes are known once read), else uniformly.
    """

    def __init__(
        self,
        dataset: Dataset,
        size: int | Sequence[int],
        samples_per_epoch: int,
        seed: int = 0,
        weight_by_area: bool = False,
    ):
        if len(dataset) == 0:  # type: ignore[arg-type]
            raise InputError("RandomCropDataset: the dataset has no pairs")
        if samples_per_epoch <= 0:
            raise InputError(f"samples_per_epoch must be positive, got {samples_per_epoch}")
        self.dataset = dataset
        self.size = _pair(size, "crop size")
        self.samples_per_epoch = int(samples_per_epoch)
        self.seed = int(seed)
        self.weight_by_area = weight_by_area
        self.epoch = 0
        self.class_names = list(getattr(dataset, "class_names", BINARY_CLASSES))
        self._cache: dict[int, PairSample] = {}

    def set_epoch(self, epoch: int) -> None:
        """Choose which epoch's crops to serve (call at the start of each epoch)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.samples_per_epoch

    def pair(self, index: int) -> PairSample:
        """The full pair `index` of the underlying dataset, read on first use and cached."""
        if index not in self._cache:
            self._cache[index] = self.dataset[index]
        return self._cache[index]

    def _choose_pair(self, rng: np.random.Generator) -> int:
        n = len(self.dataset)  # type: ignore[arg-type]
        if not self.weight_by_area:
            return int(rng.integers(n))
        areas = np.array([np.prod(self.pair(i)["mask"].shape) for i in range(n)], dtype=float)
        return int(rng.choice(n, p=areas / areas.sum()))

    def __getitem__(self, index: int) -> PairSample:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} crops")
        rng = np.random.default_rng([self.seed, self.epoch, index])
        sample = self.pair(self._choose_pair(rng))
        height, width = self.size
        h, w = sample["mask"].shape
        y = int(rng.integers(0, h - height + 1)) if h > height else 0
        x = int(rng.integers(0, w - width + 1)) if w > width else 0
        crop = crop_sample(sample, y, x, height, width)
        crop["offset"] = (y, x)
        crop["image_size"] = (h, w)
        return crop


class TileDataset(Dataset):
    """Serve every pair of a dataset as a grid of `tile`-sized tiles, for evaluation.

    Each item is a sample cut at ``"offset"`` (y, x) of the full image, with
    ``"image_size"`` (H, W) and ``"index"`` (which pair). Tiles overlap by at least
    `overlap` pixels; the last row/column is aligned with the image edge, so only images
    smaller than a tile are padded (mask 255). The sizes of all pairs are read once when the
    dataset is built; afterwards the most recently used pair stays in memory, so reading the
    tiles in order reads each pair once.
    """

    def __init__(self, dataset: Dataset, tile: int | Sequence[int], overlap: int = 0):
        self.dataset = dataset
        self.tile = _pair(tile, "tile size")
        self.overlap = int(overlap)
        self.class_names = list(getattr(dataset, "class_names", BINARY_CLASSES))
        self.image_sizes: list[tuple[int, int]] = []
        self.tiles: list[tuple[int, int, int]] = []  # (pair index, y, x)
        self._current: tuple[int, PairSample] | None = None
        for index in range(len(dataset)):  # type: ignore[arg-type]
            sample = dataset[index]
            h, w = sample["mask"].shape
            self.image_sizes.append((h, w))
            self._current = (index, sample)
            for y in tile_starts(h, self.tile[0], self.overlap):
                for x in tile_starts(w, self.tile[1], self.overlap):
                    self.tiles.append((index, y, x))

    def __len__(self) -> int:
        return len(self.tiles)

    def tiles_of(self, index: int) -> list[int]:
        """Item numbers of all the tiles of pair `index`."""
        return [i for i, (pair, _, _) in enumerate(self.tiles) if pair == index]

    def _pair(self, index: int) -> PairSample:
        if self._current is None or self._current[0] != index:
            self._current = (index, self.dataset[index])
        return self._current[1]

    def __getitem__(self, item: int) -> PairSample:
        if not 0 <= item < len(self):
            raise IndexError(f"index {item} out of range for {len(self)} tiles")
        index, y, x = self.tiles[item]
        tile = crop_sample(self._pair(index), y, x, self.tile[0], self.tile[1])
        tile["offset"] = (y, x)
        tile["image_size"] = self.image_sizes[index]
        tile["index"] = index
        return tile
