"""The report folder of an evaluation: metrics.json, metrics.md, per_image.csv, plots, panels.

:func:`write_report` writes (each file atomically)::

    out_dir/
      metrics.json      every protocol's numbers, threshold, best threshold, counts, metadata,
                        warnings and the training overlap
      metrics.md        a Markdown table, one row per protocol, then the details
      per_image.csv     one row per image: precision, recall, F1, IoU, pixel counts
      pr_curve.png      pixel precision-recall curve over the threshold grid
      f1_threshold.png  pixel F1 against threshold, model threshold and best threshold marked
      worst/NN_<name>.png  the worst images by F1: reference | comparison | truth | prediction,
                        with each image's scores and a colour legend
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from changeseg.evaluation.plots import plot_curves
from changeseg.io.images import atomic_write, write_json, write_png

REPORT_SCHEMA = "changeseg.evaluation/1"
"""The ``schema`` field of ``metrics.json``; bumped when its layout changes incompatibly."""


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
    if report.get("training_overlap") is not None:
        lines += ["", *_overlap_section(report["training_overlap"])]
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


def _overlap_section(overlap: Mapping[str, Any]) -> list[str]:
    """The "Training overlap" section: what the model's training record says of these pairs."""
    lines = ["## Training overlap", ""]
    sources = ", ".join(f"`{s}`" for s in overlap["sources"])
    if not overlap["sources"]:
        lines.append("The model's training record names no source of this data set.")
    elif overlap["trained_on_count"]:
        lines.append(f"**{overlap['trained_on_count']} of the {overlap['evaluated']} evaluated pairs "
                     f"are training pairs of the model** (recorded for {sources}).")
    else:
        lines.append(f"None of the {overlap['evaluated']} evaluated pairs is among the model's "
                     f"recorded training pairs of {sources}.")
    lines += [f"- {note}" for note in overlap.get("notes") or []]
    return lines


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
