"""Run a model over a data set, score it with every protocol, and write a report folder.

:func:`evaluate` is the library entry point behind ``changeseg evaluate``: it calls
``predict(reference, comparison)`` on every sample, feeds the probability map to the
protocol accumulators of :mod:`changeseg.training.metrics`, and, given ``out_dir``, writes
(each file atomically)::

    out_dir/
      metrics.json      every protocol's numbers, threshold, best threshold, counts, metadata
      metrics.md        a Markdown table, one row per protocol
      per_image.csv     one row per image: precision, recall, F1, IoU, pixel counts
      pr_curve.png      pixel precision-recall curve over the threshold grid
      f1_threshold.png  pixel F1 against threshold, model threshold and best threshold marked
      worst/NN_<name>.png  the worst images by F1: reference | comparison | truth | prediction
"""

from __future__ import annotations

import csv
import datetime as _dt
import heapq
import io
import math
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from changeseg.errors import InputError
from changeseg.io.images import atomic_write, to_uint8_rgb, write_json, write_png
from changeseg.training.metrics import (
    DEFAULT_PROTOCOLS,
    IGNORE_INDEX,
    PixelCounts,
    PreparedImage,
    build_metrics,
    exact_scores,
    prepare_image,
)

REPORT_SCHEMA = "changeseg.evaluation/1"
"""The ``schema`` field of ``metrics.json``; bumped when its layout changes incompatibly."""

Predict = Callable[[Any, Any], Any]
"""``predict(reference, comparison)`` → H×W change probability or C×H×W class probabilities
(numpy array, torch tensor, or an object with a ``probability`` attribute)."""

_PANEL_TITLES = ("reference", "comparison", "ground truth", "prediction")
_GREY = (96, 96, 96)
_FP = (230, 40, 40)  # red: predicted change where there is none
_FN = (40, 140, 255)  # blue: missed change
_PALETTE = np.array([
    (0, 0, 0), (255, 255, 255), (230, 40, 40), (40, 140, 255), (60, 200, 60), (250, 200, 30),
    (190, 70, 220), (30, 210, 210), (250, 130, 40), (150, 150, 255), (120, 80, 40),
], dtype=np.uint8)


# --------------------------------------------------------------------------------------------
# Evaluation loop
# --------------------------------------------------------------------------------------------


