"""GeoTIFF in/out on the real OSCD 13-band Sentinel-2 files: band folders, band selection, CRS and
transform kept in the outputs, GeoJSON polygons in map coordinates, grid mismatches explained."""

from __future__ import annotations

import json

import numpy as np
import pytest

from changeseg.errors import InputError
from changeseg.io import geotiff
from tests.conftest import require_real_data

rasterio = pytest.importorskip("rasterio")

BERCY_SIZE = (395, 360)  # height, width of the 10 m bands


def polygons_of(geometry: dict) -> list:
    """The polygons of a GeoJSON Polygon or MultiPolygon (a region touching itself only at a
    corner is a MultiPolygon of its 4-connected parts)."""
    return [geometry["coordinates"]] if geometry["type"] == "Polygon" else geometry["coordinates"]


def band_file(folder, band):
    return next(folder.glob(f"*_{band}.tif"))


@pytest.fixture(scope="module")
def bercy():
    root = require_real_data("oscd", "bercy")
    return root / "imgs_1", root / "imgs_2"


@pytest.fixture(scope="module")
def detector13():
    """An untrained 13-band network (architecture and I/O are what is tested, not accuracy)."""
    import torch

    from changeseg.inference.predictor import ChangeDetector
    from changeseg.io.checkpoints import CheckpointConfig
    from changeseg.models import build_model

    torch.manual_seed(3)
    model = build_model(in_channels=13, fpn_channels=16)
    config = CheckpointConfig(model=model.config.to_dict(), mean=[0.03] * 13, std=[0.02] * 13)
    return ChangeDetector.from_model(model, config, precision="fp32", name="tiny13")


def test_band_folder_is_read_as_13_bands_in_sentinel2_order(bercy):
    with geotiff.GeoRaster(bercy[0]) as raster:
        assert raster.count == 13 and raster.dtype == np.uint16
        assert raster.band_labels == list(geotiff.SENTINEL2_BANDS)  # B8A after B08, not after B12
        image = raster.read()
        window = raster.read(100, 50, 64, 80)
        georef = raster.georef
    assert image.shape == (*BERCY_SIZE, 13)
    with rasterio.open(band_file(bercy[0], "B02")) as b02:
        assert np.array_equal(image[:, :, 1], b02.read(1))  # a 10 m band is read as it is
        assert georef.crs == b02.crs and georef.transform == b02.transform  # the finest band's grid
    with rasterio.open(band_file(bercy[0], "B8A")) as b8a:  # a 20 m band, resampled to 10 m
        assert b8a.width == 180
        coarse = b8a.read(1).astype(float)
    assert abs(image[:, :, 8].mean() - coarse.mean()) < 0.02 * coarse.mean()
    assert np.array_equal(window, image[100:164, 50:130])  # windows agree with the whole read
    assert georef.to_dict()["crs"] == "EPSG:4326"


def test_band_selection_by_number_or_name(bercy):
    by_number, georef, nodata = geotiff.read_geotiff(bercy[0], "4,3,2")
    by_name, _, _ = geotiff.read_geotiff(bercy[0], ["B04", "B03", "B02"])
    assert by_number.shape == (*BERCY_SIZE, 3) and nodata is None
    assert np.array_equal(by_number, by_name)
    with rasterio.open(band_file(bercy[0], "B04")) as b04:
        assert np.array_equal(by_number[:, :, 0], b04.read(1))
    with pytest.raises(InputError, match="band 14 requested but .* has 13 band"):
        geotiff.read_geotiff(bercy[0], "14")
    with pytest.raises(InputError, match="no band named B13 .*B8A"):
        geotiff.read_geotiff(bercy[0], "B13")
    with pytest.raises(InputError, match="1-based"):
        geotiff.parse_bands("0,1")
    assert geotiff.select_bands(by_number, (3, 1), "x").tolist() == by_number[:, :, [2, 0]].tolist()


def _choose_threshold(detector, folders, quantile=0.85):
    from changeseg.inference.pipeline import detect_pair

    ref, _, _ = geotiff.read_geotiff(folders[0])
    cmp, _, _ = geotiff.read_geotiff(folders[1])
    probability = detect_pair(detector, ref, cmp, threshold=0.5).probability
    return float(np.quantile(probability, quantile))


