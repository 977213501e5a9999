"""The three models shipped in the package, on the example pairs changeseg draws itself.

Each check would fail for an untrained or broken model (which finds nothing or everything).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from changeseg.data.datasets.deeppcb import read_boxes
from changeseg.inference.predictor import ChangeDetector
from changeseg.io.checkpoints import packaged_models
from changeseg.io.images import read_mask

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def overlap(truth: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """IoU, precision and recall of a predicted mask against a true one."""
    both = float((truth & predicted).sum())
    return {"iou": both / max(float((truth | predicted).sum()), 1.0),
            "precision": both / max(float(predicted.sum()), 1.0),
            "recall": both / max(float(truth.sum()), 1.0)}


def predict_example(model: str, example: str):
    detector = ChangeDetector.from_pretrained(model)
    assert detector.trained and detector.config.metadata["training"]["recipe_name"] == model
    folder = EXAMPLES / example
    return detector, detector.predict(folder / "reference.png", folder / "comparison.png")


def test_all_three_models_are_packaged():
    assert {"default", "pcb", "aerial"} <= set(packaged_models())


def test_aerial_finds_new_and_demolished_buildings_not_the_season():
    _, result = predict_example("aerial", "aerial")
    scores = overlap(read_mask(EXAMPLES / "aerial" / "truth.png") > 0, result.mask)
    # measured when packaged: precision 0.998, recall 0.414; the seasonal shift is not change
    assert scores["precision"] > 0.8 and scores["recall"] > 0.25, scores


def test_default_is_typed_and_finds_the_example_changes():
    detector, result = predict_example("default", "coffee")
    assert detector.class_names == ["unchanged", "appear", "disappear", "exchange"]
    folder = EXAMPLES / "coffee"
    scores = overlap(read_mask(folder / "truth.png") > 0, result.mask)
    assert scores["iou"] > 0.6, scores  # 0.85 when packaged; untrained or broken: near 0
    typed_truth = read_mask(folder / "truth_typed.png")
    assert result.class_map is not None
    # each of the three objects is typed right: 100 % of each one's detected pixels when
    # packaged (a swap-symmetric network could not tell appear from disappear here)
    for code in (1, 2, 3):
        detected = (typed_truth == code) & result.mask
        assert detected.sum() > 0.5 * (typed_truth == code).sum(), code
        assert (result.class_map[detected] == code).mean() > 0.8, code
    assert sorted(r.label for r in result.regions) == ["appear", "disappear", "exchange"]


def test_pcb_finds_the_drawn_defects_without_false_alarms():
    detector, result = predict_example("pcb", "pcb")
    assert detector.config.metadata["min_area"] == 300
    assert detector.config.model["ensemble"] == 2  # the shipped run and a second seed, logits averaged
    truth = read_boxes(EXAMPLES / "pcb" / "boxes.txt")
    boxes = np.array([r.box for r in result.regions]).reshape(-1, 4)  # x0, y0, x1, y1 (exclusive)
    # a region "finds" a defect when their boxes overlap (the drawn boxes are tighter than
    # DeepPCB's, so the protocol's IoU > 0.33 is not the right test here)
    hits = ((boxes[:, None, 0] <= truth[None, :, 2]) & (truth[None, :, 0] < boxes[:, None, 2])
            & (boxes[:, None, 1] <= truth[None, :, 3]) & (truth[None, :, 1] < boxes[:, None, 3]))
    # measured when packaged: 4 of the 6 defects found (open, short, spur, spurious copper),
    # every region on a defect; the mousebite and the pin-hole are missed
    assert hits.any(axis=0).sum() >= 4, hits
    assert hits.any(axis=1).all(), "a region on defect-free copper"


def test_default_fixed_camera_calibration_finds_more_of_a_held_out_scene():
    """The `fixed-camera` domain of `default`, on frames of a scene it was fitted on but never
    trained on (HallAndMonitor): at the same threshold it marks more of the moving people.
    Measured when packaged, these 4 pairs: F1 0.720 -> 0.814 (docs/models.md has scenes the fit
    did not see)."""
    from changeseg.data.datasets import open_dataset
    from tests.conftest import require_real_data

    root = require_real_data("surveillance", "sbi2015")
    detector = ChangeDetector.from_pretrained("default")
    entry = detector.config.metadata["domains"]["fixed-camera"]
    assert entry["best_f1_threshold_before"] < 0.25 < entry["best_f1_threshold_after"] < 0.45
    pairs = open_dataset(f"sbi2015:{root}", scenes=["HallAndMonitor"], pairs_per_scene=4)
    counts = {None: np.zeros(3), "fixed-camera": np.zeros(3)}
    for sample in (pairs[i] for i in range(len(pairs))):
        valid = sample["mask"] != 255
        truth = (sample["mask"] != 0) & valid
        for domain in counts:
            mask = detector.predict(sample["reference"], sample["comparison"], domain=domain).mask & valid
            counts[domain] += [(mask & truth).sum(), (mask & ~truth).sum(), (~mask & truth).sum()]
    f1 = {domain: 2 * tp / (2 * tp + fp + fn) for domain, (tp, fp, fn) in counts.items()}
    assert f1["fixed-camera"] > f1[None] + 0.03, f1
