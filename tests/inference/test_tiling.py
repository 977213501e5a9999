"""Tiling: grid and blending weights, exact reassembly, tiled vs whole-image agreement, batching,
streaming regions, and the windowed GeoTIFF path against the in-memory one."""

from __future__ import annotations

import json

import numpy as np
import pytest

from changeseg.errors import InputError
from changeseg.inference.pipeline import detect_pair
from changeseg.inference.predictor import ChangeDetector
from changeseg.inference.regions import find_regions
from changeseg.inference.tiling import (
    StreamingRegions,
    TilingOptions,
    blend_weights,
    iter_blended_strips,
    predict_proba_auto,
    predict_proba_tiled,
    ramp_weights,
    tile_grid,
    tile_starts,
)


class PixelBackend:
    """A backend whose output at a pixel depends only on that pixel, so tiling must be exact."""

    class_names = ["unchanged", "changed"]
    name = "pixel"

    def __init__(self) -> None:
        self.calls: list[tuple[int, ...]] = []

    def prepare(self, image: np.ndarray, name: str) -> np.ndarray:
        return image

    def predict_proba(self, reference: np.ndarray, comparison: np.ndarray) -> np.ndarray:
        self.calls.append(reference.shape)
        diff = np.abs(reference.astype(np.float32) - comparison.astype(np.float32)).mean(axis=2) / 255.0
        return np.stack([1.0 - diff, diff])


@pytest.fixture
def patch_pair(rng):
    reference = rng.integers(0, 256, (192, 256, 3), dtype=np.uint8)
    comparison = reference.copy()
    comparison[20:90, 30:120] = 255 - comparison[20:90, 30:120]
    comparison[120:180, 150:240] = 255 - comparison[120:180, 150:240]
    return reference, comparison


@pytest.fixture(scope="module")
def detector(tiny_checkpoint):
    return ChangeDetector.from_pretrained(tiny_checkpoint, precision="fp32")


def test_tile_starts_cover_the_axis_with_at_least_the_overlap():
    cases = [(1000, 256, 32), (257, 256, 0), (512, 128, 64), (100, 256, 32), (300, 100, 50)]
    for length, tile, overlap in cases:
        starts = tile_starts(length, tile, overlap)
        size = min(tile, length)
        assert starts[0] == 0 and starts[-1] + size == length
        assert all(b - a <= size - overlap for a, b in zip(starts, starts[1:]))  # overlap ≥ requested
        assert all(b > a for a, b in zip(starts, starts[1:]))
    rows = tile_grid(300, 500, 128, 32)
    assert len({(t.height, t.width) for row in rows for t in row}) == 1  # one tile shape: batchable
    assert tile_grid(50, 70, 128, 32) == [[tile_grid(50, 70, 128, 32)[0][0]]]


def test_blending_weights_favour_the_centre_and_keep_a_floor():
    ramp = ramp_weights(64, 16, floor=0.05)
    assert ramp[0] == pytest.approx(0.05 + 0.95 * (0.5 - 0.5 * np.cos(np.pi * 0.5 / 16)))
    assert np.all(ramp > 0.05) and ramp.max() == 1.0
    assert np.allclose(ramp, ramp[::-1])  # symmetric
    assert np.all(np.diff(ramp[:16]) > 0) and np.all(ramp[16:48] == 1.0)  # rises, then flat
    weights = blend_weights(40, 64, 16)
    assert np.allclose(weights, np.outer(ramp_weights(40, 16), ramp_weights(64, 16)))  # separable
    assert weights[20, 32] == 1.0 and weights[0, 0] == weights.min() > 0
    assert np.all(ramp_weights(10, 0) == 1.0)
    with pytest.raises(InputError):
        blend_weights(8, 8, 2, floor=0.0)


def test_pixelwise_backend_is_reassembled_exactly(patch_pair):
    backend = PixelBackend()
    whole = backend.predict_proba(*patch_pair)
    tiled = predict_proba_tiled(backend, *patch_pair, tile_size=64, overlap=16)
    assert np.abs(tiled - whole).max() < 1e-6
    assert set(backend.calls[1:]) == {(64, 64, 3)}  # every tile has the tile shape


