"""`changeseg evaluate`: score a model on a labelled dataset and write a report folder."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from changeseg.cli.main import run_command


def parse_options(pairs: Sequence[str], what: str) -> dict[str, Any]:
    """`KEY=VALUE` strings → a dict, values parsed as YAML scalars (numbers, booleans, lists)."""
    import yaml

    from changeseg.errors import InputError

    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InputError(f"{what} {pair!r} must look like KEY=VALUE")
        options[key.strip()] = yaml.safe_load(value) if value else ""
    return options


def read_names(source: str, model_metadata: dict[str, Any]) -> list[str]:
    """Pair names to evaluate: a file (one per line) or `model-val` (the model's own val split)."""
    from changeseg.errors import InputError

    if source == "model-val":
        names = model_metadata.get("val_names")
        if not names:
            raise InputError("--names model-val: this model's checkpoint records no validation names")
        return [str(n) for n in names]
    path = Path(source)
    if not path.is_file():
        raise InputError(f"--names: file not found: {path}")
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


@click.command("evaluate", context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-m", "--model", default="default", show_default=True,
              help="A packaged model name, a preset name, or a checkpoint folder.")
@click.option("-d", "--data", "data_spec", required=True,
              help="Dataset as FORMAT:PATH, e.g. deeppcb:../shared/data/deeppcb (see docs/data.md).")
@click.option("--split", default=None, help="The reader's split (e.g. train, val, test).")
@click.option("--data-option", "data_options", multiple=True, metavar="KEY=VALUE",
              help="A reader option (repeatable), e.g. --data-option fold=1.")
@click.option("--names", default=None, metavar="FILE|model-val",
              help="Only these pairs: a file with one name per line, or model-val for the "
                   "validation pairs recorded in the model's checkpoint.")
@click.option("-o", "--out", "out_dir", default="evaluation", show_default=True,
              help="Report folder (metrics.json, metrics.md, per_image.csv, plots, worst/).")
@click.option("--protocols", default=None,
              help="Comma-separated: c3po, global, boxes, sweep (default: all that apply).")
@click.option("--box-option", "box_options", multiple=True, metavar="KEY=VALUE",
              help="An option of the boxes protocol, e.g. --box-option min_area=4.")
@click.option("-t", "--threshold", type=click.FloatRange(0.0, 1.0), default=None,
              help="Decision threshold (default: the model's own).")
@click.option("--limit", type=click.IntRange(1), default=None, help="Evaluate only the first N pairs.")
@click.option("--worst", type=click.IntRange(0), default=8, show_default=True,
              help="Side-by-side panels for the N worst images.")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda, cuda:N or auto.")
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16"]), default="auto",
              show_default=True)
def command(model: str, data_spec: str, split: str | None, data_options: tuple[str, ...],
            names: str | None, out_dir: str, protocols: str | None, box_options: tuple[str, ...],
            threshold: float | None, limit: int | None, worst: int, device: str,
            precision: str) -> None:
    """Evaluate a model on a dataset with the c3po, global and boxes protocols."""
    from changeseg.data.datasets import open_dataset
    from changeseg.data.pairs import PairSubset
    from changeseg.inference.predictor import ChangeDetector
    from changeseg.training.report import evaluate, render_markdown

    options = parse_options(data_options, "--data-option")
    if split is not None:
        options["split"] = split
    dataset = open_dataset(data_spec, **options)
    detector = ChangeDetector.from_pretrained(model, device=device, precision=precision)
    if names is not None:
        dataset = PairSubset(dataset, read_names(names, detector.config.metadata))
    if limit is not None and limit < len(dataset):
        dataset = PairSubset(dataset, range(limit))
    binary = len(detector.class_names) == 2

    def predict(reference: Any, comparison: Any) -> Any:
        probs = detector.predict_proba(detector.prepare(reference, "reference"),
                                       detector.prepare(comparison, "comparison"))
        return 1.0 - probs[0] if binary else probs

    chosen = threshold if threshold is not None else detector.config.threshold
    report = evaluate(
        predict, dataset, protocols=protocols, threshold=chosen, out_dir=out_dir, worst_k=worst,
        options={"boxes": parse_options(box_options, "--box-option")} if box_options else None,
        class_names=detector.class_names if not binary else None,
        metadata={"model": model, "trained": detector.trained, "data": data_spec,
                  "split": split, "data_options": options, "names": names, "limit": limit,
                  "precision": detector.precision},
    )
    click.echo(render_markdown(report))
    if not detector.trained:
        click.echo(f"warning: model {model!r} is UNTRAINED; these numbers are a baseline only",
                   err=True)
    click.echo(f"report written to {Path(out_dir)}")


def main(argv: Sequence[str] | None = None) -> int:
    """Run `changeseg evaluate`; returns the exit code."""
    return run_command(command, argv, "changeseg evaluate")
