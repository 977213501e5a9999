"""Real object instances cut out by their masks, for copy-paste synthetic change.

An `ObjectBank` indexes cut-outs from folders in any of three layouts (detected per folder):

* **alpha images** - PNG / WebP files with an alpha channel (e.g. Tux Paint stamps, a user's
  own cut-outs): the alpha is the mask. Files without transparency are skipped.
* **YOLO-seg instances** - ``images/<split>/*.jpg`` with polygons in
  ``labels/<split>/*.txt`` or ``instance_segmentation/labels/<split>/*.txt`` (one instance
  per line: ``class x1 y1 x2 y2 ...``, normalised), e.g. COCO128: every polygon is one object.
* **class maps** - CamVid-style ``<split>/*.png`` frames beside ``<split>annot/*.png`` label
  maps: connected components of the movable classes (car, pedestrian, cyclist) are objects.
* **change sets** - a dataset spec ``FORMAT:PATH`` (e.g. ``folder:levir``, ``airchange:...``):
  each connected changed region is cut from the pair's *comparison* image (new buildings,
  roads; the aerial mode). `holdout` = (fraction, seed) leaves out the pairs a training recipe
  validates on (the same `carve_split`), so validation pairs never leak in as objects.

Each cut-out is an RGB patch and a soft alpha of the same size, cropped to the object. The
index is built once (reading polygon files and alpha headers, not pixels); pixels are read
on demand and cached.

`scene_layout` gives the same class maps for a *background* photo: where the ground is (so
objects stand on plausible ground) and which objects the photo already holds (so they can be
removed by inpainting).
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from changeseg.errors import InputError
from changeseg.io.images import header_size, read_image, read_mask, to_uint8_rgb

__all__ = [
    "ANNOTATION_FOLDER_NAMES",
    "Cutout",
    "ObjectBank",
    "SceneLayout",
    "is_annotation_folder",
    "scene_layout",
]

ALPHA_EXTENSIONS = frozenset({".png", ".webp"})
IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"})
# folders that hold labels, not photos (never used as backgrounds or alpha cut-outs)
ANNOTATION_FOLDER_NAMES = frozenset({"labels", "label", "masks", "mask", "groundtruth", "gt",
                                     "annotations", "instance_segmentation"})
# CamVid's 11-class maps: ground classes and movable object classes
CAMVID_GROUND = (3, 4)  # road, pavement
CAMVID_OBJECTS = (8, 9, 10)  # car, pedestrian, cyclist
CAMVID_NAMES = {8: "car", 9: "pedestrian", 10: "cyclist"}
MIN_OBJECT_SIDE = 20  # px in the source image
MIN_OBJECT_AREA = 500  # px in the source image
# changed regions of aerial sets are small in pixels (a house at 0.5 m/px is ~20×20 px)
MIN_CHANGE_SIDE = 6
MIN_CHANGE_AREA = 60


def is_annotation_folder(name: str) -> bool:
    """Whether a folder name marks label data (``labels``, ``trainannot``, ``gt``, ...)."""
    lowered = name.lower()
    return lowered in ANNOTATION_FOLDER_NAMES or lowered.endswith("annot")


@dataclass(frozen=True)
class Cutout:
    """One object: `rgb` h×w×3 uint8, `alpha` h×w float32 in [0, 1], both cropped to it."""

    rgb: np.ndarray
    alpha: np.ndarray
    name: str
    category: str

    @property
    def aspect(self) -> float:
        """Height over width of the cut-out's box."""
        return self.alpha.shape[0] / self.alpha.shape[1]


@dataclass(frozen=True)
class _Entry:
    """Where one cut-out comes from: a file and, for polygons and class maps, which part."""

    kind: str  # "alpha", "polygon", "component", "change"
    image: Path
    category: str
    polygon: tuple[float, ...] = ()  # normalised x, y pairs
    label_map: Path | None = None
    label: int = 0
    component: int = 0  # index among the components of `label`, largest first
    pair: int = -1  # for "change": the pair's index in its dataset