def evaluate(
    predict: Predict,
    dataset: Iterable[Mapping[str, Any]],
    protocols: Sequence[str] | None = None,
    threshold: float = 0.5,
    out_dir: str | Path | None = None,
    worst_k: int = 8,
    progress: bool = True,
    *,
    metadata: Mapping[str, Any] | None = None,
    options: Mapping[str, Mapping[str, Any]] | None = None,
    class_names: Sequence[str] | None = None,
    total: int | None = None,
    panel_size: int = 384,
    typed_by_threshold: bool = False,
) -> dict[str, Any]:
    """Score ``predict`` on every sample of ``dataset`` with the chosen protocols.

    Args:
        predict: ``predict(reference, comparison)`` returning the H×W change probability (or
            C×H×W class probabilities for multi-class models); a torch tensor or an object
            with a ``probability`` attribute (a detector's result) is accepted too.
        dataset: an iterable of samples ``{"reference", "comparison", "mask", "name"}`` with an
            optional ``"boxes"`` (N×4/N×5 ground-truth boxes, for the ``boxes`` protocol).
            Masks hold class indices, 255 = ignored.
        protocols: names from ``c3po``, ``global``, ``boxes``, ``sweep``. None runs ``c3po``,
            ``global`` and ``sweep``, plus ``boxes`` when the first sample carries boxes. The
            ``sweep`` is always run (it gives the best threshold and the plots).
        threshold: the model's decision threshold (binary tasks; multi-class uses the argmax).
        out_dir: when given, the report folder to write (created if needed; files replaced).
        worst_k: how many worst images (lowest F1) get a side-by-side panel in ``worst/``.
        progress: show a progress bar (rich) on stderr.
        metadata: free-form facts recorded in ``metrics.json`` (model name or path, data spec
            such as ``"deeppcb:/data/deeppcb"``, split, command line, …).
        options: per-protocol options, e.g. ``{"boxes": {"min_area": 4}}`` (see
            :func:`changeseg.training.metrics.build_metrics`).
        class_names: names for per-class IoU (default ``unchanged``, ``changed`` / ``class_i``).
        total: number of samples for the progress bar when ``len(dataset)`` is not defined.
        panel_size: longest side, in pixels, of each tile of a worst-image panel.
        typed_by_threshold: score C > 2 class probabilities as changeseg predicts them (change
            where ``1 − p(class 0) ≥ threshold``, typed by the most likely change class), not
            by the plain argmax (see :func:`changeseg.training.metrics.prepare_image`).

    Returns:
        The report as a dict: ``threshold``, ``f1_at_threshold`` (pixel F1 of the model's own
        prediction over the whole set), ``best_threshold``/``best_f1`` (from the sweep),
        ``images``, ``num_classes``, ``protocols`` (each protocol's ``compute()``),
        ``per_image`` (the rows of ``per_image.csv``), ``metadata``, ``seconds``, and with
        ``out_dir`` also ``files`` (name → path written).

    Raises:
        InputError: on an empty data set, a sample without a needed key, a prediction whose
            shape differs from its mask, or an unknown protocol.
    """
    iterator = iter(dataset)
    try:
        first = next(iterator)
    except StopIteration:
        raise InputError("the data set yielded no samples") from None
    names = _choose_protocols(protocols, first)
    options = dict(options or {})
    if class_names is not None:
        for name in ("c3po", "global"):
            if name in names:
                options.setdefault(name, {})
                options[name] = {"class_names": list(class_names), **options[name]}
    metrics = build_metrics(names, threshold=threshold, options=options)
    if total is None:
        try:
            total = len(dataset)  # type: ignore[arg-type]
        except TypeError:
            total = None

    rows: list[dict[str, Any]] = []
    worst = _WorstImages(worst_k, panel_size)
    totals = np.zeros(4, dtype=np.int64)  # tp, fp, fn, tn of the model's own prediction
    num_classes: int | None = None
    started = time.perf_counter()
    predict_seconds = 0.0

    def samples() -> Iterable[Mapping[str, Any]]:
        yield first
        yield from iterator

    with _progress_bar(progress, total) as advance:
        for index, sample in enumerate(samples()):
            reference, comparison, mask, name, boxes = _unpack(sample, index)
            tick = time.perf_counter()
            output = predict(reference, comparison)
            predict_seconds += time.perf_counter() - tick
            probability = getattr(output, "probability", output)
            image = prepare_image(probability, mask, threshold, name=name, boxes=boxes,
                                  typed_by_threshold=typed_by_threshold)
            if num_classes is None:
                num_classes = image.num_classes
            elif image.num_classes != num_classes:
                raise InputError(f"{name}: the model returned {image.num_classes} classes "
                                 f"here but {num_classes} before")
            counts = PixelCounts.of(image)
            totals += (counts.tp, counts.fp, counts.fn, counts.tn)
            row = _per_image_row(image, counts)
            for metric in metrics.values():
                extra = metric.update_prepared(image)
                if extra:
                    row.update(extra)
            rows.append(row)
            worst.offer(row, counts, reference, comparison, image)
            advance(f"F1 {exact_scores(*totals[:3].tolist())['f1']:.3f}")

    results = {name: metric.compute() for name, metric in metrics.items()}
    sweep = results["sweep"]
    tp, fp, fn, tn = (int(v) for v in totals)
    report: dict[str, Any] = {
        "schema": REPORT_SCHEMA,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "threshold": float(threshold),
        "f1_at_threshold": exact_scores(tp, fp, fn, tn)["f1"],
        "best_threshold": sweep["best_threshold"],
        "best_f1": sweep["best_f1"],
        "best_threshold_range": sweep["best_threshold_range"],
        "images": len(rows),
        "num_classes": num_classes,
        "counts": {"tp": tp, "fp": fp, "fn": fn, "tn": tn,
                   "ignored": int(sum(r["ignored_pixels"] for r in rows))},
        "protocols": results,
        "metadata": dict(metadata or {}),
        "seconds": round(time.perf_counter() - started, 3),
        "predict_seconds_per_image": round(predict_seconds / max(len(rows), 1), 4),
        "per_image": rows,
    }
    report["warnings"] = _warnings(report)
    if out_dir is not None:
        report["files"] = write_report(report, out_dir, worst.panels())
    return report


