"""The evaluation loop (`changeseg.evaluation.runner.evaluate`) and the report folder it writes."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch

from changeseg.errors import InputError
from changeseg.evaluation.overlap import TrainingOverlap
from changeseg.evaluation.runner import evaluate
from tests.evaluation.hand_cases import LABEL_A, LABEL_B, PROB_A, PROB_B

approx = pytest.approx


def _sample(name: str, label: np.ndarray, prob: np.ndarray, **extra: object) -> dict:
    """A sample whose comparison image carries the probability the fake model returns."""
    h, w = label.shape
    reference = (np.arange(h * w * 13, dtype=np.uint16).reshape(h, w, 13) * 97)  # 13-band uint16
    comparison = np.zeros((h, w, 3), np.float64)  # float64 keeps 0.35 exactly 0.35
    comparison[:, :, 0] = prob
    return {"reference": reference, "comparison": comparison, "mask": label, "name": name, **extra}


def _predict(reference: np.ndarray, comparison: np.ndarray) -> np.ndarray:
    return comparison[:, :, 0].astype(np.float64)


# Image A (hand_cases): TP 3, FP 1, FN 2, TN 10 → F1 2/3. Image B (hand_cases): no change,
# nothing predicted (TN 16): F1 0 by the zero rule, but a perfect image.
# Image C: no change, two false alarms (FP 2, TN 14): F1 0, the worst image.
LABEL_C = np.zeros((4, 4), np.uint8)
PROB_C = np.full((4, 4), 0.1)
PROB_C[3, 2:] = 0.7


def _dataset() -> list[dict]:
    return [_sample("a", LABEL_A, PROB_A), _sample("b", LABEL_B, PROB_B),
            _sample("c/odd name", LABEL_C, PROB_C)]


def test_evaluate_writes_a_well_formed_report(tmp_path: Path) -> None:
    out = tmp_path / "report"
    result = evaluate(_predict, _dataset(), out_dir=out, worst_k=8, progress=False,
                      metadata={"model": "toy", "data": "folder:/nowhere"})
    # hand values over A, B, C: TP 3, FP 1+2, FN 2 → global F1 6/11; c3po (2/3 + 0 + 0)/3
    assert result["images"] == 3
    assert result["f1_at_threshold"] == approx(6 / 11)
    assert result["protocols"]["global"]["f1"] == approx(6 / 11)
    assert result["protocols"]["c3po"]["f1"] == approx(2 / 9, abs=1e-6)
    assert result["counts"] == {"tp": 3, "fp": 3, "fn": 2, "tn": 40, "ignored": 0}

    names = {p.name for p in out.iterdir()}
    assert {"metrics.json", "metrics.md", "per_image.csv", "pr_curve.png", "f1_threshold.png",
            "worst"} <= names
    assert not [n for n in names if n.endswith(".tmp")]

    payload = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert payload["metadata"] == {"model": "toy", "data": "folder:/nowhere"}
    assert set(payload["protocols"]) == {"c3po", "global", "sweep"}
    assert payload["threshold"] == 0.5
    assert payload["best_f1"] >= payload["f1_at_threshold"]
    assert "per_image" not in payload
    assert payload["protocols"]["global"]["counts"]["fp"] == 3

    with open(out / "per_image.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["name"] for r in rows] == ["a", "b", "c/odd name"]
    assert float(rows[0]["f1"]) == approx(2 / 3, abs=1e-6)
    assert float(rows[0]["iou"]) == approx(0.5, abs=1e-6)
    assert (rows[0]["true_changed_pixels"], rows[0]["predicted_changed_pixels"]) == ("5", "4")
    assert rows[2]["fp"] == "2"

    markdown = (out / "metrics.md").read_text(encoding="utf-8")
    for protocol in ("`c3po`", "`global`", "`sweep`"):
        assert protocol in markdown
    assert "folder:/nowhere" in markdown

    for png in ("pr_curve.png", "f1_threshold.png"):
        image = cv2.imread(str(out / png))
        assert image is not None and image.ndim == 3
    panels = sorted((out / "worst").iterdir())
    # worst first: C (false alarms), then A (F1 2/3), then B (nothing to find, nothing found)
    assert [p.name for p in panels] == ["01_c_odd_name.png", "02_a.png", "03_b.png"]
    panel = cv2.imread(str(panels[0]))
    assert panel is not None and panel.shape[2] == 3 and panel.shape[1] > panel.shape[0]
    assert set(result["files"]) >= {"metrics_json", "metrics_md", "per_image_csv", "pr_curve",
                                    "f1_threshold", "worst_01"}


def test_best_threshold_is_reported_apart_from_the_model_threshold() -> None:
    # changed p = 0.9, 0.8, 0.35; unchanged p = 0.7, 0.2, 0.1, 0.05 (see test_metrics):
    # at the model's 0.5, F1 = 4/6; best F1 6/7 at 0.35
    label = np.array([[1, 1, 1, 0, 0, 0, 0]], np.uint8)
    prob = np.array([[0.9, 0.8, 0.35, 0.7, 0.2, 0.1, 0.05]])
    result = evaluate(_predict, [_sample("x", label, prob)], progress=False)
    assert result["f1_at_threshold"] == approx(4 / 6)
    assert result["best_threshold"] == 0.35
    assert result["best_f1"] == approx(6 / 7)
    assert result["best_threshold_range"] == [0.21, 0.35]


def test_rewriting_a_report_drops_stale_panels(tmp_path: Path) -> None:
    evaluate(_predict, _dataset(), out_dir=tmp_path, worst_k=3, progress=False)
    (tmp_path / "worst" / "notes.txt").write_text("mine")
    evaluate(_predict, _dataset(), out_dir=tmp_path, worst_k=1, progress=False)
    assert sorted(p.name for p in (tmp_path / "worst").iterdir()) == ["01_c_odd_name.png",
                                                                      "notes.txt"]


def test_generator_tensors_result_objects_and_boxes(tmp_path: Path) -> None:
    # a generator has no len; the model returns a result object holding a torch tensor; the
    # samples carry boxes, so the boxes protocol joins in by default
    def samples():
        label = np.zeros((8, 8), np.uint8)
        label[1:4, 1:4] = 1
        prob = np.where(label == 1, 0.9, 0.05)
        for i in range(2):
            yield _sample(f"s{i}", label, prob, boxes=np.array([[1, 1, 3, 3, 2]]))

    def predict(reference, comparison):
        return SimpleNamespace(probability=torch.from_numpy(comparison[:, :, 0].copy()))

    result = evaluate(predict, samples(), out_dir=tmp_path, progress=True, worst_k=1)
    assert list(result["protocols"]) == ["c3po", "global", "boxes", "sweep"]
    assert result["protocols"]["boxes"]["f1"] == 1.0
    assert result["protocols"]["boxes"]["counts"] == {"matched": 2, "predicted": 2,
                                                      "ground_truth": 2}
    with open(tmp_path / "per_image.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 2 and rows[0]["matched_boxes"] == "1"


def test_multiclass_report_names_classes(tmp_path: Path) -> None:
    label = np.array([[0, 1, 2], [0, 1, 2]], np.uint8)
    prob = np.full((3, 2, 3), 0.1)
    for y, x, k in [(0, 0, 0), (0, 1, 1), (0, 2, 1), (1, 0, 2), (1, 1, 1), (1, 2, 2)]:
        prob[k, y, x] = 0.8
    sample = {"reference": np.zeros((2, 3, 3), np.uint8), "comparison": np.zeros((2, 3, 3)),
              "mask": label, "name": "m"}
    result = evaluate(lambda r, c: prob, [sample], out_dir=tmp_path, progress=False,
                      class_names=["none", "appear", "disappear"])
    assert result["num_classes"] == 3
    assert result["protocols"]["global"]["miou"] == approx(0.5)
    assert result["protocols"]["global"]["kappa"] == approx(0.5)
    markdown = (tmp_path / "metrics.md").read_text(encoding="utf-8")
    assert "| disappear | 0.3333 |" in markdown


def test_unconverted_masks_raise_a_warning() -> None:
    label = np.zeros((4, 4), np.uint8)
    label[:2] = 255  # a 0/255 mask handed in as it is: all its change becomes "ignored"
    result = evaluate(_predict, [_sample("raw", label, PROB_A)], progress=False)
    assert any("0/255" in note for note in result["warnings"])


def test_bad_datasets_raise_input_error() -> None:
    with pytest.raises(InputError, match="no samples"):
        evaluate(_predict, [], progress=False)
    with pytest.raises(InputError, match="missing mask"):
        evaluate(_predict, [{"reference": 0, "comparison": 0}], progress=False)
    with pytest.raises(InputError, match="mask is 4×4"):
        evaluate(lambda r, c: np.zeros((3, 3)), [_sample("a", LABEL_A, PROB_A)], progress=False)


def test_training_overlap_is_reported_and_warned(tmp_path: Path) -> None:
    overlap = TrainingOverlap(evaluated=3, trained_on=["a"], sources=["folder:x"])
    result = evaluate(_predict, _dataset(), out_dir=tmp_path, progress=False, worst_k=0,
                      training_overlap=overlap)
    assert result["training_overlap"]["trained_on"] == ["a"]
    assert any("TRAINED ON 1 of the 3" in note for note in result["warnings"])
    payload = json.loads((tmp_path / "metrics.json").read_text(encoding="utf-8"))
    assert payload["training_overlap"]["trained_on_count"] == 1
    markdown = (tmp_path / "metrics.md").read_text(encoding="utf-8")
    assert "## Training overlap" in markdown and "**1 of the 3 evaluated pairs" in markdown
    clean = evaluate(_predict, _dataset(), progress=False,
                     training_overlap=TrainingOverlap(evaluated=3, sources=["folder:x"]))
    assert not any("TRAINED ON" in note for note in clean["warnings"])