class ObjectBank:
    """Cut-out objects from one or more folders (layouts detected per folder, see module doc).

    Args:
        folders: a folder or a list of folders.
        cache_size: cut-outs kept in memory.
        max_side: cut-outs larger than this are shrunk (INTER_AREA) when read.
        holdout: (fraction, seed) of each change set's pairs to leave out (`carve_split`).

    Raises InputError for a missing folder or when no folder holds any object.
    """

    def __init__(self, folders: str | os.PathLike | Sequence[str | os.PathLike],
                 cache_size: int = 256, max_side: int = 384,
                 holdout: tuple[float, int] | None = None) -> None:
        roots = [folders] if isinstance(folders, (str, os.PathLike)) else list(folders)
        if not roots:
            raise InputError("object bank: no object folders given")
        self.max_side = int(max_side)
        self.cache_size = max(1, int(cache_size))
        self._cache: OrderedDict[int, Cutout] = OrderedDict()
        self._component_cache: OrderedDict[Path, list[np.ndarray]] = OrderedDict()
        self.entries: list[_Entry] = []
        self.counts: dict[str, int] = {}
        self._datasets: dict[Path, Any] = {}
        for root in roots:
            if _is_dataset_spec(str(root)):
                found = self._index_change_set(str(root), holdout)
                self.counts[str(root)] = len(found)
                self.entries.extend(found)
                continue
            path = Path(root).expanduser()
            if not path.is_dir():
                raise InputError(f"object folder not found: {path}")
            found = _index_folder(path)
            self.counts[str(path)] = len(found)
            self.entries.extend(found)
        if not self.entries:
            raise InputError("object folders hold no objects (alpha PNG/WebP cut-outs, "
                             "YOLO-seg images+labels, or CamVid-style <split>/<split>annot maps): "
                             + ", ".join(str(Path(r)) for r in roots))

    def __len__(self) -> int:
        return len(self.entries)

    def describe(self) -> dict[str, Any]:
        """Folders and object counts (for a generator's settings)."""
        return {"folders": dict(self.counts), "count": len(self.entries)}

    def get(self, number: int) -> Cutout:
        """Cut-out `number` (RGB patch and soft alpha cropped to the object)."""
        if number in self._cache:
            self._cache.move_to_end(number)
            return self._cache[number]
        cutout = self._load(self.entries[number])
        self._cache[number] = cutout
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return cutout

    def _index_change_set(self, spec: str, holdout: tuple[float, int] | None) -> list[_Entry]:
        from changeseg.data.datasets import open_dataset
        from changeseg.data.pairs import carve_split

        dataset = open_dataset(spec)
        key = Path(spec)
        self._datasets[key] = dataset
        names = list(dataset.names)
        keep = set(carve_split(names, holdout[0], holdout[1])[0] if holdout else names)
        entries = []
        for index, name in enumerate(names):
            if name not in keep:
                continue
            mask = np.asarray(dataset[index]["mask"])
            count = len(_components_of(mask == 1, MIN_CHANGE_AREA, MIN_CHANGE_SIDE))
            entries.extend(_Entry("change", key, spec.split(":", 1)[0], component=k, pair=index)
                           for k in range(count))
        return entries

    def _load(self, entry: _Entry) -> Cutout:
        name = f"{entry.image}"
        if entry.kind == "change":
            sample = self._datasets[entry.image][entry.pair]
            components = _components_of(np.asarray(sample["mask"]) == 1, MIN_CHANGE_AREA,
                                        MIN_CHANGE_SIDE)
            rgb = to_uint8_rgb(np.asarray(sample["comparison"])[:, :, :3])
            alpha = cv2.GaussianBlur(components[entry.component].astype(np.float32), (0, 0), 0.7)
            return _crop_to_object(rgb, alpha, f"{name}#{entry.pair}.{entry.component}",
                                   entry.category, self.max_side)
        if entry.kind == "alpha":
            image = read_image(entry.image, f"object {name}")
            if image.shape[2] != 4:
                raise InputError(f"object {name}: no alpha channel")
            rgb = to_uint8_rgb(image[:, :, :3])
            alpha = image[:, :, 3].astype(np.float32) / (65535.0 if image.dtype == np.uint16
                                                          else 255.0)
        else:
            rgb = to_uint8_rgb(read_image(entry.image, f"object {name}"))
            if rgb.shape[2] == 4:
                rgb = rgb[:, :, :3]
            height, width = rgb.shape[:2]
            binary = np.zeros((height, width), np.uint8)
            if entry.kind == "polygon":
                points = np.asarray(entry.polygon, np.float64).reshape(-1, 2) * (width, height)
                cv2.fillPoly(binary, [np.round(points).astype(np.int32)], 1)
                name = f"{name}#polygon"
            else:
                components = self._components(entry)
                if entry.component < len(components):
                    binary = components[entry.component]
                name = f"{name}#{entry.category}{entry.component}"
            # soften the hard polygon / label edge by half a pixel
            alpha = cv2.GaussianBlur(binary.astype(np.float32), (0, 0), 0.7)
        return _crop_to_object(rgb, alpha, name, entry.category, self.max_side)

    def _components(self, entry: _Entry) -> list[np.ndarray]:
        assert entry.label_map is not None
        key = entry.label_map.with_suffix(f".{entry.label}")
        if key not in self._component_cache:
            labels = read_mask(entry.label_map, f"label map {entry.label_map}")
            self._component_cache[key] = _components_of(labels == entry.label)
            while len(self._component_cache) > 64:
                self._component_cache.popitem(last=False)
        return self._component_cache[key]