def _warnings(report: Mapping[str, Any]) -> list[str]:
    """Plain-language warnings about data that makes the numbers meaningless."""
    counts = report["counts"]
    notes = []
    if counts["tp"] + counts["fn"] == 0:
        notes.append("no pixel of the labels is change: precision, recall and F1 are 0 by "
                     "definition")
        if counts["ignored"]:
            notes.append(f"{counts['ignored']} label pixels are 255 (ignored) and none is 1: "
                         "masks must hold class indices (0/1), not 0/255")
    return notes


def _choose_protocols(protocols: Sequence[str] | None, first: Mapping[str, Any]) -> list[str]:
    if isinstance(protocols, str):
        protocols = [p.strip() for p in protocols.split(",") if p.strip()]
    if protocols is None:
        names = list(DEFAULT_PROTOCOLS)
        if first.get("boxes") is not None:
            names.insert(2, "boxes")
    else:
        names = list(dict.fromkeys(protocols))
    if "sweep" not in names:
        names.append("sweep")
    return names


def _unpack(sample: Mapping[str, Any], index: int) -> tuple[Any, Any, Any, str, Any]:
    if not isinstance(sample, Mapping):
        raise InputError(f"sample {index}: expected a dict with reference, comparison and mask, "
                         f"got {type(sample).__name__}")
    missing = [key for key in ("reference", "comparison", "mask") if key not in sample]
    if missing:
        raise InputError(f"sample {index}: missing {', '.join(missing)}")
    name = str(sample.get("name") or f"{index:06d}")
    return sample["reference"], sample["comparison"], sample["mask"], name, sample.get("boxes")


def _per_image_row(image: PreparedImage, counts: PixelCounts) -> dict[str, Any]:
    scores = exact_scores(counts.tp, counts.fp, counts.fn, counts.tn)
    return {
        "name": image.name,
        "precision": scores["precision"],
        "recall": scores["recall"],
        "f1": scores["f1"],
        "iou": scores["iou"],
        "accuracy": scores["accuracy"],
        "true_changed_pixels": counts.tp + counts.fn,
        "predicted_changed_pixels": counts.tp + counts.fp,
        "tp": counts.tp,
        "fp": counts.fp,
        "fn": counts.fn,
        "tn": counts.tn,
        "ignored_pixels": counts.ignored,
    }


class _progress_bar:  # noqa: N801 - used as a context manager like a function
    """A rich progress bar on stderr (or nothing); yields ``advance(status)``."""

    def __init__(self, enabled: bool, total: int | None) -> None:
        self.enabled = enabled
        self.total = total
        self._progress = None
        self._task = None

    def __enter__(self) -> Callable[[str], None]:
        if not self.enabled:
            return lambda status: None
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._progress = Progress(
            TextColumn("[bold]evaluating"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[status]}"), TimeElapsedColumn(), TimeRemainingColumn(),
            console=Console(stderr=True), transient=False)
        self._progress.start()
        self._task = self._progress.add_task("evaluate", total=self.total, status="")
        progress, task = self._progress, self._task
        return lambda status: progress.update(task, advance=1, status=status)

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()


# --------------------------------------------------------------------------------------------
# Worst-image panels
# --------------------------------------------------------------------------------------------