def test_strips_are_bounded_by_the_tile_and_cover_every_row_once(patch_pair):
    backend = PixelBackend()
    reference, comparison = patch_pair
    progress = []

    def read(tile):
        rows, columns = tile.slices
        return reference[rows, columns], comparison[rows, columns]

    strips = [(top, strip.copy()) for top, strip in  # a strip is only valid until the next one
              iter_blended_strips(backend, read, 192, 256, 64, 16, batch_size=3,
                                  on_tile=lambda done, total: progress.append((done, total)))]
    tops = [top for top, _ in strips]
    heights = [strip.shape[1] for _, strip in strips]
    assert tops[0] == 0 and all(t + h == n for t, h, n in zip(tops, heights, tops[1:] + [192]))
    assert max(heights) <= 64 and all(strip.shape == (2, h, 256) for (_, strip), h in zip(strips, heights))
    assert progress[-1][0] == progress[-1][1] == sum(len(r) for r in tile_grid(192, 256, 64, 16))
    whole = backend.predict_proba(reference, comparison)  # pixel-wise: the strips are exact
    assert np.abs(np.concatenate([strip for _, strip in strips], axis=1) - whole).max() < 1e-6


def test_tiled_and_whole_image_predictions_agree_closely(detector, patch_pair):
    whole = 1.0 - detector.predict_proba(*patch_pair)[0]
    tiled = 1.0 - predict_proba_tiled(detector, *patch_pair, tile_size=128, overlap=32)[0]
    assert 0.05 < (whole > 0.5).mean() < 0.95  # a meaningful map, not all one value
    # tiles see less context than the whole image (the backbone's receptive field is wider than
    # the 32-pixel overlap), so the maps differ a little: 0.02-0.033 for the tiny models trained
    # on different CPUs; a misplaced or unblended tile would differ by far more
    assert np.abs(tiled - whole).mean() < 0.05
    # masks agree wherever the whole-image prediction is not on the fence (a briefly trained
    # model has many pixels near 0.5, where any tiny difference flips the decision)
    confident = np.abs(whole - 0.5) > 0.1
    assert confident.mean() > 0.4
    assert ((tiled > 0.5) == (whole > 0.5))[confident].mean() > 0.99


def test_tile_batches_match_one_tile_at_a_time(detector, patch_pair):
    one = predict_proba_tiled(detector, *patch_pair, tile_size=128, overlap=32, batch_size=1)
    four = predict_proba_tiled(detector, *patch_pair, tile_size=128, overlap=32, batch_size=4)
    assert np.abs(one - four).max() < 1e-4


def test_predict_tiles_automatically_above_the_tile_size(detector, patch_pair):
    tiled = detector.predict(*patch_pair, tile_size=128, tile_overlap=32)
    expected = 1.0 - predict_proba_tiled(detector, *patch_pair, tile_size=128, overlap=32)[0]
    assert np.allclose(tiled.probability, expected, atol=1e-6)
    whole = detector.predict(*patch_pair, tile_size=0)
    assert np.allclose(whole.probability, 1.0 - detector.predict_proba(*patch_pair)[0], atol=1e-6)
    small = detector.predict(*patch_pair)  # 256 px ≤ default tile size: predicted whole
    assert np.array_equal(small.probability, whole.probability)
    assert not TilingOptions(256).applies_to(192, 256) and TilingOptions(128).applies_to(192, 256)
    assert TilingOptions(128).overlap == 32 and TilingOptions().overlap == 128


@pytest.mark.parametrize("tile, overlap, batch", [(16, 0, 1), (128, 65, 1), (-1, 0, 1), (64, 8, 0)])
def test_bad_tiling_options_are_input_errors(tile, overlap, batch):
    with pytest.raises(InputError):
        TilingOptions(tile, overlap, batch)


def test_streaming_regions_equal_whole_image_regions(rng):
    mask = rng.random((150, 211)) > 0.62
    probability = rng.random((150, 211)).astype(np.float32)
    expected, kept = find_regions(mask, probability, min_area=3)
    streaming = StreamingRegions(211)
    labels = [streaming.add_strip(top, mask[top:top + 23], probability[top:top + 23])
              for top in range(0, 150, 23)]
    regions, lookup = streaming.finish(min_area=3)
    assert len(regions) == len(expected) > 20
    for a, b in zip(expected, regions):
        assert (a.id, a.box, a.area) == (b.id, b.box, b.area)
        assert np.allclose(a.centroid, b.centroid) and a.max_score == pytest.approx(b.max_score)
        assert a.mean_score == pytest.approx(b.mean_score, abs=1e-5)
    provisional = np.concatenate(labels)
    assert np.array_equal(lookup[provisional] > 0, kept)


