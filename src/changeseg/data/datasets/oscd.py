"""Reader for OSCD (Onera Satellite Change Detection, Sentinel-2), RGB or multispectral.

::

    root/<city>/img1.png, img2.png    RGB renderings of the two dates (uint8)
    root/<city>/cm.png                change map, 0 = no change, 255 = change
    root/<city>/imgs_1/*_B01.tif ...  the 13 Sentinel-2 bands of date 1 (uint16 GeoTIFFs)
    root/<city>/imgs_2/*_B01.tif ...  the same for date 2
    root/<city>/<city>-cm.tif         change map, 1 = no change, 2 = change

The official release's nesting (``<city>/pair/img1.png``, ``<city>/cm/cm.png``) and
rectified bands (``imgs_1_rect/``, preferred when present) are accepted too.

``bands="rgb"`` reads the PNGs (3 × uint8). ``bands="all"`` reads the 13 bands in the
order B01 B02 B03 B04 B05 B06 B07 B08 B8A B09 B10 B11 B12 (13 × uint16), and a list of
band names (``["B04", "B03", "B02", "B08"]``) reads those. The bands come at 10, 20 and
60 m, so the 20 m and 60 m bands are resampled (bilinear) onto the 10 m grid of the change
map. Only cities that have the band files are listed in these modes. Reading GeoTIFFs needs
rasterio (the ``geo`` extra); it is imported only then.

`split` picks ``root/<split>.txt`` (comma- or line-separated city names) when present,
otherwise the official train/test city lists of the release (Daudt et al., IGARSS 2018).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from changeseg.data.pairs import (
    PairDataset,
    PairSample,
    binarize_mask,
    make_sample,
)
from changeseg.errors import InputError
from changeseg.io.images import read_image, read_mask
from changeseg.labels import BINARY_CLASSES

BAND_ORDER = (
    "B01",
    "B02",
    "B03",
    "B04",
    "B05",
    "B06",
    "B07",
    "B08",
    "B8A",
    "B09",
    "B10",
    "B11",
    "B12",
)
OFFICIAL_SPLITS = {
    "train": (
        "aguasclaras",
        "bercy",
        "bordeaux",
        "nantes",
        "paris",
        "rennes",
        "saclay_e",
        "abudhabi",
        "cupertino",
        "pisa",
        "beihai",
        "hongkong",
        "beirut",
        "mumbai",
    ),
    "test": (
        "brasilia",
        "montpellier",
        "norcia",
        "rio",
        "saclay_w",
        "valencia",
        "dubai",
        "lasvegas",
        "milano",
        "chongqing",
    ),
}


def _first_file(candidates: Sequence[Path]) -> Path | None:
    return next((c for c in candidates if c.is_file()), None)


def _first_dir(candidates: Sequence[Path]) -> Path | None:
    return next((c for c in candidates if c.is_dir()), None)


class OSCDDataset(PairDataset):
    """OSCD city pairs: RGB PNGs or any subset of the 13 Sentinel-2 bands, with 0/1 masks.

    `cities` restricts the pairs to those cities; `split` (``"train"`` / ``"test"``) to a
    split list (see the module docstring).
    """

    def __init__(
        self,
        root: str | os.PathLike,
        bands: str | Sequence[str] = "rgb",
        split: str | None = None,
        cities: Sequence[str] | None = None,
    ):
        self.root = Path(root)
        self.class_names = list(BINARY_CLASSES)
        self.bands = self._parse_bands(bands)
        if not self.root.is_dir():
            raise InputError(f"oscd: {self.root} is not a folder")
        all_cities = sorted(p.name for p in self.root.iterdir() if self._pair_dir(p) is not None)
        if not all_cities:
            raise InputError(
                f"oscd: no city folders in {self.root}; expected <city>/img1.png, img2.png and"
                " cm.png (optionally imgs_1/, imgs_2/ with *_B01.tif ... *_B12.tif)"
            )
        wanted = list(all_cities)
        if split is not None:
            chosen = set(self._split_cities(split))
            wanted = [c for c in wanted if c in chosen]
        if cities is not None:
            unknown = [c for c in cities if c not in all_cities]
            if unknown:
                raise InputError(f"oscd: no city folder for {', '.join(unknown)} in {self.root}")
            wanted = [c for c in wanted if c in set(cities)]
        if self.bands is not None:
            lacking = [c for c in wanted if self._band_dirs(self.root / c) is None]
            if cities is not None and lacking:
                raise InputError(
                    f"oscd: no band GeoTIFFs (imgs_1/, imgs_2/) for {', '.join(lacking)}"
                )
            wanted = [c for c in wanted if c not in lacking]
        if not wanted:
            raise InputError(
                f"oscd: no cities left under {self.root} (split={split}, cities={cities},"
                f" bands={bands})"
            )
        self.names = wanted

    @staticmethod
    def _parse_bands(bands: str | Sequence[str]) -> tuple[str, ...] | None:
        if isinstance(bands, str):
            if bands == "rgb":
                return None
            if bands == "all":
                return BAND_ORDER
            bands = [b.strip() for b in bands.split(",")]
        chosen = tuple(b.upper() for b in bands)
        unknown = [b for b in chosen if b not in BAND_ORDER]
        if unknown or not chosen:
            raise InputError(
                f"oscd: bands must be 'rgb', 'all' or names among {' '.join(BAND_ORDER)};"
                f" got {bands!r}"
            )
        return chosen

    def _split_cities(self, split: str) -> Sequence[str]:
        list_file = self.root / f"{split}.txt"
        if list_file.is_file():
            return [c for c in re.split(r"[,\s]+", list_file.read_text(encoding="utf-8")) if c]
        if split not in OFFICIAL_SPLITS:
            raise InputError(f"oscd: unknown split {split!r} (no {list_file}; known: train, test)")
        return OFFICIAL_SPLITS[split]

    @staticmethod
    def _pair_dir(city: Path) -> Path | None:
        return _first_dir([d for d in (city, city / "pair") if (d / "img1.png").is_file()])

    @staticmethod
    def _band_dirs(city: Path) -> tuple[Path, Path] | None:
        first = _first_dir([city / "imgs_1_rect", city / "imgs_1"])
        second = _first_dir([city / "imgs_2_rect", city / "imgs_2"])
        return None if first is None or second is None else (first, second)

    def _png_mask(self, city: Path) -> np.ndarray:
        path = _first_file([city / "cm.png", city / "cm" / "cm.png"])
        if path is None:
            raise InputError(f"oscd: no cm.png for {city.name} in {city}")
        return binarize_mask(read_mask(path, f"{city.name} cm.png"))

    def _tif_mask(self, city: Path) -> np.ndarray:
        path = _first_file([city / f"{city.name}-cm.tif", city / "cm" / f"{city.name}-cm.tif"])
        if path is None:
            return self._png_mask(city)
        labels = _read_tif(path)
        return (labels == 2).astype(np.uint8)  # the release codes 1 = no change, 2 = change

    def load(self, index: int) -> PairSample:
        """Read city `index`: RGB PNGs or the chosen bands on the 10 m grid, mask as 0/1."""
        name = self.names[index]
        city = self.root / name
        if self.bands is None:
            folder = self._pair_dir(city)
            assert folder is not None  # listed cities have one
            return make_sample(
                read_image(folder / "img1.png", f"{name} img1"),
                read_image(folder / "img2.png", f"{name} img2"),
                self._png_mask(city),
                name,
            )
        mask = self._tif_mask(city)
        dirs = self._band_dirs(city)
        assert dirs is not None
        height, width = mask.shape
        reference, comparison = (self._stack(d, height, width, name) for d in dirs)
        return make_sample(reference, comparison, mask, name)

    def _stack(self, folder: Path, height: int, width: int, name: str) -> np.ndarray:
        assert self.bands is not None
        planes = []
        for band in self.bands:
            files = sorted(folder.glob(f"*_{band}.tif")) or sorted(folder.glob(f"*{band}.tif"))
            if not files:
                raise InputError(f"{name}: band {band} not found in {folder}")
            plane = _read_tif(files[0])
            if plane.shape != (height, width):
                plane = cv2.resize(plane, (width, height), interpolation=cv2.INTER_LINEAR)
            planes.append(plane)
        return np.stack(planes, axis=2)


def _read_tif(path: Path) -> np.ndarray:
    """First band of a GeoTIFF as an H×W array (rasterio imported here, not at module load)."""
    try:
        import rasterio
        from rasterio.errors import NotGeoreferencedWarning
    except ImportError:  # pragma: no cover - depends on the installed extras
        raise InputError(
            f"reading {path} needs rasterio; install changeseg with the 'geo' extra"
        ) from None
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(path) as source:
                return source.read(1)
    except rasterio.errors.RasterioIOError as exc:
        raise InputError(f"cannot read GeoTIFF {path}: {exc}") from None
