"""The photos a synthetic generator draws its scenes and objects from: a folder, a list, or
the colour photos bundled with scikit-image (`PhotoBank`)."""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from changeseg.data.objects import SceneLayout, is_annotation_folder, scene_layout
from changeseg.errors import InputError
from changeseg.io.images import read_image, to_uint8_rgb

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

# a folder, a list of arrays / image paths / folders, or None (scikit-image's bundled photos)
PhotoSource = str | os.PathLike | Sequence[np.ndarray | str | os.PathLike] | None


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
            photos.append((label, as_rgb(read_image(path, f"scikit-image photo {label}"))))
    if not photos:
        raise InputError(f"no bundled scikit-image photos found in {data_dir}: pass a photo folder")
    return photos


def as_rgb(image: np.ndarray) -> np.ndarray:
    """Any image as contiguous H×W×3 uint8 RGB (grey repeated, alpha dropped)."""
    return np.ascontiguousarray(to_uint8_rgb(image[:, :, :3] if image.shape[2] == 4 else image))


class PhotoBank:
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
                    self._arrays.append(self._shrink(as_rgb(read_image(item, f"photo {number}"))))
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
        image = self._shrink(as_rgb(read_image(path, f"photo {path}")))
        if min(image.shape[:2]) < 8:
            raise InputError(f"photo {path}: too small ({image.shape[1]}×{image.shape[0]})")
        self._cache[number] = image
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return image