class _WorstImages:
    """Keeps panels of the ``k`` images with the lowest F1 while streaming.

    Images with neither true nor predicted change are perfect (they rank as F1 = 1, although
    their F1 is 0 by the zero-denominator rule); among equal F1 more wrong pixels rank worse.
    """

    def __init__(self, k: int, panel_size: int) -> None:
        self.k = max(int(k), 0)
        self.panel_size = panel_size
        self._heap: list[tuple[float, int, int, str, float, np.ndarray]] = []
        self._seen = 0

    def offer(self, row: Mapping[str, Any], counts: PixelCounts, reference: Any,
              comparison: Any, image: PreparedImage) -> None:
        if self.k == 0:
            return
        self._seen += 1
        changed = counts.tp + counts.fp + counts.fn > 0
        f1 = float(row["f1"]) if changed else 1.0
        errors = counts.fp + counts.fn
        key = (-f1, errors, -self._seen)  # heap top = the least bad image kept
        if len(self._heap) >= self.k and key <= self._heap[0][:3]:
            return
        panel = make_panel(reference, comparison, image.target, image.prediction,
                           num_classes=image.num_classes, max_side=self.panel_size)
        item = (*key, image.name, float(row["f1"]), panel)
        if len(self._heap) < self.k:
            heapq.heappush(self._heap, item)
        else:
            heapq.heapreplace(self._heap, item)

    def panels(self) -> list[tuple[str, float, np.ndarray]]:
        """``(name, f1, panel)`` from the worst image to the least bad."""
        ordered = sorted(self._heap, key=lambda item: item[:3], reverse=True)
        return [(name, f1, panel) for *_key, name, f1, panel in ordered]


def _display_rgb(image: Any) -> np.ndarray:
    """Any image (H×W, H×W×C, C×H×W tensor; uint8/uint16/float) as H×W×3 uint8."""
    array = image.detach().cpu().numpy() if hasattr(image, "detach") else np.asarray(image)
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3:
        raise InputError(f"cannot display an image of shape {array.shape}")
    if array.shape[0] <= 16 and array.shape[2] > 16:  # channels first
        array = np.transpose(array, (1, 2, 0))
    if array.shape[2] > 4:  # multispectral: the first three bands
        array = array[:, :, :3]
    if array.dtype == np.bool_:
        array = array.astype(np.uint8) * 255
    if array.dtype not in (np.uint8, np.uint16):
        array = array.astype(np.float32)
    return to_uint8_rgb(np.ascontiguousarray(array))


def _colour_labels(target: np.ndarray, prediction: np.ndarray | None, num_classes: int
                   ) -> np.ndarray:
    """Colour a label map (prediction None) or a prediction against its label."""
    ignored = target == IGNORE_INDEX
    if num_classes == 2 and prediction is not None:
        pred = prediction != 0
        true = (target != 0) & ~ignored
        out = np.zeros((*target.shape, 3), np.uint8)
        out[pred & true] = (255, 255, 255)
        out[pred & ~true] = _FP
        out[~pred & true] = _FN
    else:
        labels = target if prediction is None else prediction
        out = _PALETTE[np.clip(labels, 0, None) % len(_PALETTE)]
    out[ignored] = _GREY
    return out


