"""The lent-accelerator kit: tools/device_bundle.py packs recipe data small, the device recipes
load, and bench/train_on_device.sh + tools/device_unpack.sh run end to end (on the CPU here)."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from changeseg.data.datasets import open_dataset
from changeseg.io.checkpoints import load_checkpoint
from tests.conftest import require_real_data
from tests.tools.scripts import ROOT, load_script
from tests.training.train_helpers import write_pairs

device_bundle = load_script("tools/device_bundle.py")


def decode(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("L"))


def test_masks_stay_exact_and_photos_shrink() -> None:
    rng = np.random.default_rng(3)
    mask = np.zeros((64, 80), np.uint8)
    mask[10:30, 20:50] = 255
    data, kind = device_bundle.encode_image(mask, lossy_source=False)
    assert kind == "1-bit png" and (decode(data) == mask).all()
    labels = rng.choice(np.array([0, 1, 170], np.uint8), (64, 80))
    data, kind = device_bundle.encode_image(labels, lossy_source=False)
    assert kind == "png" and (np.asarray(Image.open(io.BytesIO(data))) == labels).all()
    # a binarised board stored as JPEG: ringing near black and white is removed ...
    ringing = np.clip(mask.astype(int) + rng.integers(-20, 21, mask.shape), 0, 255).astype(np.uint8)
    data, kind = device_bundle.encode_image(ringing, lossy_source=True)
    assert kind == "1-bit png" and (decode(data) == mask).all()
    # ... but a lossless file with those grey levels is a photograph, not a mask
    assert device_bundle.encode_image(ringing, lossy_source=False)[1] == "jpeg"
    photo = rng.integers(0, 256, (64, 80, 3), dtype=np.uint8)
    full, kind = device_bundle.encode_image(photo, lossy_source=False)
    assert kind == "jpeg"
    # smaller photographs where a call would not fit: lower quality, chroma at 4:2:0
    small, _ = device_bundle.encode_image(photo, lossy_source=False, quality=85, subsample_chroma=True)
    assert len(small) < 0.8 * len(full)
    assert Image.open(io.BytesIO(small)).size == (80, 64)


def test_packed_folder_reads_back_with_the_same_names_and_masks(tmp_path: Path) -> None:
    source = write_pairs(tmp_path / "src" / "pairs", count=4, size=96)
    (source / "imgs_1").mkdir()
    (source / "imgs_1" / "band.tif").write_bytes(b"not needed on the device")
    (source / "notes.txt").write_text("kept")
    before, after = device_bundle.pack_folder(source, tmp_path / "out" / "pairs")
    assert 0 < after < before
    assert not (tmp_path / "out" / "pairs" / "imgs_1").exists()
    assert (tmp_path / "out" / "pairs" / "notes.txt").read_text() == "kept"
    original = open_dataset(f"folder:{source}")
    packed = open_dataset(f"folder:{tmp_path / 'out' / 'pairs'}")
    assert packed.names == original.names
    for a, b in zip(original, packed, strict=True):
        assert (a["mask"] == b["mask"]).all()
        assert a["reference"].shape == b["reference"].shape
        # JPEG 95 on these noise images: the same picture, slightly off
        assert np.corrcoef(a["reference"].ravel(), b["reference"].ravel())[0, 1] > 0.95


def test_recipe_folders_and_the_carry_limit(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert device_bundle.recipe_folders(ROOT / "configs" / "device-pcb.yaml") == ["deeppcb"]
    assert device_bundle.recipe_folders(ROOT / "configs" / "device-aerial.yaml") == [
        "oscd", "airchange", "levir_samples", "dsifn_samples", "egy_ncc"]
    data = tmp_path / "data"
    write_pairs(data / "pairs", count=2)
    recipe = tmp_path / "r.yaml"
    recipe.write_text("data:\n  train:\n    - spec: folder:${CHANGESEG_DATA}/pairs\n")
    out = tmp_path / "packed"
    assert device_bundle.main([str(recipe), "--data", str(data), "--out", str(out), "--limit-mib", "1"]) == 1
    assert "over the 1 MiB a device call carries" in capsys.readouterr().err
    bad_quality = [str(recipe), "--data", str(data), "--out", str(out), "--jpeg-quality", "0"]
    assert device_bundle.main(bad_quality) == 1
    assert "--jpeg-quality must be 1-100" in capsys.readouterr().err
    assert device_bundle.main([str(recipe), "--data", str(tmp_path / "nowhere"), "--out", str(out)]) == 1
    assert "pairs not found" in capsys.readouterr().err


def test_device_recipes_load_and_start_from_weights_in_the_tree(monkeypatch: pytest.MonkeyPatch) -> None:
    from changeseg.training.recipe import load_recipe
    from changeseg.training.trainer import resolve_model_config

    monkeypatch.setenv("CHANGESEG_DATA", "/device/data")
    for name in ("pcb", "aerial"):
        recipe = load_recipe(ROOT / "configs" / f"device-{name}.yaml")
        assert recipe.model.init_from == f"src/changeseg/weights/{name}"
        assert (ROOT / recipe.model.init_from / "model.safetensors").is_file()
        # one network comes back (an ensemble's float16 file can pass the 16 MiB a file may have)
        assert resolve_model_config(recipe).get("ensemble", 1) == 1
        assert recipe.trainer.accelerator == "gpu" and recipe.trainer.max_time is not None
        assert recipe.output.storage_dtype == "float16"  # a returned file is at most 16 MiB


@pytest.mark.slow
def test_train_on_device_script_runs_on_packed_real_data(tmp_path: Path) -> None:
    """Pack DeepPCB, run the pcb device recipe for 2 CPU steps, unpack what it returns."""
    data = require_real_data()
    packed = tmp_path / "device-data"
    assert device_bundle.main([str(ROOT / "configs" / "device-pcb.yaml"), "--data", str(data),
                               "--out", str(packed), "--limit-mib", "1000"]) == 0
    board = open_dataset(f"deeppcb:{packed}/deeppcb")[0]
    assert board["reference"].shape == (640, 640, 1) and set(np.unique(board["reference"])) <= {0, 255}
    env = {**os.environ, "CHANGESEG_DATA": str(packed), "OUT": str(tmp_path / "returned"),
           "PYTHON": sys.executable, "DEVICE_OVERRIDES": (
               "trainer.accelerator=cpu trainer.max_steps=2 data.num_workers=0 data.batch_size=2 "
               "data.val_batch_size=1 trainer.limit_val_batches=2"), "RUN_ROOT": str(tmp_path / "run")}
    subprocess.run(["bash", str(ROOT / "bench" / "train_on_device.sh"), "pcb"], cwd=ROOT, env=env, check=True,
                   capture_output=True)
    returned = sorted(p.name for p in (tmp_path / "returned" / "pcb").iterdir())
    assert returned == ["best.config.json", "best.safetensors", "last.config.json", "last.safetensors",
                        "metrics.csv", "summary.json"]
    subprocess.run(["bash", str(ROOT / "tools" / "device_unpack.sh"), str(tmp_path / "returned"),
                    str(tmp_path / "runs")], check=True, capture_output=True)
    config, state = load_checkpoint(tmp_path / "runs" / "device-pcb" / "last")
    assert config.metadata["training"]["global_step"] == 2 and state
    assert (tmp_path / "runs" / "device-pcb" / "best" / "model.safetensors").is_file()


def test_images_with_an_exif_rotation_are_copied_as_they_are(tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    photo = np.random.default_rng(5).integers(0, 256, (40, 60, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° when shown
    Image.fromarray(photo).save(source / "turned.jpg", quality=100, exif=exif)
    Image.fromarray(photo).save(source / "plain.jpg", quality=100)
    device_bundle.pack_folder(source, tmp_path / "out")
    assert (tmp_path / "out" / "turned.jpg").read_bytes() == (source / "turned.jpg").read_bytes()
    assert (tmp_path / "out" / "plain.jpg").read_bytes() != (source / "plain.jpg").read_bytes()
