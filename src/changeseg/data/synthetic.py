"""Synthetic change pairs made from ordinary photos (the patent's "ordinary image data").

A pair is built in three steps, each drawing from its own seeded random stream:

1. **Scene.** A random crop of a background photo is the unchanged scene. Objects - regions
   cut from another photo with a random smooth shape (a thresholded noise blob or a rounded
   random polygon, with feathered edges) - are pasted into it:
   *appear* puts an object in the comparison only, *disappear* in the reference only, and
   *exchange* puts one object in the reference and a different one at the same place in the
   comparison.
2. **Nuisance.** Changes that must not count as change are applied to the whole image:
   a small misregistration of the comparison (shift, rotation, scale about the centre) and,
   independently on each image, soft shadows, global illumination and colour shifts, blur,
   noise and JPEG artefacts.
3. **Labels.** ``mask`` is binary (0 no change, 1 change); ``typed_mask`` holds
   0 no change, 1 appear, 2 disappear, 3 exchange.

**Label frame.** Both images share one pixel grid and so do the labels. The comparison,
objects included, is warped as a whole (the camera moved), and each object is labelled where
it is *visible*: an appeared object where it is in the (warped) comparison, a disappeared
object where it is in the reference, an exchange as the union of the old object's footprint
in the reference and the new object's footprint in the comparison. This is exactly the set of
pixels at which the two images show different things for a reason other than nuisance. A
pixel counts as covered when the object's soft alpha is at least 0.5.

The same seed, index and settings give the same pair bit for bit (on the same library
versions), whatever else has been generated before, in any process.
"""

from __future__ import annotations

import math
import os
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from torch.utils.data import Dataset, IterableDataset, get_worker_info

from changeseg.data.copy_paste import (
    match_colour,
    perspective_scale,
    remove_object,
    resize_cutout,
    shadow_of,
)
from changeseg.data.objects import Cutout, ObjectBank, SceneLayout, is_annotation_folder, scene_layout
from changeseg.errors import ConfigError, InputError
from changeseg.io.images import read_image, to_uint8_rgb, write_json, write_png

__all__ = [
    "APPEAR",
    "CHANGE_TYPES",
    "DISAPPEAR",
    "EXCHANGE",
    "NO_CHANGE",
    "SKIMAGE_PHOTOS",
    "TYPED_CLASS_NAMES",
    "SynthConfig",
    "SyntheticPair",
    "SyntheticPairDataset",
    "SyntheticPairGenerator",
    "SyntheticPairStream",
    "check_output_folder",
    "find_photos",
    "load_skimage_photos",
    "write_synthetic_set",
]

NO_CHANGE, APPEAR, DISAPPEAR, EXCHANGE = 0, 1, 2, 3
CHANGE_TYPES: tuple[str, ...] = ("appear", "disappear", "exchange")
TYPED_CLASS_NAMES: tuple[str, ...] = ("no change", "appear", "disappear", "exchange")
PHOTO_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"})
# Colour photos shipped inside scikit-image's package folder (no download): label -> file name.
# Only photos whose terms allow redistribution of derived images: astronaut and rocket are public
# domain (NASA, SpaceX), chelsea and coffee CC0 (per scikit-image's data docstrings).
SKIMAGE_PHOTOS: dict[str, str] = {
    "astronaut": "astronaut.png",
    "chelsea": "chelsea.png",
    "coffee": "coffee.png",
    "rocket": "rocket.jpg",
}
NAME_PATTERN = "synth_{index:06d}"

# a folder, a list of arrays / image paths / folders, or None (scikit-image's bundled photos)
PhotoSource = str | os.PathLike | Sequence[np.ndarray | str | os.PathLike] | None
# a folder or a list of folders of real object cut-outs (see changeseg.data.objects)
ObjectSource = str | os.PathLike | Sequence[str | os.PathLike] | ObjectBank


# --------------------------------------------------------------------------------------------
# configuration


@dataclass(frozen=True)
class SynthConfig:
    """Every knob of the generator except image size and seed (which identify a set).

    Ranges are ``(low, high)`` and sampled uniformly; probabilities are per pair and per image.
    """

    # changes
    min_changes: int = 1
    max_changes: int = 3
    p_no_change: float = 0.1  # share of pairs with nuisance only (an all-zero mask)
    change_weights: tuple[float, float, float] = (1.0, 1.0, 1.0)  # appear, disappear, exchange
    object_size: tuple[float, float] = (0.12, 0.4)  # object side as a fraction of the image side
    feather: tuple[float, float] = (0.6, 2.0)  # sigma (px) of the object's soft edge
    min_object_contrast: float = 15.0  # mean grey-level difference an object should make
    # nuisance
    nuisance: bool = True  # False: no nuisance at all (clean pairs)
    reference_nuisance: bool = True  # photometric nuisance drawn independently for the reference
    p_misregistration: float = 0.7
    max_shift: float = 4.0  # px, each axis
    max_rotation: float = 2.0  # degrees
    max_scale: float = 0.03  # relative
    max_corner_shift: float = 2.0  # px: corners moved independently (a small homography)
    p_shadow: float = 0.4
    shadow_strength: tuple[float, float] = (0.2, 0.5)
    p_illumination: float = 0.8
    brightness: float = 0.25  # gain in [1 - b, 1 + b]
    bias: float = 20.0  # grey levels
    gamma: float = 0.25  # gamma in [1 / (1 + g), 1 + g]
    colour: float = 0.08  # per-channel gain in [1 - c, 1 + c]
    gradient: float = 0.15  # amplitude of a linear illumination gradient
    p_blur: float = 0.3
    blur_sigma: tuple[float, float] = (0.4, 1.5)
    p_noise: float = 0.5
    noise_sigma: tuple[float, float] = (1.0, 6.0)
    p_jpeg: float = 0.4
    jpeg_quality: tuple[int, int] = (30, 90)
    p_season: float = 0.25  # season-like shift: vegetation greener or browner, sky and light warmer
    season_hue: float = 12.0  # max hue rotation of green pixels, degrees
    # copy-paste (used when the generator has an object bank)
    p_real_object: float = 0.85  # share of objects that are real cut-outs (the rest: blobs)
    p_inpaint: float = 0.5  # scenes that hold known objects: remove one of them (appear/disappear)
    colour_match: tuple[float, float] = (0.0, 0.7)  # pull a cut-out's colour towards the scene
    p_cast_shadow: float = 0.4
    shadow_darkness: tuple[float, float] = (0.25, 0.55)
    ground_placement: bool = True  # stand objects on the scene's ground where it is known
    horizon: float = 0.35  # assumed horizon (fraction of the height) for ground perspective

    def __post_init__(self) -> None:
        for item in fields(self):
            value = getattr(self, item.name)
            if isinstance(value, list):  # from JSON
                object.__setattr__(self, item.name, tuple(value))
        if not 0 <= self.min_changes <= self.max_changes:
            raise ConfigError("synthetic config: need 0 <= min_changes <= max_changes")
        for name in ("p_no_change", "p_misregistration", "p_shadow", "p_illumination", "p_blur",
                     "p_noise", "p_jpeg", "p_real_object", "p_inpaint", "p_cast_shadow",
                     "horizon", "p_season"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"synthetic config: {name} must be in [0, 1]")
        weights = self.change_weights
        if len(weights) != 3 or min(weights) < 0 or sum(weights) <= 0:
            raise ConfigError("synthetic config: change_weights needs three non-negative weights "
                              "(appear, disappear, exchange) with a positive sum")
        for name in ("object_size", "feather", "shadow_strength", "blur_sigma", "noise_sigma",
                     "jpeg_quality", "colour_match", "shadow_darkness"):
            low, high = getattr(self, name)
            if low > high or low < 0:
                raise ConfigError(f"synthetic config: {name} must be a range (low, high), "
                                  f"0 <= low <= high")
        if self.object_size[0] < 0.02 or self.object_size[1] > 0.9:
            raise ConfigError("synthetic config: object_size must lie within [0.02, 0.9]")
        if self.colour_match[1] > 1 or self.shadow_darkness[1] > 1:
            raise ConfigError("synthetic config: colour_match and shadow_darkness must lie "
                              "within [0, 1]")
        if self.jpeg_quality[0] < 1 or self.jpeg_quality[1] > 100:
            raise ConfigError("synthetic config: jpeg_quality must lie within [1, 100]")

    def to_dict(self) -> dict[str, Any]:
        """The settings as plain JSON-serialisable values."""
        return {key: list(value) if isinstance(value, tuple) else value
                for key, value in asdict(self).items()}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> SynthConfig:
        """Rebuild a config from `to_dict` output; unknown keys are a ConfigError."""
        known = {item.name for item in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"synthetic config: unknown settings {', '.join(unknown)}")
        return cls(**values)