def make_panel(
    reference: Any,
    comparison: Any,
    target: np.ndarray,
    prediction: np.ndarray,
    num_classes: int = 2,
    max_side: int = 384,
) -> np.ndarray:
    """Side-by-side uint8 RGB panel: reference | comparison | ground truth | prediction.

    Images of any dtype and channel count are shown through ``to_uint8_rgb`` (first three
    bands of multispectral images). Ground truth: change white, ignored grey. Binary
    prediction: correct change white, false alarms red, misses blue; multi-class labels and
    predictions use one colour per class. Each tile is shrunk so its longest side is at most
    ``max_side``, and titled.
    """
    target = np.asarray(target)
    prediction = np.asarray(prediction)
    h, w = target.shape
    # shrink large images to max_side; enlarge tiny ones so the titles fit
    scale = max_side / max(h, w) if max(h, w) > max_side else max(1.0, 128 / w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    tiles = []
    for picture in (reference, comparison):
        rgb = _display_rgb(picture)
        interpolation = cv2.INTER_AREA if rgb.shape[1] > size[0] else cv2.INTER_LINEAR
        tiles.append(cv2.resize(rgb, size, interpolation=interpolation))
    for labels in (_colour_labels(target, None, num_classes),
                   _colour_labels(target, prediction, num_classes)):
        tiles.append(cv2.resize(labels, size, interpolation=cv2.INTER_NEAREST))
    header = 20
    gap = 4
    width = 4 * size[0] + 3 * gap
    panel = np.full((size[1] + header, width, 3), 32, np.uint8)
    for i, (tile, title) in enumerate(zip(tiles, _PANEL_TITLES)):
        x = i * (size[0] + gap)
        panel[header:, x:x + size[0]] = tile
        cv2.putText(panel, title, (x + 4, header - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.45,
                    (235, 235, 235), 1, cv2.LINE_AA)
    return panel


# --------------------------------------------------------------------------------------------
# Report files
# --------------------------------------------------------------------------------------------


def _jsonable(value: Any) -> Any:
    """Plain JSON types: numpy scalars/arrays converted, NaN and infinities become null."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def render_markdown(report: Mapping[str, Any]) -> str:
    """The ``metrics.md`` text: a summary table naming each protocol, then details."""
    protocols = report["protocols"]
    lines = ["# Evaluation report", ""]
    meta = report.get("metadata") or {}
    for key, value in meta.items():
        lines.append(f"- **{key}**: {value}")
    lines += [
        f"- **images**: {report['images']}",
        f"- **threshold**: {_fmt(report['threshold'], 2)} — pixel F1 {_fmt(report['f1_at_threshold'])}",
        f"- **best-F1 threshold** (found on this data): {_fmt(report['best_threshold'], 2)} — "
        f"pixel F1 {_fmt(report['best_f1'])}",
        "",
        "| protocol | how it counts | precision | recall | F1 | IoU | OA | kappa | mIoU |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    how = {
        "c3po": "per image, mean over images (official C-3PO)",
        "global": "all pixels of the set",
        "boxes": "components vs boxes, IoU > 0.33",
        "sweep": "all pixels, at the best threshold",
    }
    for name, result in protocols.items():
        if name == "sweep":
            cells = [result.get("best_precision"), result.get("best_recall"),
                     result.get("best_f1"), None, None, None, None]
        else:
            cells = [result.get("precision"), result.get("recall"), result.get("f1"),
                     result.get("iou"), result.get("overall_accuracy", result.get("accuracy")),
                     result.get("kappa"), result.get("miou")]
        lines.append(f"| `{name}` | {how.get(name, '')} | "
                     + " | ".join(_fmt(c) for c in cells) + " |")
    lines.append("")
    lines.append("`c3po`: OA is the mean per-image change/no-change accuracy and mIoU the "
                 "official confusion-matrix mIoU (a class absent from the set counts 0); "
                 "`global`: OA and kappa over all classes, mIoU over the classes present. "
                 "See docs/evaluation.md.")
    for note in report.get("warnings") or []:
        lines += ["", f"> **Warning:** {note}"]
    if "global" in protocols:
        per_class = protocols["global"].get("per_class_iou") or {}
        if per_class:
            lines += ["", "## Per-class IoU (`global`)", "", "| class | IoU |", "|---|---|"]
            lines += [f"| {cls} | {_fmt(v)} |" for cls, v in per_class.items()]
    if "boxes" in protocols:
        counts = protocols["boxes"]["counts"]
        lines += ["", "## Boxes", "",
                  f"{counts['matched']} matched of {counts['predicted']} predicted and "
                  f"{counts['ground_truth']} ground-truth boxes; AP "
                  f"{_fmt(protocols['boxes'].get('ap'))}."]
    return "\n".join(lines) + "\n"


def _csv_text(rows: Sequence[Mapping[str, Any]]) -> str:
    columns: list[str] = []
    for row in rows:
        for key in row:
            if key not in columns:
                columns.append(key)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{v:.6f}" if isinstance(v, float) else v) for k, v in row.items()})
    return buffer.getvalue()


def _save_figure(figure: Any, path: Path) -> Path:
    return atomic_write(path, lambda tmp: figure.savefig(tmp, format="png", dpi=120))


def plot_curves(report: Mapping[str, Any], out_dir: str | Path) -> dict[str, Path]:
    """Write ``pr_curve.png`` and ``f1_threshold.png`` from the report's sweep (Agg backend)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    out = Path(out_dir)
    sweep = report["protocols"]["sweep"]
    curve = sweep["curve"]
    thresholds = np.asarray(curve["thresholds"])
    precision = np.asarray(curve["precision"])
    recall = np.asarray(curve["recall"])
    f1 = np.asarray(curve["f1"])
    own = int(np.argmin(np.abs(thresholds - report["threshold"])))
    best = int(np.argmin(np.abs(thresholds - report["best_threshold"])))

    figure = Figure(figsize=(5, 4.5))
    FigureCanvasAgg(figure)
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
    ax.legend(loc="lower left", fontsize=8)
    figure.tight_layout()
    files = {"pr_curve": _save_figure(figure, out / "pr_curve.png")}

    figure = Figure(figsize=(5, 4))
    FigureCanvasAgg(figure)
    ax = figure.add_subplot()
    ax.plot(thresholds, f1, color="tab:blue", label="F1")
    ax.plot(thresholds, precision, color="tab:gray", lw=0.8, ls="--", label="precision")
    ax.plot(thresholds, recall, color="tab:gray", lw=0.8, ls=":", label="recall")
    ax.axvline(report["threshold"], color="tab:orange",
               label=f"threshold {report['threshold']:.2f}: F1 {report['f1_at_threshold']:.3f}")
    ax.axvline(report["best_threshold"], color="tab:green", ls="--",
               label=f"best {report['best_threshold']:.2f}: F1 {report['best_f1']:.3f}")
    ax.set_xlabel("threshold")
    ax.set_ylabel("score")
    ax.set_title("Pixel F1 against threshold")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower center", fontsize=8)
    figure.tight_layout()
    files["f1_threshold"] = _save_figure(figure, out / "f1_threshold.png")
    return files


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_PANEL_FILE = re.compile(r"^\d{2,}_.*\.png$")


def write_report(
    report: Mapping[str, Any],
    out_dir: str | Path,
    panels: Sequence[tuple[str, float, np.ndarray]] = (),
) -> dict[str, str]:
    """Write the report folder (see the module docstring); every file is written atomically.

    Args:
        report: the dict :func:`evaluate` returns.
        out_dir: the folder (created if needed). Earlier files are replaced; earlier panels in
            ``worst/`` that this report does not rewrite are removed.
        panels: ``(name, f1, panel)`` from the worst image down, written as
            ``worst/NN_<name>.png``.

    Returns:
        File role → path written (``metrics_json``, ``metrics_md``, ``per_image_csv``,
        ``pr_curve``, ``f1_threshold``, ``worst_01``, …).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    payload = {k: v for k, v in report.items() if k not in ("per_image", "files")}
    files: dict[str, Path] = {"metrics_json": write_json(out / "metrics.json", _jsonable(payload))}
    markdown = render_markdown(report)
    files["metrics_md"] = atomic_write(out / "metrics.md",
                                       lambda tmp: tmp.write_text(markdown, encoding="utf-8"))
    table = _csv_text(report.get("per_image") or [])
    files["per_image_csv"] = atomic_write(out / "per_image.csv",
                                          lambda tmp: tmp.write_text(table, encoding="utf-8"))
    files.update(plot_curves(report, out))

    worst_dir = out / "worst"
    written: set[str] = set()
    for rank, (name, _f1, panel) in enumerate(panels, start=1):
        filename = f"{rank:02d}_{_UNSAFE.sub('_', name).strip('_')[:80] or 'image'}.png"
        files[f"worst_{rank:02d}"] = write_png(worst_dir / filename, panel)
        written.add(filename)
    if worst_dir.is_dir():
        for stale in worst_dir.iterdir():
            if stale.is_file() and _PANEL_FILE.match(stale.name) and stale.name not in written:
                stale.unlink()
    return {key: str(path) for key, path in files.items()}