def _write_pair(folder, reference, comparison, nodata=None):
    import rasterio
    from affine import Affine

    transform = Affine(10.0, 0.0, 448_000.0, 0.0, -10.0, 5_412_000.0)
    paths = []
    for name, image in (("ref.tif", reference), ("cmp.tif", comparison)):
        profile = {"driver": "GTiff", "width": image.shape[1], "height": image.shape[0], "count": 3,
                   "dtype": "uint8", "crs": "EPSG:32631", "transform": transform}
        if nodata is not None:
            profile["nodata"] = nodata
        with rasterio.open(folder / name, "w", **profile) as dst:
            dst.write(np.moveaxis(image, 2, 0))
        paths.append(folder / name)
    return paths


def test_windowed_geotiff_path_matches_the_in_memory_path(detector, patch_pair, tmp_path):
    rasterio = pytest.importorskip("rasterio")
    from changeseg.inference.geo import detect_geotiff_windowed
    from changeseg.inference.pipeline import DetectOptions, detect_to_folder, load_pair

    reference, comparison = patch_pair
    comparison = comparison.copy()
    reference = reference.copy()
    reference[:10, :20] = 0
    comparison[:10, :20] = 0  # nodata in both: unknown
    ref_path, cmp_path = _write_pair(tmp_path, reference, comparison, nodata=0)
    options = DetectOptions(tiling=TilingOptions(96, 24, 2), min_area=4)
    windowed = detect_geotiff_windowed(detector, ref_path, cmp_path, tmp_path / "windowed",
                                       tiling=options.tiling, min_area=4)
    pair = load_pair(ref_path, cmp_path, DetectOptions(tiling=options.tiling, min_area=4, windowed=False))
    in_memory = detect_to_folder(detector, pair, tmp_path / "memory", options)
    assert sorted(p.name for p in (tmp_path / "windowed").iterdir()) == [
        "mask.tif", "probability.tif", "regions.geojson", "regions.json"]  # no temporary files left
    assert windowed["region_count"] == in_memory["region_count"] > 0
    assert windowed["regions"] == in_memory["regions"]
    assert windowed["unknown_pixels"] == in_memory["unknown_pixels"] > 0
    with rasterio.open(tmp_path / "windowed" / "probability.tif") as a, \
            rasterio.open(tmp_path / "memory" / "probability.tif") as b:
        assert np.abs(a.read() - b.read()).max() < 1e-5
        assert a.crs == b.crs and a.transform == b.transform
    with rasterio.open(tmp_path / "windowed" / "mask.tif") as a, \
            rasterio.open(tmp_path / "memory" / "mask.tif") as b:
        mask = a.read(1)
        assert np.array_equal(mask, b.read(1)) and a.nodata == 255
        assert np.all(mask[:10, :20] == 255)
    whole = detect_pair(detector, reference, comparison, tiling=TilingOptions(96, 24, 2), min_area=4,
                        unknown=(reference == 0).all(axis=2) & (comparison == 0).all(axis=2))
    assert int(whole.mask.sum()) == windowed["changed_pixels"]
    stored = json.loads((tmp_path / "windowed" / "regions.json").read_text())
    assert stored["windowed"]["tile_size"] == 96 and stored["georeference"]["crs"] == "EPSG:32631"


def test_auto_uses_the_backend_directly_for_small_images(patch_pair):
    backend = PixelBackend()
    predict_proba_auto(backend, *patch_pair, TilingOptions(512))
    assert backend.calls == [(192, 256, 3)]


@pytest.mark.parametrize("classes", [2, 3, 4, 6])
def test_change_classes_is_the_argmax_of_the_change_classes(rng, classes):
    from changeseg.inference.tiling import change_classes

    probs = rng.random((classes, 300, 131)).astype(np.float32)
    probs[:, :9, :7] = 0.25  # ties: the lower class wins, as with argmax
    got = change_classes(probs, band_rows=64)
    assert got.dtype == np.uint8 and np.array_equal(got, probs[1:].argmax(axis=0) + 1)