def _crop_to_object(rgb: np.ndarray, alpha: np.ndarray, name: str, category: str,
                    max_side: int) -> Cutout:
    ys, xs = np.nonzero(alpha > 0.02)
    if ys.size == 0:
        raise InputError(f"object {name}: empty mask")
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    rgb, alpha = rgb[y0:y1, x0:x1], alpha[y0:y1, x0:x1]
    longest = max(rgb.shape[:2])
    if longest > max_side:
        factor = max_side / longest
        size = (max(1, round(rgb.shape[1] * factor)), max(1, round(rgb.shape[0] * factor)))
        rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
        alpha = cv2.resize(alpha, size, interpolation=cv2.INTER_AREA)
    return Cutout(np.ascontiguousarray(rgb), np.ascontiguousarray(alpha, np.float32), name,
                  category)


def _is_dataset_spec(text: str) -> bool:
    """Whether `text` is a ``FORMAT:PATH`` dataset spec (not a folder, not a Windows drive)."""
    from changeseg.data.datasets import FORMATS

    fmt, sep, rest = text.partition(":")
    return bool(sep and rest) and fmt.strip().lower() in FORMATS


def _components_of(binary: np.ndarray, min_area: int = MIN_OBJECT_AREA,
                   min_side: int = MIN_OBJECT_SIDE) -> list[np.ndarray]:
    """Connected components of a boolean map large enough to be objects, largest first."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(binary.astype(np.uint8), 8)
    keep = [i for i in range(1, count)
            if stats[i, cv2.CC_STAT_AREA] >= min_area
            and min(stats[i, cv2.CC_STAT_WIDTH], stats[i, cv2.CC_STAT_HEIGHT]) >= min_side]
    keep.sort(key=lambda i: -stats[i, cv2.CC_STAT_AREA])
    return [(labels == i).astype(np.uint8) for i in keep]


# --------------------------------------------------------------------------------------------
# indexing


def _index_folder(root: Path) -> list[_Entry]:
    """Every object under `root`, in a stable order."""
    entries: list[_Entry] = []
    for images_dir in sorted(p for p in root.rglob("images") if p.is_dir()):
        entries.extend(_index_yolo(images_dir))
    for annot in sorted(p for p in root.rglob("*annot") if p.is_dir()):
        entries.extend(_index_class_maps(annot))
    claimed = {e.image for e in entries}
    for path in sorted(root.rglob("*"), key=lambda p: p.relative_to(root).as_posix()):
        if (path.suffix.lower() in ALPHA_EXTENSIONS and path.is_file() and path not in claimed
                and not any(part.startswith(".") or is_annotation_folder(part)
                            for part in path.relative_to(root).parts[:-1])
                and _has_alpha(path)):
            entries.append(_Entry("alpha", path, path.parent.name))
    return entries


def _has_alpha(path: Path) -> bool:
    """Whether an image file has a transparency channel (reads the header via PIL)."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            return image.mode in ("RGBA", "LA", "PA") or (
                image.mode == "P" and "transparency" in image.info)
    except OSError:
        return False


