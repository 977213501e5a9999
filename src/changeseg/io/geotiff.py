"""GeoTIFF in and out (the `geo` extra): any band count, band selection, windows, GeoJSON regions.

Inputs are a GeoTIFF file (any number of bands) or a folder of single-band GeoTIFFs (a
Sentinel-2 style band folder such as OSCD's ``imgs_1/``). A folder's bands are ordered by
Sentinel-2 band name when every file ends in one (B01 B02 … B08 B8A B09 … B12), by file name
otherwise; bands on a coarser grid are resampled (bilinear) onto the finest band's grid.
`bands` selects and orders bands, 1-based like GDAL (``"4,3,2"``), or by name (``"B04,B03,B02"``).

Outputs carry the reference image's CRS and transform: rasters are written tile-aligned in
row bands by `GeoTiffWriter` (memory bounded by one band of rows) into a temporary file that
is renamed into place when complete; regions become GeoJSON polygons (contours traced with
OpenCV in pixel coordinates, mapped through the affine transform).

rasterio is imported lazily, so the base install works without it.
"""

from __future__ import annotations

import math
import os
import re
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from changeseg.errors import InputError
from changeseg.io.images import atomic_write, write_json

GEOTIFF_SUFFIXES = (".tif", ".tiff")
SENTINEL2_BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10",
                   "B11", "B12")
MASK_NODATA = 255  # mask.tif value of pixels that cannot be judged
BLOCK = 256  # internal tile size of written GeoTIFFs
GDAL_CACHE_MB = 128  # GDAL's block cache while reading/writing windows (its default is 5 % of RAM)
_SENTINEL2_NAME = re.compile(r"(B(?:0[1-9]|1[0-2]|8A))$", re.IGNORECASE)


def _rasterio():
    try:
        import rasterio
    except ImportError:  # pragma: no cover - depends on the installed extras
        raise InputError("GeoTIFF support needs rasterio: pip install 'changeseg[geo]'") from None
    return rasterio


def rasterio_available() -> bool:
    """Whether the `geo` extra (rasterio) is installed."""
    import importlib.util

    return importlib.util.find_spec("rasterio") is not None


@contextmanager
def gdal_env() -> Iterator[None]:
    """A rasterio environment with a bounded GDAL block cache, so windowed work stays small."""
    rasterio = _rasterio()
    with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB):
        yield


def is_geotiff(source: Any) -> bool:
    """Whether `source` should be read with rasterio: a folder of .tif files (a band folder), or a
    .tif/.tiff file when rasterio is installed (without it, TIFF files are read as plain images).
    """
    if not isinstance(source, (str, os.PathLike)):
        return False
    path = Path(source)
    if path.is_dir():
        return any(p.suffix.lower() in GEOTIFF_SUFFIXES for p in path.iterdir())
    return path.suffix.lower() in GEOTIFF_SUFFIXES and rasterio_available()


def parse_bands(bands: str | Sequence[int | str] | None) -> tuple[int | str, ...] | None:
    """Band selection from "4,3,2" (1-based), "B04,B03,B02" (names) or a sequence; None = all bands."""
    if bands is None:
        return None
    tokens = [t.strip() for t in bands.split(",")] if isinstance(bands, str) else list(bands)
    chosen: list[int | str] = []
    for token in tokens:
        if isinstance(token, (int, np.integer)) or (isinstance(token, str) and token.isdigit()):
            index = int(token)
            if index < 1:
                raise InputError(f"band numbers are 1-based (like GDAL); got {index} in {bands!r}")
            chosen.append(index)
        elif isinstance(token, str) and token:
            chosen.append(token.upper())
        else:
            raise InputError(f"bad band selection {bands!r}: use numbers like 4,3,2 or names like "
                             "B04,B03,B02")
    if not chosen:
        raise InputError(f"empty band selection {bands!r}")
    return tuple(chosen)


def select_bands(image: np.ndarray, bands: Sequence[int | str] | None, name: str = "image") -> np.ndarray:
    """Pick channels of an H×W×C array by 1-based number (names are not available for arrays)."""
    if bands is None:
        return image
    indices = []
    for band in bands:
        if not isinstance(band, int):
            raise InputError(f"{name}: band names ({band}) need a GeoTIFF band folder; use band numbers")
        if band > image.shape[2]:
            raise InputError(f"{name}: band {band} requested but the image has {image.shape[2]} band(s)")
        indices.append(band - 1)
    return image[:, :, indices]


