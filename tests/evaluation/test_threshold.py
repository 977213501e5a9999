"""A model's threshold re-chosen as the best-F1 threshold on its run's validation pairs."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from changeseg.evaluation.threshold import choose_threshold
from tests.training.train_helpers import write_pairs


class SquareFinder:
    """A stand-in model: change probability 0.3 where the images differ much, 0.1 elsewhere."""

    config = SimpleNamespace(threshold=0.5)

    def prepare(self, image: np.ndarray, name: str) -> np.ndarray:
        return np.asarray(image, np.float32)

    def predict_proba(self, reference: np.ndarray, comparison: np.ndarray) -> np.ndarray:
        change = np.where(np.abs(comparison - reference).mean(axis=2) > 40, 0.3, 0.1)
        return np.stack([1 - change, change]).astype(np.float32)


def model_folder(tmp_path: Path) -> Path:
    """A model folder whose config.json holds threshold 0.5, for `choose_threshold` to rewrite."""
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"threshold": 0.5, "metadata": {}}))
    return model


def test_the_threshold_is_the_best_f1_one_on_the_validation_pairs(tmp_path: Path) -> None:
    pairs = write_pairs(tmp_path / "pairs", count=4, size=32, seed=0)
    model = model_folder(tmp_path)
    sources = [{"spec": f"folder:{pairs}", "options": {}, "val_names": ["pair_01", "pair_03"]},
               {"spec": "synthetic", "options": {}, "val_names": ["synth_000000"]}]  # not read
    chosen = choose_threshold(SquareFinder(), model, sources)
    # every threshold in (0.1, 0.3] finds exactly the squares; the one nearest 0.5 is kept
    assert chosen == {"threshold": 0.3, "f1": 1.0, "pairs": 2, "on": "validation"}
    config = json.loads((model / "config.json").read_text())
    assert config["threshold"] == 0.3
    assert config["metadata"]["threshold_choice"]["previous"] == 0.5
    assert choose_threshold(SquareFinder(), model, sources[1:]) is None  # nothing to choose on


def test_a_run_without_validation_pairs_may_choose_on_its_training_pairs(tmp_path: Path) -> None:
    pairs = write_pairs(tmp_path / "pairs", count=3, size=32, seed=1)
    model = model_folder(tmp_path)
    sources = [{"spec": f"folder:{pairs}", "options": {}, "val_names": [],
                "train_names": ["pair_00", "pair_02"]}]
    assert choose_threshold(SquareFinder(), model, sources) is None  # validation pairs only
    assert json.loads((model / "config.json").read_text())["threshold"] == 0.5
    chosen = choose_threshold(SquareFinder(), model, sources, training_fallback=True)
    assert chosen == {"threshold": 0.3, "f1": 1.0, "pairs": 2, "on": "training"}
    config = json.loads((model / "config.json").read_text())
    assert config["threshold"] == 0.3
    assert config["metadata"]["threshold_choice"]["rule"] == "best F1 on the run's training pairs"


class HalfFinder(SquareFinder):
    """The same model seen at another scale: the squares' change probability is 0.25, not 0.3."""

    def predict_proba(self, reference: np.ndarray, comparison: np.ndarray) -> np.ndarray:
        probs = super().predict_proba(reference, comparison)
        change = np.where(probs[1] > 0.2, 0.25, probs[1])
        return np.stack([1 - change, change]).astype(np.float32)


def test_training_pairs_are_scored_by_the_1x_detector_when_one_is_given(tmp_path: Path) -> None:
    pairs = write_pairs(tmp_path / "pairs", count=3, size=32, seed=1)
    model = model_folder(tmp_path)
    training = [{"spec": f"folder:{pairs}", "options": {}, "val_names": [],
                 "train_names": ["pair_00", "pair_02"]}]
    chosen = choose_threshold(SquareFinder(), model, training, training_fallback=True,
                              training_detector_1x=HalfFinder())
    # the squares sit at 0.25 at 1×: the threshold nearest 0.5 that finds them is 0.25, not 0.3
    assert chosen == {"threshold": 0.25, "f1": 1.0, "pairs": 2, "on": "training"}
    config = json.loads((model / "config.json").read_text())
    assert config["metadata"]["threshold_choice"]["rule"] == "best F1 on the run's training pairs at 1x"
    # validation pairs are new to the model: they are scored at its own scales, as before
    validation = [{"spec": f"folder:{pairs}", "options": {}, "val_names": ["pair_01"],
                   "train_names": ["pair_00"]}]
    chosen = choose_threshold(SquareFinder(), model, validation, training_fallback=True,
                              training_detector_1x=HalfFinder())
    assert chosen is not None and chosen["threshold"] == 0.3 and chosen["on"] == "validation"