def test_13_band_model_outputs_keep_crs_transform_and_map_coordinates(detector13, bercy, tmp_path):
    from rasterio.features import rasterize

    from changeseg.inference.pipeline import DetectOptions, detect_to_folder, load_pair

    threshold = _choose_threshold(detector13, bercy)
    options = DetectOptions(threshold=threshold, min_area=4)
    summary = detect_to_folder(detector13, load_pair(*bercy, options), tmp_path / "out", options)
    out = tmp_path / "out"
    assert {"mask.tif", "probability.tif", "regions.geojson", "regions.json", "mask.png",
            "overlay.png"} <= {p.name for p in out.iterdir()}
    with rasterio.open(band_file(bercy[0], "B02")) as source:
        crs, transform, bounds = source.crs, source.transform, source.bounds
    for name in ("mask.tif", "probability.tif"):
        with rasterio.open(out / name) as written:
            assert written.crs == crs and written.transform == transform
            assert (written.height, written.width) == BERCY_SIZE
    with rasterio.open(out / "mask.tif") as written:
        mask = written.read(1)
        assert written.dtypes[0] == "uint8" and written.nodata == geotiff.MASK_NODATA
    assert summary["region_count"] > 0 and int((mask == 1).sum()) == summary["changed_pixels"]
    collection = json.loads((out / "regions.geojson").read_text())
    assert collection["crs"]["properties"]["name"] == "urn:ogc:def:crs:EPSG::4326"
    features = collection["features"]
    assert len(features) == summary["region_count"]
    rings = [ring for f in features for polygon in polygons_of(f["geometry"]) for ring in polygon]
    points = np.array([p for ring in rings for p in ring])
    # polygons follow pixel edges, so a region on the image border lies on its bounds (up to
    # the GeoJSON coordinates' rounding, a thousandth of a pixel)
    tol = 1e-3 * abs(transform.a)
    assert bounds.left - tol <= points[:, 0].min() and points[:, 0].max() <= bounds.right + tol  # lon
    assert bounds.bottom - tol <= points[:, 1].min() and points[:, 1].max() <= bounds.top + tol  # lat
    pixel_area = abs(transform.a * transform.e)
    for feature in features:
        props = feature["properties"]
        assert props["area_map_units"] == pytest.approx(props["area"] * pixel_area, rel=1e-4)
    assert all(ring[0] == ring[-1] for ring in rings)  # closed rings
    burned = rasterize([(f["geometry"], 1) for f in features], out_shape=BERCY_SIZE, transform=transform)
    changed = mask == 1
    iou = (burned.astype(bool) & changed).sum() / (burned.astype(bool) | changed).sum()
    assert iou > 0.85  # the polygons, burned back through the transform, cover the mask
    stored = json.loads((out / "regions.json").read_text())
    assert stored["georeference"]["transform"] == pytest.approx(list(transform)[:6])