def display_rgb(image: np.ndarray, labels: Sequence[str] | None = None) -> np.ndarray:
    """An H×W×3 uint8 rendering of any multispectral image for overlays.

    Uses B04, B03, B02 when the bands are named so (Sentinel-2 true colour), the image itself
    when it has three bands, the first band as grey for one or two, and the first three
    otherwise; each band is stretched between its 2nd and 98th percentiles.
    """
    names = [label.upper() for label in labels] if labels else []
    if all(b in names for b in ("B04", "B03", "B02")):
        picked = image[:, :, [names.index("B04"), names.index("B03"), names.index("B02")]]
    elif image.shape[2] >= 3:
        picked = image[:, :, :3]
    else:
        picked = np.repeat(image[:, :, :1], 3, axis=2)
    out = np.empty(picked.shape, np.uint8)
    for band in range(3):
        plane = picked[:, :, band].astype(np.float32)
        sample = plane[:: max(1, plane.shape[0] // 512), :: max(1, plane.shape[1] // 512)]
        finite = sample[np.isfinite(sample)]
        lo, hi = np.percentile(finite, [2.0, 98.0]) if finite.size else (0.0, 1.0)
        scaled = (np.nan_to_num(plane, nan=lo) - lo) / max(hi - lo, 1e-12)
        out[:, :, band] = (np.clip(scaled, 0.0, 1.0) * 255.0).round().astype(np.uint8)
    return out


@dataclass(frozen=True)
class GeoReference:
    """Where a raster lies: CRS (rasterio CRS or None), affine transform and size in pixels."""

    crs: Any
    transform: Any  # affine.Affine
    width: int
    height: int

    @property
    def georeferenced(self) -> bool:
        """Whether the raster has a CRS or a non-identity transform."""
        return self.crs is not None or not self.transform.is_identity

    @property
    def pixel_area(self) -> float:
        """Area of one pixel in squared CRS units."""
        return abs(self.transform.determinant)

    def crs_name(self) -> str:
        """The CRS as a short string ("EPSG:32631"), its WKT, or "none"."""
        if self.crs is None:
            return "none"
        epsg = self.crs.to_epsg()
        return f"EPSG:{epsg}" if epsg else self.crs.to_wkt()

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description (CRS name, transform coefficients a, b, c, d, e, f, size)."""
        return {"crs": self.crs_name(), "transform": [float(v) for v in tuple(self.transform)[:6]],
                "width": self.width, "height": self.height}

    def pixel_to_map(self, xy: np.ndarray) -> np.ndarray:
        """Map N×2 continuous pixel coordinates (x = column, y = row; corner at 0) to CRS coordinates."""
        a, b, c, d, e, f = tuple(self.transform)[:6]
        x, y = xy[:, 0], xy[:, 1]
        return np.stack([a * x + b * y + c, d * x + e * y + f], axis=1)


def _band_label(path: Path) -> str:
    match = _SENTINEL2_NAME.search(path.stem)
    return match.group(1).upper() if match else path.stem


def band_files(folder: Path) -> list[Path]:
    """The band files of a band folder, in band order (Sentinel-2 order when names allow it)."""
    files = sorted(p for p in folder.iterdir()
                   if p.is_file() and p.suffix.lower() in GEOTIFF_SUFFIXES and not p.name.startswith("."))
    if not files:
        raise InputError(f"no .tif band files in {folder}")
    labels = [_band_label(p) for p in files]
    if all(label in SENTINEL2_BANDS for label in labels) and len(set(labels)) == len(labels):
        files = [f for _, f in sorted(zip(labels, files), key=lambda t: SENTINEL2_BANDS.index(t[0]))]
    return files


class GeoRaster:
    """A GeoTIFF file or band folder opened for (windowed) reading of selected bands.

    `read(y, x, height, width)` returns an H×W×C array in the common dtype of the selected
    bands; `read()` reads everything. Use as a context manager, or call `close()`.
    """

    def __init__(self, path: str | os.PathLike, bands: str | Sequence[int | str] | None = None,
                 name: str = "image") -> None:
        rasterio = _rasterio()
        from rasterio.errors import NotGeoreferencedWarning, RasterioIOError

        self.path = Path(path)
        self.name = name
        self._open: list[Any] = []
        if not self.path.exists():
            raise InputError(f"{name}: file not found: {self.path}")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", NotGeoreferencedWarning)
                sources, labels = self._open_sources(rasterio)
        except RasterioIOError as exc:
            self.close()
            raise InputError(f"{name}: not a readable GeoTIFF: {self.path} ({exc})") from None
        except BaseException:
            self.close()
            raise
        try:
            selection = parse_bands(bands)
            self._sources, self.band_labels = self._select(sources, labels, selection)
        except BaseException:
            self.close()
            raise
        grid = self._sources[0][0]
        self.georef = GeoReference(grid.crs, grid.transform, grid.width, grid.height)
        self.dtype = np.result_type(*[np.dtype(ds.dtypes[i - 1]) for ds, i in self._sources])
        self.nodata = [ds.nodata for ds, _ in self._sources]

    def _open_sources(self, rasterio: Any) -> tuple[list[tuple[Any, int]], list[str]]:
        if not self.path.is_dir():
            dataset = rasterio.open(self.path)
            self._open.append(dataset)
            labels = [d or f"band {i + 1}" for i, d in enumerate(dataset.descriptions)]
            return [(dataset, i + 1) for i in range(dataset.count)], labels
        from rasterio.enums import Resampling
        from rasterio.vrt import WarpedVRT

        files = band_files(self.path)
        datasets = []
        for file in files:
            dataset = rasterio.open(file)
            self._open.append(dataset)
            datasets.append(dataset)
        grid = min(datasets, key=lambda ds: abs(ds.transform.a * ds.transform.e))  # finest band
        sources = []
        for dataset in datasets:
            same = (dataset.width, dataset.height) == (grid.width, grid.height) \
                and dataset.transform.almost_equals(grid.transform) and dataset.crs == grid.crs
            if not same:  # a coarser band: resample onto the finest grid on the fly
                dataset = WarpedVRT(dataset, crs=grid.crs, transform=grid.transform, width=grid.width,
                                    height=grid.height, resampling=Resampling.bilinear)
                self._open.append(dataset)
            sources.extend((dataset, i + 1) for i in range(dataset.count))
        labels = [_band_label(f) for f in files]
        if len(labels) != len(sources):  # multi-band files inside a folder: number them
            labels = [f"band {i + 1}" for i in range(len(sources))]
        return sources, labels

    def _select(self, sources: list[tuple[Any, int]], labels: list[str],
                selection: tuple[int | str, ...] | None) -> tuple[list[tuple[Any, int]], list[str]]:
        if selection is None:
            return sources, labels
        chosen = []
        for band in selection:
            if isinstance(band, int):
                if band > len(sources):
                    raise InputError(f"{self.name}: band {band} requested but {self.path} has "
                                     f"{len(sources)} band(s)")
                chosen.append(band - 1)
            else:
                upper = [label.upper() for label in labels]
                if band not in upper:
                    raise InputError(f"{self.name}: no band named {band} in {self.path} "
                                     f"(bands: {', '.join(labels)})")
                chosen.append(upper.index(band))
        return [sources[i] for i in chosen], [labels[i] for i in chosen]

    @property
    def count(self) -> int:
        """Number of selected bands."""
        return len(self._sources)

    @property
    def width(self) -> int:
        """Width in pixels."""
        return self.georef.width

    @property
    def height(self) -> int:
        """Height in pixels."""
        return self.georef.height

    def read(self, y: int = 0, x: int = 0, height: int | None = None, width: int | None = None
             ) -> np.ndarray:
        """Read a window (all of the raster by default) as an H×W×C array."""
        from rasterio.windows import Window

        height = self.height - y if height is None else height
        width = self.width - x if width is None else width
        window = Window(x, y, width, height)
        out = np.empty((height, width, self.count), self.dtype)
        position = 0
        while position < self.count:  # read consecutive bands of one dataset in one call
            dataset, first = self._sources[position]
            indexes = [first]
            while position + len(indexes) < self.count and \
                    self._sources[position + len(indexes)] == (dataset, first + len(indexes)):
                indexes.append(first + len(indexes))
            block = dataset.read(indexes, window=window)
            out[:, :, position:position + len(indexes)] = np.moveaxis(block, 0, 2)
            position += len(indexes)
        return out

    def nodata_mask(self, image: np.ndarray) -> np.ndarray | None:
        """H×W bool: pixels equal to the nodata value in every selected band; None if no band has one."""
        if all(value is None for value in self.nodata):
            return None
        mask = np.ones(image.shape[:2], bool)
        for band, value in enumerate(self.nodata):
            if value is None:
                return None
            plane = image[:, :, band]
            mask &= np.isnan(plane) if isinstance(value, float) and math.isnan(value) else plane == value
        return mask

    def close(self) -> None:
        """Close every file this raster opened."""
        for dataset in reversed(self._open):
            dataset.close()
        self._open.clear()

    def __enter__(self) -> GeoRaster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_geotiff(path: str | os.PathLike, bands: str | Sequence[int | str] | None = None,
                 name: str = "image") -> tuple[np.ndarray, GeoReference, np.ndarray | None]:
    """Read a whole GeoTIFF (or band folder): H×W×C array, its GeoReference, its nodata mask (or None)."""
    with gdal_env(), GeoRaster(path, bands, name) as raster:
        image = raster.read()
        return image, raster.georef, raster.nodata_mask(image)


def grid_differences(reference: GeoReference, comparison: GeoReference) -> list[str]:
    """Why two rasters do not share one pixel grid (CRS, size, pixel size, origin); [] if they do."""
    reasons = []
    if reference.crs != comparison.crs:
        reasons.append(f"CRS differs (reference {reference.crs_name()}, comparison {comparison.crs_name()})")
    if (reference.width, reference.height) != (comparison.width, comparison.height):
        reasons.append(f"size differs (reference {reference.width}×{reference.height}, comparison "
                       f"{comparison.width}×{comparison.height} pixels)")
    ref_t, cmp_t = reference.transform, comparison.transform
    pixel = max(abs(ref_t.a), abs(ref_t.e), 1e-300)
    size_tol = 1e-6 * pixel
    if any(abs(getattr(ref_t, k) - getattr(cmp_t, k)) > size_tol for k in "abde"):
        reasons.append(f"pixel size or rotation differs (reference {ref_t.a:.6g}×{ref_t.e:.6g}, comparison "
                       f"{cmp_t.a:.6g}×{cmp_t.e:.6g} CRS units)")
    else:
        dx = (cmp_t.c - ref_t.c) / (ref_t.a or 1.0)
        dy = (cmp_t.f - ref_t.f) / (ref_t.e or 1.0)
        if max(abs(dx), abs(dy)) > 0.01:
            reasons.append(f"origin differs by {dx:+.2f}, {dy:+.2f} pixels (x, y): the footprints are "
                           "shifted")
    return reasons


def check_same_grid(reference: GeoReference, comparison: GeoReference) -> None:
    """Raise InputError saying precisely why two rasters do not share CRS and footprint."""
    reasons = grid_differences(reference, comparison)
    if reasons:
        raise InputError("reference and comparison GeoTIFFs are not on the same grid: " + "; ".join(reasons)
                         + " (reproject one onto the other, or use --align / align=True)")


@contextmanager
def _quiet_georeferencing() -> Iterator[None]:
    """Silence rasterio's warning for rasters without georeference (plain TIFF in, plain TIFF out)."""
    from rasterio.errors import NotGeoreferencedWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        yield


def _profile(georef: GeoReference, count: int, dtype: Any, nodata: float | None) -> dict[str, Any]:
    profile: dict[str, Any] = {
        "driver": "GTiff", "width": georef.width, "height": georef.height, "count": count,
        "dtype": np.dtype(dtype).name, "crs": georef.crs, "transform": georef.transform,
        "compress": "deflate", "tiled": True, "blockxsize": BLOCK, "blockysize": BLOCK,
    }
    if nodata is not None:
        profile["nodata"] = nodata
    if np.dtype(dtype).kind == "f":
        profile["predictor"] = 3
    return profile


def write_geotiff(path: str | os.PathLike, image: np.ndarray, georef: GeoReference,
                  nodata: float | None = None) -> Path:
    """Write an H×W or H×W×C array as a GeoTIFF with `georef`'s CRS and transform, atomically."""
    rasterio = _rasterio()
    array = image[:, :, None] if image.ndim == 2 else image
    if array.shape[:2] != (georef.height, georef.width):
        raise InputError(f"array of shape {image.shape} does not match the "
                         f"{georef.width}×{georef.height} grid")

    def write(tmp: Path) -> None:
        profile = _profile(georef, array.shape[2], array.dtype, nodata)
        with gdal_env(), _quiet_georeferencing(), rasterio.open(tmp, "w", **profile) as dst:
            dst.write(np.moveaxis(array, 2, 0))

    return atomic_write(path, write)


class GeoTiffWriter:
    """Write a GeoTIFF row band by row band (top to bottom), atomically, with bounded memory.

    Rows are written a whole 256-row block row at a time, so every internal tile is written
    once: rows that do not fill a block row wait in a buffer of one block row (the only copy
    made); whole block rows go to the file straight from the caller's array, band by band. The
    file appears at `path` only when the writer closes without error.
    """

    def __init__(self, path: str | os.PathLike, georef: GeoReference, count: int, dtype: Any,
                 nodata: float | None = None) -> None:
        rasterio = _rasterio()
        self.path = Path(path)
        self.georef = georef
        self.count = count
        self.dtype = np.dtype(dtype)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
        os.close(fd)
        self._tmp = Path(tmp)
        with _quiet_georeferencing():
            self._dataset = rasterio.open(self._tmp, "w", **_profile(georef, count, dtype, nodata))
        self._carry = np.empty((count, min(BLOCK, georef.height), georef.width), self.dtype)
        self._carried = 0  # rows waiting in the buffer
        self._next_row = 0  # first row not yet received
        self._written_row = 0  # first row not yet written to the file

    def write_rows(self, row: int, rows: np.ndarray) -> None:
        """Append rows starting at `row` (must follow the previous call): C×h×W or h×W."""
        block = rows[None] if rows.ndim == 2 else rows
        if row != self._next_row:
            raise ValueError(f"rows must be written in order: expected row {self._next_row}, got {row}")
        if block.shape[0] != self.count or block.shape[2] != self.georef.width:
            raise ValueError(f"expected {self.count}×h×{self.georef.width} rows, got {block.shape}")
        height = block.shape[1]
        if row + height > self.georef.height:
            raise ValueError(f"rows {row}–{row + height} run past the raster's {self.georef.height} rows")
        done = 0
        if self._carried:  # first complete the block row that earlier rows began
            done = min(BLOCK - self._carried, height)
            self._carry[:, self._carried:self._carried + done] = block[:, :done]
            self._carried += done
            if self._carried == BLOCK:
                self._write(self._carry)
                self._carried = 0
        whole = (height - done) // BLOCK * BLOCK
        if whole:
            self._write(block[:, done:done + whole])
            done += whole
        if done < height:  # the start of a block row: wait for the rest
            self._carry[:, :height - done] = block[:, done:]
            self._carried = height - done
        self._next_row += height

    def _write(self, rows: np.ndarray) -> None:
        """Write C×h×W rows at the first unwritten row, band by band (each band's rows are contiguous)."""
        from rasterio.windows import Window

        window = Window(0, self._written_row, self.georef.width, rows.shape[1])
        for band in range(self.count):
            self._dataset.write(np.ascontiguousarray(rows[band], dtype=self.dtype), band + 1, window=window)
        self._written_row += rows.shape[1]

    def close(self) -> Path:
        """Write what is left, check every row arrived, and move the file into place."""
        try:
            if self._carried:
                self._write(self._carry[:, :self._carried])
                self._carried = 0
            if self._written_row != self.georef.height:
                raise ValueError(f"{self.path.name}: only {self._written_row} of {self.georef.height} rows "
                                 "were written")
            self._dataset.close()
            os.chmod(self._tmp, 0o644)
            os.replace(self._tmp, self.path)
        except BaseException:
            self.abort()
            raise
        return self.path

    def abort(self) -> None:
        """Discard the temporary file (nothing appears at `path`)."""
        if not self._dataset.closed:
            self._dataset.close()
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> GeoTiffWriter:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


# --- regions as polygons ----------------------------------------------------------------------

def component_polygons(component: np.ndarray, x0: float = 0.0, y0: float = 0.0, scale: float = 1.0
                       ) -> list[list[np.ndarray]]:
    """Polygons (exterior ring, then holes; N×2 pixel coordinates) of the True pixels of a crop.

    Traced by ``rasterio.features.shapes`` (GDAL's polygonize): vertices lie exactly on pixel
    edges, so a polygon covers exactly its pixels, and holes are kept. Parts are 4-connected,
    so a region whose pixels touch only at a corner becomes several polygons (valid
    geometry, no self-touching ring). Rings are not closed (the first vertex is not
    repeated). `x0`, `y0` place the crop's corner in the full image; `scale` is the size of
    one crop pixel in image pixels (for crops read at reduced resolution).
    """
    _rasterio()
    from rasterio.features import shapes
    from rasterio.transform import Affine

    mask = np.ascontiguousarray(component, dtype=bool)
    if not mask.any():
        return []
    transform = Affine(scale, 0.0, x0, 0.0, scale, y0)
    return [[np.asarray(ring[:-1], dtype=np.float64) for ring in geometry["coordinates"]]
            for geometry, _ in shapes(mask.view(np.uint8), mask=mask, connectivity=4, transform=transform)]


def _signed_area(ring: np.ndarray) -> float:
    x, y = ring[:, 0], ring[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(np.roll(x, -1), y))


def _closed_ring(ring: np.ndarray, counter_clockwise: bool, digits: int) -> list[list[float]]:
    if (_signed_area(ring) > 0) != counter_clockwise:
        ring = ring[::-1]
    coords = [[round(float(x), digits), round(float(y), digits)] for x, y in ring]
    if coords[0] != coords[-1]:
        coords.append(coords[0])
    return coords


def polygons_to_geometry(polygons: list[list[np.ndarray]], georef: GeoReference) -> dict[str, Any] | None:
    """A GeoJSON Polygon/MultiPolygon in `georef`'s CRS from pixel-coordinate polygons (RFC 7946 winding)."""
    pixel = min(abs(georef.transform.a) or 1.0, abs(georef.transform.e) or 1.0)
    digits = max(2, min(12, 3 - math.floor(math.log10(pixel)))) if pixel > 0 else 6
    shapes = []
    for rings in polygons:
        mapped = [georef.pixel_to_map(ring) for ring in rings]
        shapes.append([_closed_ring(ring, i == 0, digits) for i, ring in enumerate(mapped)])
    if not shapes:
        return None
    if len(shapes) == 1:
        return {"type": "Polygon", "coordinates": shapes[0]}
    return {"type": "MultiPolygon", "coordinates": shapes}


def feature_collection(features: list[dict[str, Any]], georef: GeoReference) -> dict[str, Any]:
    """A GeoJSON FeatureCollection naming `georef`'s CRS (the legacy "crs" member GDAL/QGIS read)."""
    collection: dict[str, Any] = {"type": "FeatureCollection"}
    if georef.crs is not None:
        epsg = georef.crs.to_epsg()
        if epsg:
            collection["crs"] = {"type": "name", "properties": {"name": f"urn:ogc:def:crs:EPSG::{epsg}"}}
        else:
            collection["crs_wkt"] = georef.crs.to_wkt()
    collection["features"] = features
    return collection


def region_feature(region: dict[str, Any], polygons: list[list[np.ndarray]], georef: GeoReference
                   ) -> dict[str, Any]:
    """One GeoJSON feature: the region's polygon(s) in map coordinates and its properties."""
    properties = {k: v for k, v in region.items()}
    properties["area_map_units"] = float(f"{region['area'] * georef.pixel_area:.7g}")  # squared CRS units
    return {"type": "Feature", "id": region["id"], "geometry": polygons_to_geometry(polygons, georef),
            "properties": properties}


def mask_features(mask: np.ndarray, regions: Sequence[Any], georef: GeoReference) -> list[dict[str, Any]]:
    """GeoJSON features for the regions of a change mask (each region matched to its component)."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    by_key = {}
    for index in range(1, count):
        x, y, w, h, area = (int(v) for v in stats[index])
        by_key[(x, y, x + w, y + h, area)] = index
    features = []
    for region in regions:
        data = region.to_dict() if hasattr(region, "to_dict") else dict(region)
        x0, y0, x1, y1 = data["box"]
        index = by_key.get((x0, y0, x1, y1, data["area"]))
        if index is None:
            continue
        polygons = component_polygons(labels[y0:y1, x0:x1] == index, x0, y0)
        features.append(region_feature(data, polygons, georef))
    return features


def write_geojson(path: str | os.PathLike, collection: dict[str, Any]) -> Path:
    """Write a GeoJSON document atomically."""
    return write_json(path, collection)
