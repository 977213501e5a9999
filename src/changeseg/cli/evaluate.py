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


def read_names(source: str, model_metadata: dict[str, Any], data_spec: str | None = None) -> list[str]:
    """Pair names to evaluate: a file (one per line) or `model-val` (the model's own val split).

    With `model-val` and a `data_spec`, only the validation pairs the model's training carved
    from that data set are taken (its training sources are matched by format and folder
    name), so a model trained on several sets is scored on each set's own held-out pairs.
    `model-val:OTHER` takes the validation pairs of another model (a packaged name or a
    folder), e.g. to score `default` on exactly the pairs `pcb` held out.
    """
    from changeseg.errors import InputError

    if source.startswith("model-val:"):
        from changeseg.inference.predictor import packaged_models
        from changeseg.io.checkpoints import read_config

        other = source.partition(":")[2]
        folder = Path(other) if Path(other).is_dir() else packaged_models().get(other)
        if folder is None:
            raise InputError(f"--names {source}: no model folder or packaged model {other!r}")
        return read_names("model-val", read_config(folder).metadata, data_spec)
    if source == "model-val":
        names = model_metadata.get("val_names")
        if not names:
            raise InputError("--names model-val: this model's checkpoint records no validation names")
        if data_spec is None:
            return [str(n) for n in names]
        sources = (model_metadata.get("training") or {}).get("data", {}).get("sources") or []
        matching = [s for s in sources if _same_source(s.get("spec", ""), data_spec)]
        if not matching:
            known = ", ".join(s.get("spec", "?") for s in sources) or "none recorded"
            raise InputError(f"--names model-val: the model was not trained on {data_spec} "
                             f"(its sources: {known})")
        return [str(n) for s in matching for n in s.get("val_names") or []]
    path = Path(source)
    if not path.is_file():
        raise InputError(f"--names: file not found: {path}")
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def _same_source(trained_spec: str, data_spec: str) -> bool:
    """Whether two FORMAT:PATH specs name the same format and the same folder name."""
    fmt_a, _, path_a = trained_spec.partition(":")
    fmt_b, _, path_b = data_spec.partition(":")
    return fmt_a.lower() == fmt_b.lower() and Path(path_a.rstrip("/")).name == Path(path_b.rstrip("/")).name


def probability_function(detector: Any, binary: bool) -> Any:
    """`predict(reference, comparison)` for `report.evaluate`: change probability or class probabilities."""

    def predict(reference: Any, comparison: Any) -> Any:
        probs = detector.predict_proba(detector.prepare(reference, "reference"),
                                       detector.prepare(comparison, "comparison"))
        return 1.0 - probs[0] if binary else probs

    return predict


def validation_pairs(sources: Sequence[dict[str, Any]]) -> list[Any]:
    """The validation pairs a training run recorded (summary.json `split.sources`), re-opened.

    Synthetic sources are skipped: their pairs are generated, not read.
    """
    from changeseg.data.datasets import open_dataset
    from changeseg.data.pairs import PairSubset
    from changeseg.training.datamodule import is_synthetic

    parts = []
    for source in sources:
        if source.get("val_names") and not is_synthetic(source["spec"]):
            dataset = open_dataset(source["spec"], **(source.get("options") or {}))
            parts.append(PairSubset(dataset, source["val_names"]))
    return parts


@click.command("evaluate", context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-m", "--model", default="default", show_default=True,
              help="A packaged model name, a preset name, or a checkpoint folder.")
@click.option("-d", "--data", "data_spec", required=True,
              help="Dataset as FORMAT:PATH, e.g. deeppcb:../shared/data/deeppcb (see docs/data.md).")
@click.option("--split", default=None, help="The reader's split (e.g. train, val, test).")
@click.option("--data-option", "data_options", multiple=True, metavar="KEY=VALUE",
              help="A reader option (repeatable), e.g. --data-option fold=1.")
@click.option("--names", default=None, metavar="FILE|model-val[:MODEL]",
              help="Only these pairs: a file with one name per line, model-val for the "
                   "validation pairs the model's training carved from this data set, or "
                   "model-val:MODEL for those of another model.")
@click.option("-o", "--out", "out_dir", default="evaluation", show_default=True,
              help="Report folder (metrics.json, metrics.md, per_image.csv, plots, worst/).")
@click.option("--protocols", default=None,
              help="Comma-separated: c3po, global, boxes, sweep (default: all that apply).")
@click.option("--box-option", "box_options", multiple=True, metavar="KEY=VALUE",
              help="An option of the boxes protocol, e.g. --box-option min_area=4 (default "
                   "min_area: the model's own, as in detect).")
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
    from changeseg.inference.pipeline import backend_min_area
    from changeseg.inference.predictor import ChangeDetector
    from changeseg.training.report import evaluate, render_markdown

    options = parse_options(data_options, "--data-option")
    if split is not None:
        options["split"] = split
    dataset = open_dataset(data_spec, **options)
    detector = ChangeDetector.from_pretrained(model, device=device, precision=precision)
    if names is not None:
        dataset = PairSubset(dataset, read_names(names, detector.config.metadata, data_spec))
    if limit is not None and limit < len(dataset):
        dataset = PairSubset(dataset, range(limit))
    # A typed model (appear / disappear / exchange) on a set labelled only changed / unchanged
    # is scored on its change probability, 1 - p(unchanged).
    data_classes = len(getattr(dataset, "class_names", None) or ["unchanged", "changed"])
    binary = len(detector.class_names) == 2 or data_classes == 2

    predict = probability_function(detector, binary)
    chosen = threshold if threshold is not None else detector.config.threshold
    # the boxes protocol drops regions below the model's own minimum area, as `detect` does
    box_settings = {"min_area": backend_min_area(detector),
                    **parse_options(box_options, "--box-option")}
    report = evaluate(
        predict, dataset, protocols=protocols, threshold=chosen, out_dir=out_dir, worst_k=worst,
        options={"boxes": box_settings},
        class_names=detector.class_names if not binary else None, typed_by_threshold=True,
        metadata={"model": model, "trained": detector.trained, "data": data_spec,
                  "split": split, "data_options": options, "names": names, "limit": limit,
                  "precision": detector.precision,
                  "scored_as": "binary change" if binary else "classes"},
    )
    click.echo(render_markdown(report))
    if not detector.trained:
        click.echo(f"warning: model {model!r} is UNTRAINED; these numbers are a baseline only",
                   err=True)
    click.echo(f"report written to {Path(out_dir)}")


def main(argv: Sequence[str] | None = None) -> int:
    """Run `changeseg evaluate`; returns the exit code."""
    return run_command(command, argv, "changeseg evaluate")