def test_cli_on_band_folders_with_a_13_band_checkpoint(detector13, bercy, tmp_path, capsys):
    from changeseg.cli import detect

    checkpoint = detector13.save_pretrained(tmp_path / "tiny13")
    out = tmp_path / "out"
    code = detect.main([str(bercy[0]), str(bercy[1]), "-o", str(out), "-m", str(checkpoint),
                        "--precision", "fp32", "--threshold", "0.3"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "of 360×395 pixels changed" in captured.out
    with rasterio.open(out / "probability.tif") as written:
        assert written.crs.to_epsg() == 4326


def test_three_channel_model_needs_band_selection(tiny_checkpoint, bercy, tmp_path, capsys):
    from changeseg.cli import detect

    base = [str(bercy[0]), str(bercy[1]), "-m", str(tiny_checkpoint), "--precision", "fp32"]
    code = detect.main([*base, "-o", str(tmp_path / "bad")])
    err = capsys.readouterr().err
    assert code == 1 and "13 band(s)" in err and "--bands" in err and err.count("\n") == 1
    assert not (tmp_path / "bad").exists()
    code = detect.main([*base, "-o", str(tmp_path / "rgb"), "--bands", "4,3,2"])
    assert code == 0, capsys.readouterr().err
    with rasterio.open(tmp_path / "rgb" / "mask.tif") as written:
        assert written.crs.to_epsg() == 4326


def _stack(folder, bands, path, crs=None):
    """Write the given bands of a band folder as one multi-band GeoTIFF (optionally relabel its CRS)."""
    image, georef, _ = geotiff.read_geotiff(folder, bands)
    if crs is not None:
        georef = geotiff.GeoReference(rasterio.crs.CRS.from_string(crs), georef.transform,
                                      georef.width, georef.height)
    return geotiff.write_geotiff(path, image, georef)


def test_mismatched_grids_are_explained(bercy, tmp_path):
    from changeseg.inference.pipeline import load_pair

    paris = require_real_data("oscd", "paris", "imgs_2")
    with pytest.raises(InputError) as info:
        load_pair(bercy[0], paris)
    message = str(info.value)
    assert "size differs (reference 360×395, comparison 390×408 pixels)" in message
    assert "pixel size" in message or "origin differs" in message
    reference = _stack(bercy[0], "4,3,2", tmp_path / "ref.tif")
    relabelled = _stack(bercy[1], "4,3,2", tmp_path / "utm.tif", crs="EPSG:32631")
    with pytest.raises(InputError, match=r"CRS differs \(reference EPSG:4326, comparison EPSG:32631\)"):
        load_pair(reference, relabelled)
    image, georef, _ = geotiff.read_geotiff(bercy[1], "4,3,2")
    shifted = geotiff.GeoReference(georef.crs, georef.transform @ rasterio.Affine.translation(3, -2),
                                   georef.width, georef.height)
    geotiff.write_geotiff(tmp_path / "shifted.tif", image, shifted)
    with pytest.raises(InputError, match=r"origin differs by \+3.00, -2.00 pixels"):
        load_pair(reference, tmp_path / "shifted.tif")
    pair = load_pair(reference, _stack(bercy[1], "4,3,2", tmp_path / "cmp.tif"))  # same grid: fine
    assert pair.reference.shape == (*BERCY_SIZE, 3) and pair.georef.crs.to_epsg() == 4326


def test_single_file_geotiffs_and_nodata(tmp_path):
    georef = geotiff.GeoReference(rasterio.crs.CRS.from_epsg(32631),
                                  rasterio.Affine(10.0, 0.0, 448_000.0, 0.0, -10.0, 5_412_000.0), 40, 30)
    image = np.arange(30 * 40 * 5, dtype=np.uint16).reshape(30, 40, 5)
    image[:5, :7] = 0
    geotiff.write_geotiff(tmp_path / "five.tif", image, georef, nodata=0)
    read, read_georef, nodata = geotiff.read_geotiff(tmp_path / "five.tif")
    assert np.array_equal(read, image) and read_georef == georef
    assert nodata is not None and nodata[:5, :7].all() and nodata.sum() == 35
    assert geotiff.read_geotiff(tmp_path / "five.tif", "5,1")[0].shape == (30, 40, 2)


def test_windowed_writer_is_atomic_and_in_order(tmp_path):
    georef = geotiff.GeoReference(None, rasterio.Affine.identity(), 50, 600)
    target = tmp_path / "rows.tif"
    with geotiff.GeoTiffWriter(target, georef, 1, np.float32) as writer:
        for top in range(0, 600, 70):
            rows = min(70, 600 - top)
            writer.write_rows(top, np.full((rows, 50), top, np.float32))
            assert not target.exists()  # nothing visible until complete
    with rasterio.open(target) as written:
        data = written.read(1)
    assert data[0, 0] == 0 and data[599, 49] == 560 and data[140, 3] == 140
    broken = tmp_path / "broken.tif"
    with pytest.raises(RuntimeError), geotiff.GeoTiffWriter(broken, georef, 1, np.uint8) as writer:
        writer.write_rows(0, np.zeros((10, 50), np.uint8))
        raise RuntimeError("interrupted")
    with pytest.raises(ValueError, match="only 10 of 600 rows"), \
            geotiff.GeoTiffWriter(broken, georef, 1, np.uint8) as writer:
        writer.write_rows(0, np.zeros((10, 50), np.uint8))
    writer = geotiff.GeoTiffWriter(broken, georef, 1, np.uint8)
    with pytest.raises(ValueError, match="in order"):
        writer.write_rows(5, np.zeros((10, 50), np.uint8))
    writer.abort()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rows.tif"]  # no partial or temporary files


@pytest.mark.parametrize("chunks", [[600], [70] * 8 + [40], [256, 256, 88], [3, 250, 3, 300, 44], [511, 89]])
def test_windowed_writer_keeps_every_band_and_row(tmp_path, rng, chunks):
    georef = geotiff.GeoReference(None, rasterio.Affine.identity(), 37, 600)
    image = rng.integers(0, 65536, (3, 600, 37), dtype=np.uint16)
    assert sum(chunks) == 600
    with geotiff.GeoTiffWriter(tmp_path / "bands.tif", georef, 3, np.uint16) as writer:
        top = 0
        for rows in chunks:
            writer.write_rows(top, image[:, top:top + rows])
            top += rows
    with rasterio.open(tmp_path / "bands.tif") as written:
        assert np.array_equal(written.read(), image)
    long = geotiff.GeoTiffWriter(tmp_path / "long.tif", georef, 3, np.uint16)
    with pytest.raises(ValueError, match="run past"):
        long.write_rows(0, np.zeros((3, 601, 37)))
    long.abort()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bands.tif"]


def test_polygons_follow_pixel_edges_keep_holes_and_wind_by_rfc7946():
    ring = np.zeros((7, 7), bool)
    ring[1:6, 1:6] = True
    ring[3, 3] = False  # a one-pixel hole
    polygons = geotiff.component_polygons(ring, x0=10, y0=20)
    assert len(polygons) == 1 and len(polygons[0]) == 2  # exterior + hole
    exterior, hole = polygons[0]
    # exact pixel edges: the 5×5 block spans columns 11..16 and rows 21..26, the hole 13..14, 23..24
    assert sorted(map(tuple, exterior)) == [(11, 21), (11, 26), (16, 21), (16, 26)]
    assert sorted(map(tuple, hole)) == [(13, 23), (13, 24), (14, 23), (14, 24)]
    assert sorted(map(tuple, geotiff.component_polygons(np.ones((1, 1), bool))[0][0])) == [
        (0, 0), (0, 1), (1, 0), (1, 1)]  # a single pixel is its unit square
    halved = geotiff.component_polygons(ring, x0=10, y0=20, scale=2.0)[0][0]  # a decimated read
    assert halved[:, 0].min() == 12 and halved[:, 0].max() == 22
    diagonal = np.eye(2, dtype=bool)  # touching at a corner only: two valid polygons
    assert len(geotiff.component_polygons(diagonal)) == 2
    assert geotiff.component_polygons(np.zeros((3, 3), bool)) == []
    georef = geotiff.GeoReference(None, rasterio.Affine(2.0, 0.0, 100.0, 0.0, -2.0, 50.0), 7, 7)
    geometry = geotiff.polygons_to_geometry(polygons, georef)
    assert geometry["type"] == "Polygon"
    outer, inner = (np.array(r) for r in geometry["coordinates"])

    def signed_area(points):
        x, y = points[:-1, 0], points[:-1, 1]
        return 0.5 * (np.dot(x, np.roll(y, -1)) - np.dot(np.roll(x, -1), y))

    assert signed_area(outer) > 0 > signed_area(inner)  # RFC 7946: exterior counter-clockwise
    assert abs(signed_area(outer)) - abs(signed_area(inner)) == pytest.approx(24 * 4)  # 24 px of 2×2
    assert outer[:, 0].min() == pytest.approx(100 + 2 * 11)
    assert outer[:, 1].max() == pytest.approx(50 - 2 * 21)


def test_plain_tiffs_without_georeference_are_ordinary_images(tmp_path, rng):
    from changeseg.inference.pipeline import load_pair

    plain = geotiff.GeoReference(None, rasterio.Affine.identity(), 48, 32)
    image = rng.integers(0, 65535, (32, 48, 4), dtype=np.uint16)
    geotiff.write_geotiff(tmp_path / "a.tif", image, plain)
    small = geotiff.GeoReference(None, rasterio.Affine.identity(), 20, 10)
    geotiff.write_geotiff(tmp_path / "b.tif", image[:10, :20], small)
    pair = load_pair(tmp_path / "a.tif", tmp_path / "a.tif")
    assert not pair.georef.georeferenced and np.array_equal(pair.reference, image)
    with pytest.raises(InputError, match="reference is 48×32 but comparison is 20×10"):
        load_pair(tmp_path / "a.tif", tmp_path / "b.tif")