def _index_yolo(images_dir: Path) -> list[_Entry]:
    parent = images_dir.parent
    label_roots = [parent / "labels", parent / "instance_segmentation" / "labels"]
    names = _yolo_class_names(parent)
    entries: list[_Entry] = []
    for image in sorted(p for p in images_dir.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS):
        relative = image.relative_to(images_dir).with_suffix(".txt")
        label_file = next((r / relative for r in label_roots if (r / relative).is_file()), None)
        if label_file is None:
            continue
        size = header_size(image)
        if size is None:
            continue
        width, height = size
        for line in label_file.read_text(encoding="utf-8", errors="replace").splitlines():
            values = line.split()
            if len(values) < 7 or len(values) % 2 == 0:
                continue  # a box line or garbage: needs a class and at least 3 points
            try:
                cls = int(float(values[0]))
                coords = tuple(float(v) for v in values[1:])
            except ValueError:
                continue
            xs, ys = np.asarray(coords[0::2]) * width, np.asarray(coords[1::2]) * height
            box_w, box_h = xs.max() - xs.min(), ys.max() - ys.min()
            area = 0.5 * abs(np.dot(xs, np.roll(ys, 1)) - np.dot(ys, np.roll(xs, 1)))
            if min(box_w, box_h) < MIN_OBJECT_SIDE or area < MIN_OBJECT_AREA:
                continue
            entries.append(_Entry("polygon", image, names.get(cls, str(cls)), polygon=coords))
    return entries


def _yolo_class_names(folder: Path) -> dict[int, str]:
    for config in (folder / "instance_segmentation" / "config.yaml", folder / "config.yaml",
                   folder / "data.yaml"):
        if config.is_file():
            import yaml

            try:
                document = yaml.safe_load(config.read_text(encoding="utf-8"))
                names = document.get("names", {}) if isinstance(document, dict) else {}
                if isinstance(names, list):
                    return dict(enumerate(str(n) for n in names))
                return {int(k): str(v) for k, v in names.items()}
            except (yaml.YAMLError, ValueError, AttributeError):
                return {}
    return {}


def _index_class_maps(annot: Path) -> list[_Entry]:
    """Objects in CamVid-style class maps: one entry per large component of a movable class."""
    frames = annot.parent / annot.name[: -len("annot")]
    if not frames.is_dir():
        return []
    entries: list[_Entry] = []
    for label_map in sorted(p for p in annot.iterdir() if p.suffix.lower() == ".png"):
        image = next((frames / (label_map.stem + ext) for ext in (".png", ".jpg", ".jpeg")
                      if (frames / (label_map.stem + ext)).is_file()), None)
        if image is None:
            continue
        labels = read_mask(label_map, f"label map {label_map}")
        for cls in CAMVID_OBJECTS:
            for number, _ in enumerate(_components_of(labels == cls)):
                entries.append(_Entry("component", image, CAMVID_NAMES[cls], label_map=label_map,
                                      label=cls, component=number))
    return entries


# --------------------------------------------------------------------------------------------
# background scenes


@dataclass(frozen=True)
class SceneLayout:
    """What is known about a background photo: `ground` (bool H×W: road, pavement) and
    `objects` (int32 H×W: 0 none, k > 0 the k-th movable object), both at the photo's size."""

    ground: np.ndarray
    objects: np.ndarray


def scene_layout(photo: str | os.PathLike, shape: tuple[int, int]) -> SceneLayout | None:
    """The layout of a CamVid-style background photo (its ``<split>annot`` map), or None.

    `shape` is the (height, width) the photo was loaded at; the map is resized to it
    (nearest neighbour).
    """
    path = Path(photo)
    label_map = path.parent.parent / f"{path.parent.name}annot" / f"{path.stem}.png"
    if not label_map.is_file():
        return None
    labels = read_mask(label_map, f"label map {label_map}")
    if labels.shape[:2] != shape:
        labels = cv2.resize(labels, (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST)
    ground = np.isin(labels, CAMVID_GROUND)
    objects = np.zeros(shape, np.int32)
    movable = np.isin(labels, CAMVID_OBJECTS).astype(np.uint8)
    count, components = cv2.connectedComponents(movable, connectivity=8)
    if count > 1:
        objects = components.astype(np.int32)
    return SceneLayout(ground=ground, objects=objects)
