"""`changeseg detect` on real-world inputs: Sentinel-2 band folders, EXIF-rotated photos, bombs."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from PIL import Image

from changeseg.cli import detect
from changeseg.io.images import DEFAULT_MAX_PIXELS, read_image, write_png
from tests.conftest import require_real_data
from tests.io.test_header import png_claiming, radiance_hdr_bomb

OSCD_CITIES = ("bercy", "paris", "rennes")  # the cities shipped with their 13-band folders


def run(args: list[str], capsys) -> tuple[int, str, str]:
    code = detect.main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def mask_of(folder) -> np.ndarray:
    return read_image(folder / "mask.png")[:, :, 0] > 0


@pytest.fixture(scope="module")
def oscd():
    return require_real_data("oscd")


def test_sentinel2_band_folders_agree_with_the_png_renderings(oscd, tmp_path, capsys):
    """The aerial model was trained on OSCD's PNGs: its band-folder answer must match theirs."""
    for city in OSCD_CITIES:
        root = oscd / city
        base = ["--model", "aerial", "--precision", "fp32"]
        code, _, err = run([str(root / "img1.png"), str(root / "img2.png"),
                            "-o", str(tmp_path / city / "png"), *base], capsys)
        assert code == 0, err
        code, out, err = run([str(root / "imgs_1"), str(root / "imgs_2"), "--bands", "B04,B03,B02",
                              "-o", str(tmp_path / city / "bands"), *base], capsys)
        assert code == 0, err
        png, bands = mask_of(tmp_path / city / "png"), mask_of(tmp_path / city / "bands")
        agreement = float((png == bands).mean())
        assert agreement >= 0.95, f"{city}: band folders agree with the PNGs on {agreement:.1%} of pixels"
        assert abs(float(bands.mean()) - float(png.mean())) < 0.02, city
        summary = json.loads((tmp_path / city / "bands" / "regions.json").read_text())
        assert summary["changed_fraction"] == pytest.approx(float(bands.mean()), abs=1e-6)
    # the old scaling (uint16 / 65535) is what made them disagree: the test can tell the difference.
    # Compared on probabilities, since how a model's masks react to the wrong scaling is its own
    # (the aerial link 2 marked 88 % of bercy changed, links 3 and 5 nearly nothing).
    root = oscd / "bercy"
    probabilities = {}
    for scale, source in (("png", None), ("auto", "imgs"), ("dtype", "imgs")):
        bands = [str(root / "imgs_1"), str(root / "imgs_2"), "--bands", "B04,B03,B02", "--scale", scale]
        images = [str(root / "img1.png"), str(root / "img2.png")] if source is None else bands
        code, _, err = run([*images, "--model", "aerial", "--precision", "fp32", "--save-probability",
                            "-o", str(tmp_path / f"p-{scale}")], capsys)
        assert code == 0, err
        probabilities[scale] = read_image(tmp_path / f"p-{scale}" / "probability.png")[:, :, 0] / 255.0
    # correlation, not mean difference: change is sparse, so a map that is near 0 everywhere (what
    # ÷ 65535's nearly black images give aerial link 5) is close to the PNG's on average
    follows = {scale: float(np.corrcoef(probabilities[scale].ravel(), probabilities["png"].ravel())[0, 1])
               for scale in ("auto", "dtype")}
    assert follows["auto"] > 0.4 and follows["auto"] > follows["dtype"] + 0.3, follows  # 0.64 / 0.09


def test_windowed_band_folders_are_scaled_like_the_in_memory_path(oscd, tmp_path, capsys):
    import rasterio

    root = oscd / "paris"
    args = [str(root / "imgs_1"), str(root / "imgs_2"), "--bands", "B04,B03,B02", "--model", "aerial",
            "--precision", "fp32"]
    assert run([*args, "-o", str(tmp_path / "memory")], capsys)[0] == 0
    assert run([*args, "-o", str(tmp_path / "windows"), "--windowed"], capsys)[0] == 0
    with rasterio.open(tmp_path / "windows" / "mask.tif") as written:
        windowed = written.read(1) == 1
    assert float((windowed == mask_of(tmp_path / "memory")).mean()) > 0.99
    tiles = json.loads((tmp_path / "windows" / "regions.json").read_text())["windowed"]
    assert (tiles["tile_size"], tiles["tile_overlap"]) == (512, 64)  # the windowed default: less memory
    assert run([*args, "-o", str(tmp_path / "given"), "--windowed", "--tile-size", "300"], capsys)[0] == 0
    tiles = json.loads((tmp_path / "given" / "regions.json").read_text())["windowed"]
    assert (tiles["tile_size"], tiles["tile_overlap"]) == (300, 75)  # a given size is used as given


def test_windowed_image_files_take_the_windowed_tiles(tmp_path, rng, capsys):
    pair = [write_png(tmp_path / f"{name}.png", rng.integers(0, 256, (40, 56, 3), dtype=np.uint8))
            for name in ("a", "b")]
    code, _, err = run([*map(str, pair), "-m", "c3po-mobilenetv2-fcn", "--windowed", "-o",
                        str(tmp_path / "o")], capsys)
    assert code == 0, err
    tiles = json.loads((tmp_path / "o" / "regions.json").read_text())["windowed"]
    assert (tiles["tile_size"], tiles["tile_overlap"]) == (512, 64)


