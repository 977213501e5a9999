"""Run a model over a data set and score it with every protocol: :func:`evaluate`.

:func:`evaluate` is the library entry point behind ``changeseg evaluate`` (and the threshold
choice of ``finetune`` and the tools): it calls ``predict(reference, comparison)`` on every
sample, feeds the probability map to the protocol accumulators of
:mod:`changeseg.evaluation.metrics`, keeps the worst images' panels, and, given ``out_dir``,
writes the report folder (:func:`changeseg.evaluation.report.write_report`).
"""

from __future__ import annotations

import datetime as _dt
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from changeseg.errors import InputError
from changeseg.evaluation.metrics import DEFAULT_PROTOCOLS, build_metrics
from changeseg.evaluation.overlap import TrainingOverlap
from changeseg.evaluation.panels import WorstImages
from changeseg.evaluation.pixels import PixelCounts, PreparedImage, exact_scores, prepare_image
from changeseg.evaluation.report import REPORT_SCHEMA, write_report

Predict = Callable[[Any, Any], Any]
"""``predict(reference, comparison)`` → H×W change probability or C×H×W class probabilities
(numpy array, torch tensor, or an object with a ``probability`` attribute)."""


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
    training_overlap: TrainingOverlap | None = None,
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
            :func:`changeseg.evaluation.metrics.build_metrics`).
        class_names: names for per-class IoU (default ``unchanged``, ``changed`` / ``class_i``).
        total: number of samples for the progress bar when ``len(dataset)`` is not defined.
        panel_size: longest side, in pixels, of each tile of a worst-image panel.
        typed_by_threshold: score C > 2 class probabilities as changeseg predicts them (change
            where ``1 − p(class 0) ≥ threshold``, typed by the most likely change class), not
            by the plain argmax (see :func:`changeseg.evaluation.pixels.prepare_image`).
        training_overlap: which evaluated pairs the model trained on
            (:func:`changeseg.evaluation.overlap.training_overlap`); recorded in the report
            as ``training_overlap``, its warnings joining the report's ``warnings``.

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
    worst = WorstImages(worst_k, panel_size, class_names)
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
    if training_overlap is not None:
        report["training_overlap"] = training_overlap.to_dict()
        report["warnings"] += training_overlap.warnings()
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
    """The protocols to run: those named (a list or "a,b") or the defaults; always with the sweep.

    The defaults are ``c3po``, ``global`` and ``sweep``, with ``boxes`` when the first sample
    carries boxes.
    """
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
