"""The evaluated pairs a model trained on, from its recorded training (or validation) names."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from changeseg.data.datasets import open_dataset
from changeseg.evaluation.overlap import training_overlap


def _metadata(*sources: dict, init: dict | None = None) -> dict:
    return {"training": {"data": {"sources": list(sources)}, "init": init or {}}}


def _folder(root: Path, names: list[str]) -> Path:
    """A folder data set (A/, B/, label/) holding tiny pairs with these names."""
    for sub in ("A", "B", "label"):
        (root / sub).mkdir(parents=True, exist_ok=True)
        for name in names:
            Image.fromarray(np.zeros((4, 4), np.uint8)).save(root / sub / f"{name}.png")
    return root


def test_recorded_training_names_are_matched_by_format_and_folder_name() -> None:
    metadata = _metadata({"spec": "folder:../data/levir", "options": {}, "train": 2, "val": 1,
                          "train_names": ["a", "b"], "val_names": ["c"]},
                         {"spec": "folder:../data/other", "options": {}, "train": 1, "val": 0,
                          "train_names": ["d"], "val_names": []})
    found = training_overlap(metadata, "folder:/elsewhere/levir", ["a", "c", "d"])
    assert found.trained_on == ["a"] and found.sources == ["folder:../data/levir"]
    assert found.evaluated == 3 and not found.derived and not found.unchecked
    assert "TRAINED ON 1 of the 3 evaluated pairs (a)" in found.warnings()[0]
    assert training_overlap(metadata, "folder:/elsewhere/levir", ["c"]).warnings() == []
    assert training_overlap(metadata, "pcd:/elsewhere/levir", ["a"]).sources == []  # other format


def test_models_without_training_names_derive_them_from_validation_names(tmp_path: Path) -> None:
    root = _folder(tmp_path / "levir", ["a", "b", "c"])
    metadata = _metadata({"spec": "folder:../somewhere/levir", "options": {}, "train": 2, "val": 1,
                          "val_names": ["c"]}, init={"from": "runs/previous/best"})
    found = training_overlap(metadata, f"folder:{root}", open_dataset(f"folder:{root}").names)
    assert found.trained_on == ["a", "b"] and found.derived == ["folder:../somewhere/levir"]
    assert any("minus the recorded validation names" in note for note in found.notes())
    assert any("runs/previous/best" in note for note in found.notes())
    missing = training_overlap(metadata, f"folder:{tmp_path / 'nowhere' / 'levir'}", ["a"])
    assert missing.trained_on == [] and missing.unchecked
    assert "could not check the training pairs of folder:../somewhere/levir" in missing.warnings()[0]


def test_split_spellings_and_disjoint_splits() -> None:
    every_split = {"spec": "folder:x/cdd", "options": {}, "train": 2, "val": 0,
                   "train_names": ["train/1", "test/1"]}
    one_split = {"spec": "folder:x/cdd", "options": {"split": "train"}, "train": 1, "val": 0,
                 "train_names": ["1"]}
    # trained on every split ("test/1"), evaluated on the test split ("1"): the same pair
    test_split = {"split": "test"}
    assert training_overlap(_metadata(every_split), "folder:cdd", ["1"], test_split).trained_on == ["1"]
    # trained on the train split ("1"), evaluated on every split ("train/1"): the same pair
    found = training_overlap(_metadata(one_split), "folder:cdd", ["train/1", "test/1"])
    assert found.trained_on == ["train/1"]
    # trained on the train split, evaluated on the test split: "1" there is another pair
    assert training_overlap(_metadata(one_split), "folder:cdd", ["1"], test_split).trained_on == []


def test_synthetic_sources_and_untrained_models_are_not_compared() -> None:
    synthetic = {"spec": "synthetic:folder", "options": {}, "train": 10, "val": 2,
                 "val_names": ["synth_000000"]}
    assert training_overlap(_metadata(synthetic), "folder:folder", ["synth_000001"]).sources == []
    assert training_overlap({}, "folder:x", ["a"]).to_dict()["trained_on_count"] == 0
