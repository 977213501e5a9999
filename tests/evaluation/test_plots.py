"""The report's plots: the threshold axis spans the data, legends never cover the curves."""

from __future__ import annotations

import numpy as np

from changeseg.evaluation.metrics import ThresholdSweep
from changeseg.evaluation.plots import f1_figure, pr_figure, threshold_span


def _report(probabilities: np.ndarray, labels: np.ndarray, threshold: float) -> dict:
    sweep = ThresholdSweep(threshold=threshold)
    sweep.update(probabilities, labels)
    result = sweep.compute()
    return {"threshold": threshold, "f1_at_threshold": result["f1_at_threshold"],
            "best_threshold": result["best_threshold"], "best_f1": result["best_f1"],
            "protocols": {"sweep": result}}


def _confident_report(rng: np.random.Generator) -> dict:
    # an uncalibrated model: every probability between 0.93 and 1, threshold 0.95
    labels = (rng.random((32, 32)) < 0.3).astype(np.uint8)
    probabilities = np.where(labels == 1, rng.uniform(0.96, 1.0, labels.shape),
                             rng.uniform(0.93, 0.98, labels.shape))
    return _report(probabilities, labels, 0.95)


def test_threshold_span_covers_where_the_counts_change(rng: np.random.Generator) -> None:
    report = _confident_report(rng)
    curve = report["protocols"]["sweep"]["curve"]
    low, high = threshold_span(curve, (0.95,))
    assert 0.9 <= low <= 0.93 and high == 1.0
    assert threshold_span(curve, (0.5,))[0] == 0.49  # a mark outside the data widens the span
    flat = {"thresholds": [0.0, 0.5, 1.0], "tp": [0, 0, 0], "fp": [0, 0, 0]}
    assert threshold_span(flat) == (0.0, 1.0)


def test_f1_axis_spans_the_data(rng: np.random.Generator) -> None:
    figure = f1_figure(_confident_report(rng))
    low, high = figure.axes[0].get_xlim()
    assert low >= 0.9 and high <= 1.0


def test_legends_lie_outside_the_axes(rng: np.random.Generator) -> None:
    report = _confident_report(rng)
    for figure in (pr_figure(report), f1_figure(report)):
        figure.canvas.draw()
        renderer = figure.canvas.get_renderer()
        (legend,) = figure.legends
        box, axes = legend.get_window_extent(renderer), figure.axes[0].get_window_extent(renderer)
        assert box.y1 <= axes.y0  # entirely below the plotting area