# --------------------------------------------------------------------------------------------
# photo sources


def find_photos(folder: str | os.PathLike) -> list[Path]:
    """All image files under `folder` (recursively), in a stable order.

    Hidden files and label folders (``labels``, ``masks``, ``gt``, ``groundtruth``,
    ``*annot`` ...) are skipped: they hold annotations, not photos.

    Raises InputError when the folder is missing, not a folder, or holds no image files.
    """
    root = Path(folder).expanduser()
    if not root.exists():
        raise InputError(f"photo folder not found: {root}")
    if not root.is_dir():
        raise InputError(f"photo folder is not a folder: {root}")
    paths = [
        path for path in root.rglob("*")
        if path.suffix.lower() in PHOTO_EXTENSIONS and path.is_file()
        and not any(part.startswith(".") or is_annotation_folder(part)
                    for part in path.relative_to(root).parts[:-1])
        and not path.name.startswith(".")
    ]
    if not paths:
        raise InputError(f"photo folder holds no images ({', '.join(sorted(PHOTO_EXTENSIONS))}): "
                         f"{root}")
    return sorted(paths, key=lambda path: path.relative_to(root).as_posix())


def load_skimage_photos() -> list[tuple[str, np.ndarray]]:
    """The colour photos bundled with scikit-image (read from its package folder, no download).

    Raises InputError when scikit-image is not installed or none of the files is present.
    """
    try:
        import skimage.data
    except ImportError:
        raise InputError("no photos given and scikit-image is not installed: pass a photo folder "
                         "(--photos DIR) or `pip install scikit-image`") from None
    data_dir = Path(skimage.data.data_dir)
    photos = []
    for label, filename in SKIMAGE_PHOTOS.items():
        path = data_dir / filename
        if path.is_file():
            photos.append((label, _as_rgb(read_image(path, f"scikit-image photo {label}"))))
    if not photos:
        raise InputError(f"no bundled scikit-image photos found in {data_dir}: pass a photo folder")
    return photos


def _as_rgb(image: np.ndarray) -> np.ndarray:
    """Any image as contiguous H×W×3 uint8 RGB (grey repeated, alpha dropped)."""
    return np.ascontiguousarray(to_uint8_rgb(image[:, :, :3] if image.shape[2] == 4 else image))


class _PhotoBank:
    """The photos a generator draws from: arrays in memory or files read on demand (cached).

    Photos are shrunk (INTER_AREA) so their shorter side is at most `max_side`, which keeps
    both memory and the zoom range of crops sensible for the output size.
    """

    def __init__(self, photos: PhotoSource, max_side: int, cache_size: int) -> None:
        self.max_side = max_side
        self.cache_size = max(cache_size, 1)
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self._arrays: list[np.ndarray | None] = []
        self._paths: list[Path | None] = []
        if photos is None:
            loaded = load_skimage_photos()
            self.names = [label for label, _ in loaded]
            self._arrays = [self._shrink(array) for _, array in loaded]
            self._paths = [None] * len(loaded)
            self.description: dict[str, Any] = {"source": "scikit-image", "photos": self.names}
        elif isinstance(photos, (str, os.PathLike)):
            root = Path(photos).expanduser()
            paths = find_photos(root)
            self.names = [path.relative_to(root).as_posix() for path in paths]
            self._paths = list(paths)
            self._arrays = [None] * len(paths)
            self.description = {"source": "folder", "folder": str(root.resolve()),
                                "count": len(paths)}
        else:
            items = list(photos)
            if not items:
                raise InputError("no photos given: the photo list is empty")
            self.names = []
            for number, item in enumerate(items):
                if isinstance(item, np.ndarray):
                    self._arrays.append(self._shrink(_as_rgb(read_image(item, f"photo {number}"))))
                    self._paths.append(None)
                    self.names.append(f"array{number}")
                elif Path(item).expanduser().is_dir():  # a folder in the list: all its photos
                    root = Path(item).expanduser()
                    for path in find_photos(root):
                        self._arrays.append(None)
                        self._paths.append(path)
                        self.names.append(f"{root.name}/{path.relative_to(root).as_posix()}")
                else:
                    self._arrays.append(None)
                    self._paths.append(Path(item).expanduser())
                    self.names.append(str(item))
            self.description = {"source": "list", "count": len(self.names),
                                "folders": [str(Path(i).expanduser().resolve()) for i in items
                                            if not isinstance(i, np.ndarray)
                                            and Path(i).expanduser().is_dir()]}
        self._layouts: OrderedDict[int, SceneLayout | None] = OrderedDict()

    def __len__(self) -> int:
        return len(self.names)

    def _shrink(self, image: np.ndarray) -> np.ndarray:
        short = min(image.shape[:2])
        if short <= self.max_side:
            return image
        factor = self.max_side / short
        width = max(1, round(image.shape[1] * factor))
        height = max(1, round(image.shape[0] * factor))
        return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)

    def layout(self, number: int) -> SceneLayout | None:
        """Ground and object maps of photo `number` at its loaded size, when it has them."""
        if number in self._layouts:
            return self._layouts[number]
        path = self._paths[number]
        layout = scene_layout(path, self.get(number).shape[:2]) if path is not None else None
        self._layouts[number] = layout
        while len(self._layouts) > self.cache_size:
            self._layouts.popitem(last=False)
        return layout

    def get(self, number: int) -> np.ndarray:
        """Photo `number` as H×W×3 uint8 RGB."""
        array = self._arrays[number]
        if array is not None:
            return array
        if number in self._cache:
            self._cache.move_to_end(number)
            return self._cache[number]
        path = self._paths[number]
        assert path is not None
        image = self._shrink(_as_rgb(read_image(path, f"photo {path}")))
        if min(image.shape[:2]) < 8:
            raise InputError(f"photo {path}: too small ({image.shape[1]}×{image.shape[0]})")
        self._cache[number] = image
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return image


# --------------------------------------------------------------------------------------------
# the generator


