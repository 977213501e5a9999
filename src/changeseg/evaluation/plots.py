"""The report's plots: the pixel precision-recall curve and F1 against threshold (Agg backend).

Legends sit below the axes, outside the plotting area, so they never cover a curve; the
F1-against-threshold axis spans the thresholds at which the counts change (where the data's
probabilities lie), widened to show the model's and the best threshold.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from changeseg.io.images import atomic_write


def _figure(width: float, height: float) -> Any:
    """A matplotlib Figure on an Agg canvas, laid out so an "outside" legend gets its own room."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _save_figure(figure: Any, path: Path) -> Path:
    return atomic_write(path, lambda tmp: figure.savefig(tmp, format="png", dpi=120))


def threshold_span(curve: Mapping[str, Any], marks: tuple[float, ...] = ()) -> tuple[float, float]:
    """The threshold range worth showing: where the sweep's counts change, and every mark.

    From the highest grid threshold at which every pixel is still predicted changed to the
    lowest at which none is, widened by one grid step on each side (within 0..1) and to
    include `marks` (e.g. the model's and the best threshold). (0, 1) when nothing varies.
    """
    thresholds = np.asarray(curve["thresholds"], dtype=np.float64)
    predicted = np.asarray(curve["tp"]) + np.asarray(curve["fp"])
    varying = np.flatnonzero(predicted != predicted[0])
    if varying.size == 0 or predicted[0] == 0:
        return 0.0, 1.0
    step = float(thresholds[1] - thresholds[0]) if thresholds.size > 1 else 0.0
    low = float(thresholds[max(varying[0] - 1, 0)])  # the last threshold predicting everything
    empty = np.flatnonzero(predicted == 0)
    high = float(thresholds[empty[0]]) if empty.size else float(thresholds[-1])
    low = min([low, *marks]) - step
    high = max([high, *marks]) + step
    return max(0.0, low), min(1.0, high)


def pr_figure(report: Mapping[str, Any]) -> Any:
    """The pixel precision-recall curve of a report's sweep, the model's and the best point marked."""
    sweep = report["protocols"]["sweep"]
    curve = sweep["curve"]
    thresholds = np.asarray(curve["thresholds"])
    precision = np.asarray(curve["precision"])
    recall = np.asarray(curve["recall"])
    own = int(np.argmin(np.abs(thresholds - report["threshold"])))
    best = int(np.argmin(np.abs(thresholds - report["best_threshold"])))

    figure = _figure(5, 5)
    ax = figure.add_subplot()
    defined = (np.asarray(curve["tp"]) + np.asarray(curve["fp"])) > 0
    ax.plot(recall[defined], precision[defined], color="tab:blue", label="pixels")
    ax.scatter([recall[own]], [precision[own]], color="tab:orange", zorder=3,
               label=f"threshold {thresholds[own]:.2f}")
    ax.scatter([recall[best]], [precision[best]], color="tab:green", marker="*", s=120,
               zorder=3, label=f"best F1 {report['best_f1']:.3f} @ {report['best_threshold']:.2f}")
    ap = sweep.get("average_precision")
    ax.set_title("Precision-recall" + (f" (AP {ap:.3f})" if ap is not None else ""))
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1.01)
    ax.set_ylim(0, 1.01)
    ax.grid(alpha=0.3)
    figure.legend(loc="outside lower center", ncols=2, fontsize=8, frameon=False)
    return figure


def f1_figure(report: Mapping[str, Any]) -> Any:
    """Pixel F1, precision and recall against threshold, on the span where they change."""
    curve = report["protocols"]["sweep"]["curve"]
    thresholds = np.asarray(curve["thresholds"])
    figure = _figure(5, 4.5)
    ax = figure.add_subplot()
    ax.plot(thresholds, np.asarray(curve["f1"]), color="tab:blue", label="F1")
    ax.plot(thresholds, np.asarray(curve["precision"]), color="tab:gray", lw=0.8, ls="--",
            label="precision")
    ax.plot(thresholds, np.asarray(curve["recall"]), color="tab:gray", lw=0.8, ls=":", label="recall")
    ax.axvline(report["threshold"], color="tab:orange",
               label=f"threshold {report['threshold']:.2f}: F1 {report['f1_at_threshold']:.3f}")
    ax.axvline(report["best_threshold"], color="tab:green", ls="--",
               label=f"best {report['best_threshold']:.2f}: F1 {report['best_f1']:.3f}")
    ax.set_xlabel("threshold")
    ax.set_ylabel("score")
    ax.set_title("Pixel F1 against threshold")
    ax.set_xlim(*threshold_span(curve, (float(report["threshold"]), float(report["best_threshold"]))))
    ax.set_ylim(0, 1.01)
    ax.grid(alpha=0.3)
    figure.legend(loc="outside lower center", ncols=2, fontsize=8, frameon=False)
    return figure


def plot_curves(report: Mapping[str, Any], out_dir: str | Path) -> dict[str, Path]:
    """Write ``pr_curve.png`` and ``f1_threshold.png`` from the report's sweep."""
    out = Path(out_dir)
    return {"pr_curve": _save_figure(pr_figure(report), out / "pr_curve.png"),
            "f1_threshold": _save_figure(f1_figure(report), out / "f1_threshold.png")}
