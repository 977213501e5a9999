"""Tests of `changeseg synth`, run in-process."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from changeseg.cli import main as cli_main
from changeseg.cli.synth import main
from changeseg.io.images import read_image, write_png


@pytest.fixture
def photo_dir(tmp_path: Path, rng: np.random.Generator) -> Path:
    """A folder of three smooth random colour images standing in for photos."""
    folder = tmp_path / "photos"
    for number in range(3):
        low = rng.uniform(0, 255, (4, 6, 3)).astype(np.float32)
        image = cv2.resize(low, (160, 120), interpolation=cv2.INTER_CUBIC)
        write_png(folder / f"photo{number}.png", np.clip(image, 0, 255).astype(np.uint8))
    return folder


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error:")
    return lines[0]


def test_synth_writes_count_pairs(tmp_path, photo_dir, capsys):
    out = tmp_path / "set"
    code = main([str(out), "--count", "3", "--photos", str(photo_dir), "--size", "48",
                 "--seed", "7"])
    assert code == 0
    captured = capsys.readouterr()
    assert "wrote 3 pairs" in captured.out
    for folder in ("A", "B", "label", "label_typed"):
        files = sorted((out / folder).glob("*.png"))
        assert [f.name for f in files] == [f"synth_{i:06d}.png" for i in range(3)]
    assert read_image(out / "A" / "synth_000000.png").shape == (48, 48, 3)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["seed"] == 7 and meta["count"] == 3 and meta["size"] == 48
    assert meta["config"]["nuisance"] is True
    assert meta["photos"]["source"] == "folder"


def test_synth_is_reproducible_and_no_nuisance_is_honoured(tmp_path, photo_dir):
    args = ["--count", "2", "--photos", str(photo_dir), "--size", "48", "--quiet"]
    assert main([str(tmp_path / "a"), *args, "--no-nuisance", "--start", "4"]) == 0
    assert main([str(tmp_path / "b"), *args, "--no-nuisance", "--start", "4"]) == 0
    for name in ("synth_000004.png", "synth_000005.png"):
        for folder in ("A", "B", "label_typed"):
            np.testing.assert_array_equal(read_image(tmp_path / "a" / folder / name),
                                          read_image(tmp_path / "b" / folder / name))
    meta = json.loads((tmp_path / "a" / "meta.json").read_text())
    assert meta["config"]["nuisance"] is False and meta["start"] == 4


def test_synth_missing_photo_folder_is_one_line_error(tmp_path, capsys):
    missing = tmp_path / "no-such-folder"
    code = main([str(tmp_path / "out"), "--count", "2", "--photos", str(missing)])
    assert code != 0
    line = one_error_line(capsys.readouterr().err)
    assert "photo folder not found" in line and str(missing) in line
    assert not (tmp_path / "out" / "meta.json").exists()


def test_synth_refuses_existing_set_without_overwrite(tmp_path, photo_dir, capsys):
    args = [str(tmp_path), "--count", "1", "--photos", str(photo_dir), "--size", "32", "-q"]
    assert main(args) == 0
    capsys.readouterr()
    assert main(args) != 0
    assert "--overwrite" in one_error_line(capsys.readouterr().err)
    assert main([*args, "--overwrite"]) == 0


def test_synth_bad_count_is_one_line_error(tmp_path, capsys):
    assert main([str(tmp_path), "--count", "0"]) != 0
    assert "--count" in one_error_line(capsys.readouterr().err)


def test_synth_help_through_the_changeseg_group(capsys):
    assert cli_main.main(["synth", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--count" in out and "--photos" in out and "--no-nuisance" in out


def test_synth_pastes_objects_and_writes_a_preview(tmp_path, photo_dir, rng, capsys):
    from PIL import Image

    objects = tmp_path / "cutouts"
    objects.mkdir()
    for number in range(2):
        rgba = np.zeros((40, 30, 4), np.uint8)
        rgba[:, :, :3] = rng.integers(0, 256, 3)
        rgba[5:35, 5:25, 3] = 255
        Image.fromarray(rgba, "RGBA").save(objects / f"thing{number}.png")
    out, sheet = tmp_path / "set", tmp_path / "sheet.png"
    code = main([str(out), "-n", "3", "-p", str(photo_dir), "-p", str(photo_dir), "-O",
                 str(objects), "--size", "64", "--preview", str(sheet), "-q"])
    assert code == 0, capsys.readouterr().err
    meta = json.loads((out / "meta.json").read_text())
    assert meta["objects"]["count"] == 2
    assert meta["photos"]["count"] == 6  # the folder given twice
    image = read_image(sheet)
    assert image.shape[0] >= 160 and image.shape[1] > 2 * 3 * 160  # 2 columns of 3 views
    code = main([str(tmp_path / "set2"), "-n", "1", "-p", str(photo_dir), "-O",
                 str(tmp_path / "nothing")])
    assert code != 0
    assert "object folder not found" in one_error_line(capsys.readouterr().err)