@dataclass
class SyntheticPair:
    """One generated pair with everything known about how it was made.

    `changes` lists each placed change (type, code, box ``[x0, y0, x1, y1]`` in reference
    pixels, i.e. before misregistration, and the source photos); `nuisance` holds the nuisance
    parameters drawn for each image, including ``warp``: the 2×3 affine matrix mapping
    reference pixel coordinates to comparison pixel coordinates. `clean_reference` and
    `clean_comparison` are the pair before any nuisance.
    """

    reference: np.ndarray
    comparison: np.ndarray
    mask: np.ndarray
    typed_mask: np.ndarray
    name: str
    changes: list[dict[str, Any]] = field(default_factory=list)
    nuisance: dict[str, Any] = field(default_factory=dict)
    clean_reference: np.ndarray | None = None
    clean_comparison: np.ndarray | None = None

    def as_sample(self) -> dict[str, Any]:
        """The project's sample dict: reference, comparison, mask, typed_mask, name."""
        return {"reference": self.reference, "comparison": self.comparison, "mask": self.mask,
                "typed_mask": self.typed_mask, "name": self.name}


@dataclass
class _Object:
    """A cut-out: RGB patch (float32) and soft alpha, both bh×bw, placed at (y0, x0) in canvas."""

    patch: np.ndarray
    alpha: np.ndarray
    y0: int
    x0: int
    source: str
    shadow: np.ndarray | None = None  # darkening (0..1) cast on the scene before pasting
    category: str = "blob"