def test_bad_scaling_is_one_error_line(tmp_path, capsys):
    code, _, err = run(["a.png", "b.png", "--scale", "gamma", "-o", str(tmp_path / "o")], capsys)
    assert code != 0 and err.startswith("error: unknown scaling 'gamma'") and err.count("\n") == 1


def oriented_png(path, upright: np.ndarray, orientation: int = 6) -> None:
    """Store `upright` as a camera would: pixels rotated, plus the EXIF tag that undoes it."""
    stored = {6: np.rot90(upright, 1), 8: np.rot90(upright, -1), 3: np.rot90(upright, 2)}[orientation]
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(np.ascontiguousarray(stored)).save(path, exif=exif)


@pytest.fixture
def rotated_photo_pair(tmp_path, rng):
    """A non-square pair whose comparison is stored sideways with an EXIF orientation tag."""
    reference = rng.integers(0, 256, (48, 72, 3), dtype=np.uint8)
    comparison = reference.copy()
    comparison[10:30, 20:50] = 255 - comparison[10:30, 20:50]
    write_png(tmp_path / "ref.png", reference)
    write_png(tmp_path / "upright.png", comparison)
    oriented_png(tmp_path / "sideways.png", comparison)
    return tmp_path / "ref.png", tmp_path / "upright.png", tmp_path / "sideways.png"


def test_exif_rotated_comparison_is_read_upright(rotated_photo_pair, tmp_path, tiny_checkpoint, capsys):
    ref, upright, sideways = rotated_photo_pair
    assert Image.open(sideways).size == (48, 72)  # stored sideways: a size mismatch without the tag
    base = ["-m", str(tiny_checkpoint), "--precision", "fp32"]
    code, out, err = run([str(ref), str(sideways), "-o", str(tmp_path / "rotated"), *base], capsys)
    assert code == 0, err
    assert "of 72×48 pixels changed" in out
    assert run([str(ref), str(upright), "-o", str(tmp_path / "upright"), *base], capsys)[0] == 0
    assert np.array_equal(mask_of(tmp_path / "rotated"), mask_of(tmp_path / "upright"))
    assert mask_of(tmp_path / "rotated").any()


def test_exif_rotated_pairs_are_read_upright_in_batch(rotated_photo_pair, tmp_path, tiny_checkpoint, capsys):
    ref, _, sideways = rotated_photo_pair
    (tmp_path / "A").mkdir()
    (tmp_path / "B").mkdir()
    (tmp_path / "A" / "p.png").write_bytes(ref.read_bytes())
    (tmp_path / "B" / "p.png").write_bytes(sideways.read_bytes())
    code, _, err = run(["--ref-dir", str(tmp_path / "A"), "--cmp-dir", str(tmp_path / "B"),
                        "-o", str(tmp_path / "batch"), "-m", str(tiny_checkpoint), "--precision", "fp32"],
                       capsys)
    assert code == 0, err
    summary = json.loads((tmp_path / "batch" / "p" / "regions.json").read_text())
    assert (summary["width"], summary["height"]) == (72, 48)


def test_a_radiance_hdr_bomb_is_refused_fast_with_one_line(tmp_path, capsys):
    bomb = radiance_hdr_bomb(tmp_path / "bomb.hdr")
    good = write_png(tmp_path / "good.png", np.zeros((8, 8, 3), np.uint8))
    started = time.perf_counter()
    code, out, err = run([str(good), str(bomb), "-o", str(tmp_path / "o")], capsys)
    assert time.perf_counter() - started < 5.0  # no model is loaded, nothing is decoded
    assert code == 1 and out == ""
    assert err.startswith("error: comparison: not a readable image") and "Radiance HDR" in err
    assert err.count("\n") == 1 and not (tmp_path / "o").exists()


def test_pixel_limit_from_the_header_names_the_option(tmp_path, capsys):
    good = write_png(tmp_path / "good.png", np.zeros((40, 50, 3), np.uint8))
    claimed = tmp_path / "huge.png"
    claimed.write_bytes(png_claiming(20_000, 20_000))  # 400 megapixels declared in 70 bytes
    code, _, err = run([str(good), str(claimed), "-o", str(tmp_path / "o")], capsys)
    assert code == 1 and err.count("\n") == 1
    assert f"huge.png is 20000×20000 = 400000000 pixels; the limit is {DEFAULT_MAX_PIXELS} pixels" in err
    assert "--max-pixels" in err and "Traceback" not in err and "error: (-" not in err  # no OpenCV text
    code, _, err = run([str(good), str(good), "-o", str(tmp_path / "o"), "--max-pixels", "1000"], capsys)
    assert code == 1 and "good.png is 50×40 = 2000 pixels; the limit is 1000 pixels" in err


def test_cli_default_pixel_limit_is_the_librarys():
    assert detect.DEFAULT_MAX_PIXELS == DEFAULT_MAX_PIXELS