class SyntheticPairGenerator:
    """Make labelled change pairs from ordinary photos, reproducibly.

    Args:
        photos: a folder of photos, a list of arrays or image paths, or None for the colour
            photos bundled with scikit-image.
        size: side of the square output images.
        seed: base seed; pair `index` is drawn from ``SeedSequence([seed, index])`` so any
            pair can be made alone, in any order or process.
        config: a SynthConfig; keyword `overrides` replace single fields of it
            (e.g. ``nuisance=False``).
        objects: real object cut-outs to paste (copy-paste change): a folder, a list of
            folders or an ObjectBank (`changeseg.data.objects`). Without it objects are
            random smooth shapes cut from other photos (blobs).
        max_photo_side: shrink photos so their shorter side is at most this (default 3×size).
        cache_size: how many photos read from files stay in memory.

    Raises InputError for a missing or empty photo folder or an empty list.
    """

    def __init__(self, photos: PhotoSource = None, size: int = 256, seed: int = 0,
                 config: SynthConfig | None = None, *, objects: ObjectSource | None = None,
                 max_photo_side: int | None = None, cache_size: int = 32,
                 **overrides: Any) -> None:
        if int(size) != size or size < 32:
            raise ConfigError(f"synthetic pairs: size must be an integer >= 32, got {size}")
        if int(seed) != seed or seed < 0:
            raise ConfigError(f"synthetic pairs: seed must be a non-negative integer, got {seed}")
        config = config or SynthConfig()
        if overrides:
            known = {item.name for item in fields(SynthConfig)}
            unknown = sorted(set(overrides) - known)
            if unknown:
                raise ConfigError(f"synthetic pairs: unknown settings {', '.join(unknown)}")
            config = replace(config, **overrides)
        self.size = int(size)
        self.seed = int(seed)
        self.config = config
        self.photos = _PhotoBank(photos, max_photo_side or 3 * self.size, cache_size)
        self.objects = (objects if isinstance(objects, ObjectBank) or objects is None
                        else ObjectBank(objects))
        # margin around the output so a misregistered comparison never shows the canvas edge
        half = self.size / 2
        reach = (config.max_shift + config.max_corner_shift
                 + half * (config.max_scale + math.radians(config.max_rotation)))
        self.margin = int(math.ceil(reach * 1.5)) + 2
        self.canvas = self.size + 2 * self.margin

    def __repr__(self) -> str:
        objects = f", objects={len(self.objects)}" if self.objects is not None else ""
        return (f"SyntheticPairGenerator(size={self.size}, seed={self.seed}, "
                f"photos={self.photos.description}{objects})")

    def settings(self) -> dict[str, Any]:
        """Everything needed to regenerate the same pairs (for meta.json)."""
        settings = {"size": self.size, "seed": self.seed, "photos": self.photos.description,
                    "max_photo_side": self.photos.max_side, "config": self.config.to_dict()}
        if self.objects is not None:
            settings["objects"] = self.objects.describe()
        return settings

    def name(self, index: int) -> str:
        """The name of pair `index`."""
        return NAME_PATTERN.format(index=index)

    def sample(self, index: int) -> dict[str, Any]:
        """Pair `index` in the project's sample format.

        ``{"reference", "comparison": uint8 H×W×3, "mask": uint8 H×W (0/1),
        "typed_mask": uint8 H×W (0..3), "name": str}``
        """
        return self.generate(index).as_sample()

    def __call__(self, index: int) -> dict[str, Any]:
        """Same as `sample`."""
        return self.sample(index)

    def generate(self, index: int) -> SyntheticPair:
        """Pair `index` with its provenance (placed changes, nuisance parameters, clean pair)."""
        if int(index) != index or index < 0:
            raise InputError(f"synthetic pairs: index must be a non-negative integer, got {index}")
        scene_seq, reference_seq, comparison_seq = np.random.SeedSequence(
            [self.seed, int(index)]).spawn(3)
        scene_rng = np.random.default_rng(scene_seq)
        cfg = self.config
        size, margin, canvas = self.size, self.margin, self.canvas

        # 1. scene on a canvas with a margin; alphas per change type (channel = code - 1)
        background_id = int(scene_rng.integers(len(self.photos)))
        photo = self.photos.get(background_id)
        crop = _crop_window(photo, canvas, canvas, scene_rng, zoom=(0.75, 1.0), stretch=0.15)
        background = _apply_crop(photo, crop, canvas, canvas)
        layout = None
        if self.objects is not None:  # copy-paste mode: ground and the scene's own objects
            known = self.photos.layout(background_id)
            if known is not None:
                layout = SceneLayout(
                    ground=_apply_crop(known.ground.astype(np.uint8), crop, canvas, canvas,
                                       nearest=True) > 0,
                    objects=_apply_crop(known.objects.astype(np.float32), crop, canvas, canvas,
                                        nearest=True).astype(np.int32))
        reference = background.astype(np.float32)
        comparison = reference.copy()
        reference_alpha = np.zeros((canvas, canvas, 3), np.float32)
        comparison_alpha = np.zeros((canvas, canvas, 3), np.float32)
        changes = self._place_changes(scene_rng, background_id, reference, comparison,
                                      reference_alpha, comparison_alpha, layout)
        inner = (slice(margin, margin + size), slice(margin, margin + size))
        clean_reference = _to_uint8(reference[inner])
        clean_comparison = _to_uint8(comparison[inner])
        reference_alpha = reference_alpha[inner]

        # 2. nuisance: geometry of the comparison (everything in it moves), then photometry
        reference_rng = np.random.default_rng(reference_seq)
        comparison_rng = np.random.default_rng(comparison_seq)
        nuisance: dict[str, Any] = {}
        if cfg.nuisance and comparison_rng.random() < cfg.p_misregistration:
            canvas_to_output, output_warp = self._draw_warp(comparison_rng)
            corners = self._draw_corner_shift(comparison_rng)
            if corners is None:
                comparison_image = cv2.warpAffine(_to_uint8(comparison), canvas_to_output,
                                                  (size, size), flags=cv2.INTER_LINEAR,
                                                  borderMode=cv2.BORDER_REFLECT_101)
                comparison_alpha = cv2.warpAffine(comparison_alpha, canvas_to_output, (size, size),
                                                  flags=cv2.INTER_LINEAR,
                                                  borderMode=cv2.BORDER_CONSTANT, borderValue=0)
                homography = np.vstack([output_warp, [0.0, 0.0, 1.0]])
            else:  # similarity, then the small homography of the corner shift
                full = corners @ np.vstack([canvas_to_output, [0.0, 0.0, 1.0]])
                comparison_image = cv2.warpPerspective(_to_uint8(comparison), full, (size, size),
                                                       flags=cv2.INTER_LINEAR,
                                                       borderMode=cv2.BORDER_REFLECT_101)
                comparison_alpha = cv2.warpPerspective(comparison_alpha, full, (size, size),
                                                       flags=cv2.INTER_LINEAR,
                                                       borderMode=cv2.BORDER_CONSTANT,
                                                       borderValue=0)
                homography = corners @ np.vstack([output_warp, [0.0, 0.0, 1.0]])
            nuisance["warp"] = output_warp.tolist()
            nuisance["homography"] = homography.tolist()
        else:
            comparison_image = clean_comparison
            comparison_alpha = comparison_alpha[inner]
            nuisance["warp"] = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]
            nuisance["homography"] = np.eye(3).tolist()
        reference_image = clean_reference
        if cfg.nuisance:
            comparison_image, nuisance["comparison"] = _photometric(comparison_image,
                                                                    comparison_rng, cfg)
            if cfg.reference_nuisance:
                reference_image, nuisance["reference"] = _photometric(reference_image,
                                                                      reference_rng, cfg)

        # 3. labels: each object where it is visible (see the module docstring)
        typed = np.zeros((size, size), np.uint8)
        for code in (APPEAR, DISAPPEAR, EXCHANGE):
            covered = (reference_alpha[:, :, code - 1] >= 0.5) | (
                comparison_alpha[:, :, code - 1] >= 0.5)
            typed[covered] = code
        for change in changes:
            _clip_box(change, margin, size)
        return SyntheticPair(
            reference=np.ascontiguousarray(reference_image),
            comparison=np.ascontiguousarray(comparison_image),
            mask=(typed > 0).astype(np.uint8), typed_mask=typed, name=self.name(index),
            changes=changes, nuisance=nuisance,
            clean_reference=clean_reference, clean_comparison=clean_comparison)

    # -- scene ----------------------------------------------------------------------------

    def _place_changes(self, rng: np.random.Generator, background_id: int, reference: np.ndarray,
                       comparison: np.ndarray, reference_alpha: np.ndarray,
                       comparison_alpha: np.ndarray,
                       layout: SceneLayout | None = None) -> list[dict[str, Any]]:
        """Paste objects into the canvases in place; returns a record of each change."""
        cfg = self.config
        if rng.random() < cfg.p_no_change:
            return []
        count = int(rng.integers(cfg.min_changes, cfg.max_changes + 1))
        weights = np.asarray(cfg.change_weights, np.float64)
        occupied = np.zeros(reference.shape[:2], np.uint8)
        changes: list[dict[str, Any]] = []
        if layout is not None and count > 0 and rng.random() < cfg.p_inpaint:
            native = self._remove_native(rng, layout, reference, comparison, reference_alpha,
                                         comparison_alpha, occupied)
            if native is not None:
                changes.append(native)
                count -= 1
        ground = layout.ground if layout is not None and cfg.ground_placement else None
        for _ in range(count):
            code = int(rng.choice(3, p=weights / weights.sum())) + 1
            if self.objects is not None and rng.random() < cfg.p_real_object:
                placed = self._place_cutouts(rng, code, reference, occupied, ground)
            else:
                placed = self._place_one(rng, code, background_id, reference, occupied)
            if placed is None:
                continue
            first, second = placed
            sources = [first.source]
            if code == APPEAR:
                _paste(comparison, comparison_alpha, first, code)
            elif code == DISAPPEAR:
                _paste(reference, reference_alpha, first, code)
            else:
                assert second is not None
                _paste(reference, reference_alpha, first, code)
                _paste(comparison, comparison_alpha, second, code)
                sources.append(second.source)
            boxes = [(obj.x0, obj.y0, obj.x0 + obj.alpha.shape[1], obj.y0 + obj.alpha.shape[0])
                     for obj in (first, second) if obj is not None]
            box = [min(b[0] for b in boxes), min(b[1] for b in boxes),
                   max(b[2] for b in boxes), max(b[3] for b in boxes)]
            changes.append({"type": CHANGE_TYPES[code - 1], "code": code, "box": box,
                            "sources": sources,
                            "objects": [obj.category for obj in (first, second) if obj is not None]})
        return changes

    def _remove_native(self, rng: np.random.Generator, layout: SceneLayout,
                       reference: np.ndarray, comparison: np.ndarray,
                       reference_alpha: np.ndarray, comparison_alpha: np.ndarray,
                       occupied: np.ndarray) -> dict[str, Any] | None:
        """Remove one of the scene's own objects by inpainting: it disappears from the
        comparison or (as an appearance) is absent from the reference. None when the scene
        holds no object of a usable size inside the output."""
        size, margin = self.size, self.margin
        inner = np.zeros_like(occupied, dtype=bool)
        inner[margin:margin + size, margin:margin + size] = True
        ids, areas = np.unique(layout.objects[inner], return_counts=True)
        usable = [int(i) for i, a in zip(ids, areas, strict=True)
                  if i > 0 and 0.004 * size * size <= a <= 0.25 * size * size]
        if not usable:
            return None
        object_id = usable[int(rng.integers(len(usable)))]
        mask = layout.objects == object_id
        weights = np.asarray(self.config.change_weights[:2], np.float64)
        if weights.sum() <= 0:
            return None
        code = int(rng.choice(2, p=weights / weights.sum())) + 1  # appear or disappear
        radius = max(2, size // 96)
        removed = remove_object(reference, mask, radius)
        soft = cv2.GaussianBlur(mask.astype(np.float32), (0, 0), 0.7)
        if code == DISAPPEAR:
            comparison[:] = removed
            np.maximum(reference_alpha[:, :, DISAPPEAR - 1], soft,
                       out=reference_alpha[:, :, DISAPPEAR - 1])
        else:
            reference[:] = removed
            np.maximum(comparison_alpha[:, :, APPEAR - 1], soft,
                       out=comparison_alpha[:, :, APPEAR - 1])
        gap = max(3, size // 64) + radius
        occupied |= cv2.dilate(mask.astype(np.uint8), np.ones((2 * gap + 1, 2 * gap + 1), np.uint8))
        ys, xs = np.nonzero(mask)
        return {"type": CHANGE_TYPES[code - 1], "code": code,
                "box": [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1],
                "sources": ["scene (inpainted)"], "objects": ["scene object"]}

    def _place_cutouts(self, rng: np.random.Generator, code: int, scene: np.ndarray,
                       occupied: np.ndarray, ground: np.ndarray | None
                       ) -> tuple[_Object, _Object | None] | None:
        """Place one change made of real cut-outs (an exchange: two of a similar shape).

        Objects stand on the scene's ground where it is known (size by perspective), else
        anywhere; None after 8 tries without a free place.
        """
        cfg = self.config
        bank = self.objects
        assert bank is not None
        size, margin = self.size, self.margin
        ground_points = None
        if ground is not None:
            inner = ground[margin:margin + size, margin:margin + size]
            if inner.mean() > 0.02:
                ground_points = np.nonzero(inner)
        for _ in range(8):
            side = rng.uniform(*cfg.object_size) * size
            if ground_points is not None:
                k = int(rng.integers(len(ground_points[0])))
                foot_y = margin + float(ground_points[0][k])
                foot_x = margin + float(ground_points[1][k])
                side *= 0.3 + 1.2 * perspective_scale(foot_y - margin, size, cfg.horizon)
            else:
                foot_y = margin + rng.uniform(0.25, 1.0) * size
                foot_x = margin + rng.uniform(0.1, 0.9) * size
            cutout = self._pick_cutout(rng, scene, foot_y, foot_x, side)
            first = self._cutout_object(rng, cutout, side, foot_y, foot_x, scene)
            second = None
            if code == EXCHANGE:
                other = self._pick_cutout(rng, scene, foot_y, foot_x, side, like=cutout)
                second = self._cutout_object(rng, other, side * math.exp(rng.uniform(-0.15, 0.15)),
                                             foot_y, foot_x, scene)
            if _claim(occupied, (first, second), max(3, size // 64)):
                return first, second
        return None

    def _pick_cutout(self, rng: np.random.Generator, scene: np.ndarray, foot_y: float,
                     foot_x: float, side: float, like: Cutout | None = None) -> Cutout:
        """A random cut-out; with `like`, the one of 6 candidates closest to its shape (an
        exchange swaps an object for another of a similar size), else the first of up to 3
        whose colour differs enough from the scene where it will stand."""
        bank = self.objects
        assert bank is not None
        if like is not None:
            candidates = [bank.get(int(rng.integers(len(bank)))) for _ in range(6)]
            candidates = [c for c in candidates if c.name != like.name] or candidates
            return min(candidates, key=lambda c: abs(math.log(c.aspect / like.aspect)))
        best: tuple[float, Cutout] | None = None
        y = int(np.clip(foot_y - side / 2, 0, scene.shape[0] - 1))
        x = int(np.clip(foot_x, 0, scene.shape[1] - 1))
        half = max(2, int(side / 4))
        under = scene[max(0, y - half):y + half, max(0, x - half):x + half].reshape(-1, 3).mean(0)
        for _ in range(3):
            cutout = bank.get(int(rng.integers(len(bank))))
            weight = cutout.alpha[:, :, None]
            mean = (cutout.rgb * weight).sum((0, 1)) / max(float(weight.sum()), 1.0)
            contrast = float(np.abs(mean - under).mean())
            if best is None or contrast > best[0]:
                best = (contrast, cutout)
            if contrast >= self.config.min_object_contrast:
                break
        assert best is not None
        return best[1]

    def _cutout_object(self, rng: np.random.Generator, cutout: Cutout, side: float,
                       foot_y: float, foot_x: float, scene: np.ndarray) -> _Object:
        """Scale a cut-out so its longer side is `side`, stand it at (foot_y, foot_x), match
        its colour to the scene, feather its edge and (sometimes) give it a cast shadow."""
        cfg = self.config
        aspect = cutout.aspect
        side = max(10.0, side)
        height = max(8, int(round(side if aspect >= 1 else side * aspect)))
        width = max(8, int(round(side / aspect if aspect >= 1 else side)))
        patch, alpha = resize_cutout(cutout.rgb, cutout.alpha, height, width)
        cast = rng.random() < cfg.p_cast_shadow
        pad = int(math.ceil(3 * cfg.feather[1])) + 1
        pad_x = pad + (int(0.4 * width) if cast else 0)
        box_h, box_w = height + 2 * pad, width + 2 * pad_x
        box_h, box_w = min(box_h, self.canvas), min(box_w, self.canvas)
        y0 = int(np.clip(round(foot_y - height - pad), 0, self.canvas - box_h))
        x0 = int(np.clip(round(foot_x - box_w / 2), 0, self.canvas - box_w))
        full_alpha = np.zeros((box_h, box_w), np.float32)
        full_patch = cv2.copyMakeBorder(patch, pad, pad, pad_x, pad_x, cv2.BORDER_REPLICATE)
        full_alpha[pad:pad + height, pad_x:pad_x + width] = alpha[:box_h - pad, :box_w - pad_x]
        full_patch = full_patch[:box_h, :box_w]
        sigma = float(rng.uniform(0.3, max(0.31, cfg.feather[0])))
        full_alpha = cv2.GaussianBlur(full_alpha, (0, 0), sigma)
        under = scene[y0:y0 + box_h, x0:x0 + box_w]
        full_patch = match_colour(full_patch, full_alpha, under, float(rng.uniform(*cfg.colour_match)))
        shadow = None
        if cast:
            offset = (float(rng.uniform(-0.35, 0.35)) * width, float(rng.uniform(0.0, 0.05)) * height)
            shadow = shadow_of(full_alpha, offset, squash=float(rng.uniform(0.6, 0.9)),
                               blur=float(rng.uniform(1.0, 3.0)) + 0.01 * side)
            shadow *= np.float32(rng.uniform(*cfg.shadow_darkness))
        return _Object(patch=full_patch, alpha=full_alpha, y0=y0, x0=x0, source=cutout.name,
                       shadow=shadow, category=cutout.category)

    def _place_one(self, rng: np.random.Generator, code: int, background_id: int,
                   scene: np.ndarray,
                   occupied: np.ndarray) -> tuple[_Object, _Object | None] | None:
        """Find a free place and make the object(s) of one change, or None after 8 tries."""
        cfg = self.config
        size, margin = self.size, self.margin
        for _ in range(8):
            side = rng.uniform(*cfg.object_size) * size
            aspect = math.exp(rng.uniform(-0.4, 0.4))
            height = max(8, int(round(side * math.sqrt(aspect))))
            width = max(8, int(round(side / math.sqrt(aspect))))
            centre_y = margin + rng.uniform(0.1, 0.9) * size
            centre_x = margin + rng.uniform(0.1, 0.9) * size
            first = self._make_object(rng, height, width, centre_y, centre_x, background_id, scene)
            second = None
            if code == EXCHANGE:
                factor = math.exp(rng.uniform(-0.2, 0.2))
                second = self._make_object(rng, max(8, int(round(height * factor))),
                                           max(8, int(round(width * factor))), centre_y, centre_x,
                                           background_id, scene, avoid=first)
            if _claim(occupied, (first, second), max(3, size // 64)):
                return first, second
        return None

    def _make_object(self, rng: np.random.Generator, height: int, width: int, centre_y: float,
                     centre_x: float, background_id: int, scene: np.ndarray,
                     avoid: _Object | None = None) -> _Object:
        """Cut an object of about height×width from a photo other than the background.

        Tries a few cut-outs and keeps the first whose mean difference to what it covers
        (the scene, or `avoid` for the second object of an exchange) reaches the config's
        `min_object_contrast`, else the one with the largest difference.
        """
        cfg = self.config
        pad = int(math.ceil(3 * cfg.feather[1])) + 1
        box_h, box_w = height + 2 * pad, width + 2 * pad
        y0 = int(np.clip(round(centre_y - box_h / 2), 0, self.canvas - box_h))
        x0 = int(np.clip(round(centre_x - box_w / 2), 0, self.canvas - box_w))
        shape = _random_shape(rng, height, width)
        binary = np.zeros((box_h, box_w), np.float32)
        binary[pad:pad + height, pad:pad + width] = shape
        alpha = cv2.GaussianBlur(binary, (0, 0), float(rng.uniform(*cfg.feather)))
        inside = alpha >= 0.5
        if avoid is not None:  # the new object of an exchange must differ from the old one
            under = scene[y0:y0 + box_h, x0:x0 + box_w].copy()
            _blend(under, avoid.patch, avoid.alpha, avoid.y0 - y0, avoid.x0 - x0)
        else:
            under = scene[y0:y0 + box_h, x0:x0 + box_w]
        best: tuple[float, np.ndarray, str] | None = None
        choices = [i for i in range(len(self.photos)) if i != background_id] or [background_id]
        for _ in range(4):
            source_id = choices[int(rng.integers(len(choices)))]
            patch = _random_crop(self.photos.get(source_id), box_h, box_w, rng,
                                 zoom=(0.5, 2.0), stretch=0.0).astype(np.float32)
            contrast = float(np.abs(patch[inside] - under[inside]).mean()) if inside.any() else 0.0
            if best is None or contrast > best[0]:
                best = (contrast, patch, self.photos.names[source_id])
            if contrast >= cfg.min_object_contrast:
                break
        assert best is not None
        return _Object(patch=best[1], alpha=alpha, y0=y0, x0=x0, source=best[2])

    def _draw_corner_shift(self, rng: np.random.Generator) -> np.ndarray | None:
        """A homography (output pixels -> output pixels) moving each image corner by up to
        `max_corner_shift` pixels, or None when that is 0 (parallax-free viewpoint jitter)."""
        limit = self.config.max_corner_shift
        if limit <= 0:
            return None
        side = float(self.size - 1)
        source = np.array([[0, 0], [side, 0], [side, side], [0, side]], np.float32)
        target = source + rng.uniform(-limit, limit, (4, 2)).astype(np.float32)
        return cv2.getPerspectiveTransform(source, target).astype(np.float64)

    def _draw_warp(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """A small similarity transform about the image centre.

        Returns the matrix for cv2.warpAffine from the comparison canvas to the output, and the
        same transform in output pixel coordinates (reference pixel -> comparison pixel).
        """
        cfg = self.config
        angle = float(rng.uniform(-cfg.max_rotation, cfg.max_rotation))
        scale = float(1.0 + rng.uniform(-cfg.max_scale, cfg.max_scale))
        shift_x, shift_y = (float(v) for v in rng.uniform(-cfg.max_shift, cfg.max_shift, size=2))
        centre = (self.canvas - 1) / 2.0
        matrix = cv2.getRotationMatrix2D((centre, centre), angle, scale)
        matrix[:, 2] += (shift_x, shift_y)
        canvas_to_output = matrix.copy()
        canvas_to_output[:, 2] -= self.margin
        output = matrix.copy()
        offset = np.array([self.margin, self.margin], np.float64)
        output[:, 2] = matrix[:, :2] @ offset + matrix[:, 2] - self.margin
        return canvas_to_output, output


# --------------------------------------------------------------------------------------------
# image helpers


def _to_uint8(image: np.ndarray) -> np.ndarray:
    """Round a float image to uint8 (values clipped to [0, 255]); `image` is not modified."""
    out = image + np.float32(0.5)
    np.clip(out, 0.0, 255.9, out=out)
    return out.astype(np.uint8)


def _random_crop(photo: np.ndarray, out_h: int, out_w: int, rng: np.random.Generator,
                 zoom: tuple[float, float], stretch: float) -> np.ndarray:
    """A random crop of `photo` resized to out_h×out_w, with a random horizontal flip
    (see `_crop_window`)."""
    return _apply_crop(photo, _crop_window(photo, out_h, out_w, rng, zoom, stretch), out_h, out_w)


def _apply_crop(image: np.ndarray, window: tuple[int, int, int, int, bool], out_h: int,
                out_w: int, nearest: bool = False) -> np.ndarray:
    """Cut `window` (top, left, height, width, flip) from `image` and resize it to out_h×out_w."""
    top, left, crop_h, crop_w, flip = window
    shrinking = crop_h > out_h and crop_w > out_w
    interpolation = (cv2.INTER_NEAREST if nearest
                     else cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
    resized = cv2.resize(image[top:top + crop_h, left:left + crop_w], (out_w, out_h),
                         interpolation=interpolation)
    return cv2.flip(resized, 1) if flip else resized


def _crop_window(photo: np.ndarray, out_h: int, out_w: int, rng: np.random.Generator,
                 zoom: tuple[float, float], stretch: float) -> tuple[int, int, int, int, bool]:
    """A random crop window (top, left, height, width, flip) of `photo` for an out_h×out_w
    output.

    The crop covers between zoom[0] and zoom[1] times the output size in photo pixels
    (limited by the photo), its aspect ratio jittered by up to exp(±stretch).
    """
    height, width = photo.shape[:2]
    factor = rng.uniform(*zoom)
    aspect = math.exp(rng.uniform(-stretch, stretch)) if stretch else 1.0
    crop_h, crop_w = out_h * factor * aspect, out_w * factor / aspect
    limit = min(1.0, height / crop_h, width / crop_w)  # shrink uniformly to fit the photo
    crop_h = max(1, min(height, int(round(crop_h * limit))))
    crop_w = max(1, min(width, int(round(crop_w * limit))))
    top = int(rng.integers(0, height - crop_h + 1))
    left = int(rng.integers(0, width - crop_w + 1))
    return top, left, crop_h, crop_w, bool(rng.random() < 0.5)


def _random_shape(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A random smooth, solid shape filling most of a height×width box (float32 0/1)."""
    y = np.linspace(-1.0, 1.0, height, dtype=np.float32)[:, None]
    x = np.linspace(-1.0, 1.0, width, dtype=np.float32)[None, :]
    if rng.random() < 0.5:  # blob: a centred bump plus smooth noise, thresholded
        grid = rng.standard_normal((int(rng.integers(3, 7)), int(rng.integers(3, 7))))
        noise = cv2.resize(grid.astype(np.float32), (width, height), interpolation=cv2.INTER_CUBIC)
        field_ = 1.0 - (x * x + y * y) + rng.uniform(0.25, 0.6) * noise
        shape = (field_ > rng.uniform(0.2, 0.45)).astype(np.uint8)
    else:  # polygon with random radii, corners rounded by blur and re-threshold
        corners = int(rng.integers(4, 11))
        angles = np.sort(rng.uniform(0.0, 2 * math.pi, corners))
        radii = rng.uniform(0.55, 1.0, corners)
        points = np.stack([(np.cos(angles) * radii + 1) * (width - 1) / 2,
                           (np.sin(angles) * radii + 1) * (height - 1) / 2], axis=1)
        shape = np.zeros((height, width), np.uint8)
        cv2.fillPoly(shape, [np.round(points).astype(np.int32)], 1)
        sigma = 0.06 * min(height, width)
        shape = (cv2.GaussianBlur(shape.astype(np.float32), (0, 0), sigma) > 0.5).astype(np.uint8)
    # keep the largest part, holes filled
    contours, _ = cv2.findContours(shape, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    solid = np.zeros((height, width), np.uint8)
    if contours:
        cv2.drawContours(solid, [max(contours, key=cv2.contourArea)], -1, 1, thickness=-1)
    if solid.sum() < 0.15 * height * width:  # degenerate draw: fall back to an ellipse
        solid = (x * x + y * y <= 0.8).astype(np.uint8)
    return solid.astype(np.float32)


def _blend(target: np.ndarray, patch: np.ndarray, alpha: np.ndarray, top: int,
           left: int) -> None:
    """Alpha-blend `patch` into float `target` in place at (top, left), clipped to its bounds."""
    th, tw = target.shape[:2]
    ph, pw = alpha.shape
    y0, x0, y1, x1 = max(top, 0), max(left, 0), min(top + ph, th), min(left + pw, tw)
    if y1 <= y0 or x1 <= x0:
        return
    a = alpha[y0 - top:y1 - top, x0 - left:x1 - left, None]
    region = target[y0:y1, x0:x1]
    region += a * (patch[y0 - top:y1 - top, x0 - left:x1 - left] - region)


def _claim(occupied: np.ndarray, objects: Sequence[_Object | None], gap: int) -> bool:
    """Mark the objects' footprints (grown by `gap` px) as occupied, unless they overlap an
    occupied pixel; returns whether they were free."""
    footprint = np.zeros_like(occupied)
    for obj in objects:
        if obj is not None:
            region = footprint[obj.y0:obj.y0 + obj.alpha.shape[0],
                               obj.x0:obj.x0 + obj.alpha.shape[1]]
            np.maximum(region, (obj.alpha > 0.02).astype(np.uint8), out=region)
    footprint = cv2.dilate(footprint, np.ones((2 * gap + 1, 2 * gap + 1), np.uint8))
    if np.any(footprint & occupied):
        return False
    occupied |= footprint
    return True


def _paste(image: np.ndarray, alphas: np.ndarray, obj: _Object, code: int) -> None:
    """Alpha-blend `obj` (after its cast shadow, if any) into `image` and record its alpha in
    channel code-1 of `alphas`. The shadow is not labelled: it is lighting, not an object."""
    if obj.shadow is not None:
        h, w = obj.shadow.shape
        region = image[obj.y0:obj.y0 + h, obj.x0:obj.x0 + w]
        region *= (1.0 - obj.shadow[:region.shape[0], :region.shape[1], None])
    _blend(image, obj.patch, obj.alpha, obj.y0, obj.x0)
    h, w = obj.alpha.shape
    channel = alphas[obj.y0:obj.y0 + h, obj.x0:obj.x0 + w, code - 1]
    np.maximum(channel, obj.alpha, out=channel)


def _clip_box(change: dict[str, Any], margin: int, size: int) -> None:
    x0, y0, x1, y1 = change["box"]
    change["box"] = [int(np.clip(x0 - margin, 0, size)), int(np.clip(y0 - margin, 0, size)),
                     int(np.clip(x1 - margin, 0, size)), int(np.clip(y1 - margin, 0, size))]


def _season(image: np.ndarray, rng: np.random.Generator,
            max_hue: float) -> tuple[np.ndarray, dict[str, float]]:
    """A season-like colour shift: green pixels turn more yellow/brown or more green (hue
    rotation weighted by how green a pixel is) and their saturation changes, while the whole
    image warms or cools slightly. uint8 RGB in and out."""
    hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV_FULL).astype(np.float32)
    hue_deg = hsv[:, :, 0] * (360.0 / 256.0)
    greenness = np.clip(1.0 - np.abs(hue_deg - 110.0) / 50.0, 0.0, 1.0)
    greenness *= np.clip(hsv[:, :, 1] / 60.0, 0.0, 1.0)  # grey pixels keep their colour
    rotation = float(rng.uniform(-max_hue, max_hue))
    saturation = float(rng.uniform(0.75, 1.25))
    warmth = float(rng.uniform(-0.05, 0.05))
    hsv[:, :, 0] = np.mod(hue_deg + rotation * greenness, 360.0) * (256.0 / 360.0)
    hsv[:, :, 1] = np.clip(hsv[:, :, 1] * (1.0 + (saturation - 1.0) * greenness), 0, 255)
    rgb = cv2.cvtColor(np.clip(hsv + 0.5, 0, 255).astype(np.uint8), cv2.COLOR_HSV2RGB_FULL)
    gains = np.array([1.0 + warmth, 1.0, 1.0 - warmth], np.float32)
    out = _to_uint8(rgb.astype(np.float32) * gains)
    return out, {"hue": rotation, "saturation": saturation, "warmth": warmth}


def _smooth_field(rng: np.random.Generator, size: int, corners: int) -> np.ndarray:
    """A soft random polygon covering part of a size×size image (float32 in [0, 1])."""
    low = max(16, size // 4)
    centre = rng.uniform(0.0, 1.0, 2) * low
    radius = rng.uniform(0.2, 0.6) * low
    angles = np.sort(rng.uniform(0.0, 2 * math.pi, corners))
    radii = radius * rng.uniform(0.5, 1.3, corners)
    points = np.stack([centre[0] + np.cos(angles) * radii, centre[1] + np.sin(angles) * radii],
                      axis=1)
    canvas = np.zeros((low, low), np.float32)
    cv2.fillPoly(canvas, [np.round(points).astype(np.int32)], 1.0)
    canvas = cv2.GaussianBlur(canvas, (0, 0), rng.uniform(0.02, 0.08) * low + 0.5)
    return cv2.resize(canvas, (size, size), interpolation=cv2.INTER_LINEAR)


def _photometric(image: np.ndarray, rng: np.random.Generator,
                 cfg: SynthConfig) -> tuple[np.ndarray, dict[str, Any]]:
    """Whole-image nuisance: shadows, illumination/colour, blur, noise, JPEG. uint8 in and out."""
    size_y, size_x = image.shape[:2]
    params: dict[str, Any] = {}
    gain_map: np.ndarray | None = None  # per-pixel gain (shadows, illumination gradient)
    colour = np.ones(3, np.float32)
    bias = 0.0
    if rng.random() < cfg.p_shadow:
        shade = np.zeros((size_y, size_x), np.float32)
        count = int(rng.integers(1, 3))
        for _ in range(count):
            field_ = _smooth_field(rng, max(size_y, size_x), int(rng.integers(3, 7)))
            np.maximum(shade, field_[:size_y, :size_x], out=shade)
        strength = float(rng.uniform(*cfg.shadow_strength))
        gain_map = 1.0 - strength * shade
        params["shadow"] = {"count": count, "strength": strength}
    if rng.random() < cfg.p_illumination:
        gamma = float(math.exp(rng.uniform(-1.0, 1.0) * math.log1p(cfg.gamma)))
        gain = float(rng.uniform(1 - cfg.brightness, 1 + cfg.brightness))
        colour = rng.uniform(1 - cfg.colour, 1 + cfg.colour, 3).astype(np.float32) * gain
        bias = float(rng.uniform(-cfg.bias, cfg.bias))
        direction = rng.uniform(0.0, 2 * math.pi)
        amplitude = float(rng.uniform(0.0, cfg.gradient))
        ys = np.linspace(-1.0, 1.0, size_y, dtype=np.float32)[:, None]
        xs = np.linspace(-1.0, 1.0, size_x, dtype=np.float32)[None, :]
        ramp = 1.0 + amplitude * (math.cos(direction) * xs + math.sin(direction) * ys)
        gain_map = ramp if gain_map is None else gain_map * ramp
        lut = np.clip(np.rint(255.0 * (np.arange(256) / 255.0) ** gamma), 0, 255).astype(np.uint8)
        image = cv2.LUT(image, lut)
        params["illumination"] = {"gamma": gamma, "gain": gain,
                                  "colour": (colour / gain).tolist(), "bias": bias,
                                  "gradient": amplitude}
    out = image.astype(np.float32)
    if gain_map is not None:
        out *= gain_map[:, :, None]
    if not np.all(colour == 1.0) or bias:
        out *= colour
        out += np.float32(bias)
    if rng.random() < cfg.p_blur:
        sigma = float(rng.uniform(*cfg.blur_sigma))
        out = cv2.GaussianBlur(out, (0, 0), sigma)
        params["blur"] = sigma
    if rng.random() < cfg.p_noise:
        sigma = float(rng.uniform(*cfg.noise_sigma))
        # zero-mean, unit-variance triangular noise (sum of two uniforms): ~3x cheaper than normal
        noise = rng.random(out.shape, dtype=np.float32)
        noise += rng.random(out.shape, dtype=np.float32)
        noise -= 1.0
        noise *= np.float32(math.sqrt(6.0) * sigma)
        out += noise
        params["noise"] = sigma
    result = _to_uint8(out)
    if cfg.p_season > 0 and rng.random() < cfg.p_season:  # no draw when off: older sets stay
        result, params["season"] = _season(result, rng, cfg.season_hue)
    if rng.random() < cfg.p_jpeg:
        quality = int(rng.integers(cfg.jpeg_quality[0], cfg.jpeg_quality[1] + 1))
        ok, buffer = cv2.imencode(".jpg", result[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
        if ok:
            result = np.ascontiguousarray(cv2.imdecode(buffer, cv2.IMREAD_COLOR)[:, :, ::-1])
            params["jpeg"] = quality
    return result, params


# --------------------------------------------------------------------------------------------
# datasets


class SyntheticPairDataset(Dataset):
    """A fixed-length, map-style dataset: item `i` is pair ``start + i`` of `generator`.

    `transform`, if given, is applied to each sample dict (e.g. joint augmentation and
    conversion to tensors).
    """

    def __init__(self, generator: SyntheticPairGenerator, length: int, start: int = 0,
                 transform: Callable[[dict[str, Any]], Any] | None = None) -> None:
        if length < 0 or start < 0:
            raise ConfigError("synthetic dataset: length and start must be non-negative")
        self.generator = generator
        self.length = int(length)
        self.start = int(start)
        self.transform = transform

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, item: int) -> Any:
        if item < 0:
            item += self.length
        if not 0 <= item < self.length:
            raise IndexError(f"synthetic dataset index {item} out of range ({self.length})")
        sample = self.generator.sample(self.start + item)
        return self.transform(sample) if self.transform else sample


class SyntheticPairStream(IterableDataset):
    """An endless, deterministic stream of pairs for training.

    With N DataLoader workers and W distributed ranks, stream member k (k = rank·N + worker)
    yields pairs ``start + k, start + k + W·N, start + k + 2·W·N, ...``: every worker gets
    different pairs, and the whole stream is the same on every run. `rank` and `world_size`
    default to torch.distributed's when it is initialised, else 0 and 1.
    """

    def __init__(self, generator: SyntheticPairGenerator, start: int = 0,
                 transform: Callable[[dict[str, Any]], Any] | None = None,
                 rank: int | None = None, world_size: int | None = None) -> None:
        if start < 0:
            raise ConfigError("synthetic stream: start must be non-negative")
        self.generator = generator
        self.start = int(start)
        self.transform = transform
        self.rank = rank
        self.world_size = world_size

    def _distributed(self) -> tuple[int, int]:
        rank, world_size = self.rank, self.world_size
        if rank is None or world_size is None:
            import torch.distributed as dist

            active = dist.is_available() and dist.is_initialized()
            if rank is None:
                rank = dist.get_rank() if active else 0
            if world_size is None:
                world_size = dist.get_world_size() if active else 1
        return rank, world_size

    def __iter__(self) -> Iterator[Any]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        rank, world_size = self._distributed()
        index = self.start + rank * workers + worker
        stride = world_size * workers
        while True:
            sample = self.generator.sample(index)
            yield self.transform(sample) if self.transform else sample
            index += stride


# --------------------------------------------------------------------------------------------
# writing a fixed set


_LAYOUT = ("A", "B", "label", "label_typed")


def check_output_folder(outdir: str | os.PathLike, overwrite: bool = False) -> Path:
    """Check that `outdir` can receive a synthetic set; returns it as a Path.

    Raises InputError when it is a file, or (unless `overwrite`) already holds a data set.
    With `overwrite`, files of the same names are replaced and others are left alone.
    """
    root = Path(outdir)
    if root.exists() and not root.is_dir():
        raise InputError(f"output is not a folder: {root}")
    existing = [name for name in (*_LAYOUT, "meta.json") if (root / name).exists()]
    if existing and not overwrite:
        raise InputError(f"{root} already holds a data set ({', '.join(existing)}); "
                         f"choose another folder or overwrite it (--overwrite)")
    return root


def write_synthetic_set(outdir: str | os.PathLike, count: int,
                        generator: SyntheticPairGenerator | None = None, *, start: int = 0,
                        overwrite: bool = False, progress: Callable[[int], None] | None = None,
                        **generator_kwargs: Any) -> Path:
    """Write `count` pairs (indices start .. start+count-1) in the `folder` layout.

    ``A/NAME.png`` reference, ``B/NAME.png`` comparison, ``label/NAME.png`` change mask
    (0 / 255), ``label_typed/NAME.png`` typed mask (0..3), and ``meta.json`` with the seed,
    count, generator settings and photo source. Either pass a `generator` or the keyword
    arguments of SyntheticPairGenerator (photos, size, seed, config, overrides).
    `progress(n)` is called after each pair. Refuses a folder that already holds a set unless
    `overwrite`. Returns the output folder.
    """
    if generator is not None and generator_kwargs:
        raise ConfigError("write_synthetic_set: pass a generator or generator settings, not both")
    if count < 1:
        raise ConfigError(f"write_synthetic_set: count must be at least 1, got {count}")
    if start < 0:
        raise ConfigError(f"write_synthetic_set: start must be non-negative, got {start}")
    root = check_output_folder(outdir, overwrite)
    if generator is None:
        generator = SyntheticPairGenerator(**generator_kwargs)
    for name in _LAYOUT:
        (root / name).mkdir(parents=True, exist_ok=True)
    type_counts = dict.fromkeys(CHANGE_TYPES, 0)
    unchanged = 0
    for number in range(count):
        pair = generator.generate(start + number)
        write_png(root / "A" / f"{pair.name}.png", pair.reference)
        write_png(root / "B" / f"{pair.name}.png", pair.comparison)
        write_png(root / "label" / f"{pair.name}.png", pair.mask * np.uint8(255))
        write_png(root / "label_typed" / f"{pair.name}.png", pair.typed_mask)
        for change in pair.changes:
            type_counts[change["type"]] += 1
        unchanged += not pair.mask.any()
        if progress is not None:
            progress(number + 1)
    from changeseg import __version__

    meta = {
        "format": "folder",
        "generator": "changeseg.data.synthetic",
        "changeseg_version": __version__,
        "seed": generator.seed,
        "count": int(count),
        "start": int(start),
        "name_pattern": NAME_PATTERN,
        "first": generator.name(start),
        "last": generator.name(start + count - 1),
        **generator.settings(),
        "labels": {"label": {"0": "no change", "255": "change"},
                   "label_typed": {str(code): name for code, name in enumerate(TYPED_CLASS_NAMES)}},
        "label_frame": "shared pixel grid; each object labelled where it is visible: appear in "
                       "the comparison, disappear in the reference, exchange the union of both",
        "stats": {"changes": type_counts, "pairs_without_change": int(unchanged)},
    }
    write_json(root / "meta.json", meta)
    return root
