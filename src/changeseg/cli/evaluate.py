"""`changeseg evaluate`: score a model on a labelled dataset and write a report folder."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import click

from changeseg.cli.detect import TTA_CHOICES, parse_views
from changeseg.cli.main import run_command
from changeseg.evaluation.selection import (
    parse_options,
    probability_function,
    read_names,
)


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
              help="An option of the boxes protocol, e.g. --box-option min_area=4 (defaults of "
                   "min_area, split_depth and split_cover: the model's own, as in detect).")
@click.option("-t", "--threshold", type=click.FloatRange(0.0, 1.0), default=None,
              help="Decision threshold (default: the model's own).")
@click.option("--limit", type=click.IntRange(1), default=None, help="Evaluate only the first N pairs.")
@click.option("--worst", type=click.IntRange(0), default=8, show_default=True,
              help="Side-by-side panels for the N worst images.")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda, cuda:N or auto.")
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16"]), default="auto",
              show_default=True)
@click.option("--tta", is_flag=True,
              help="Test-time augmentation: average over the pair, its mirror image and the "
                   "swapped pair, as `detect --tta` does.")
@click.option("--tta-views", type=click.Choice(TTA_CHOICES), default=None,
              help="Which test-time views to average over, as `detect --tta-views` does: flip-swap "
                   "(= --tta), dihedral (the eight rotations and mirror images) or none.")
@click.option("--scales", default=None, metavar="S1,S2,...",
              help="Multi-scale inference: average over the pair resized by each factor, as "
                   "`detect --scales` does (default: the model's own, 1 unless it records others).")
@click.option("--domain", default=None, metavar="NAME",
              help="Apply the model's calibration for this kind of pair, as `detect --domain` does "
                   "(`default`: fixed-camera).")
@click.option("--tile-size", type=click.IntRange(0), default=0, show_default=True,
              help="Predict pairs larger than this tile by tile, as `detect` does (its default: "
                   "1024); 0 = every pair whole.")
@click.option("--tile-overlap", type=click.IntRange(0), default=None,
              help="Overlap between tiles (default: a quarter tile, at most 128 pixels).")
def command(model: str, data_spec: str, split: str | None, data_options: tuple[str, ...],
            names: str | None, out_dir: str, protocols: str | None, box_options: tuple[str, ...],
            threshold: float | None, limit: int | None, worst: int, device: str,
            precision: str, tta: bool, scales: str | None, tile_size: int, tile_overlap: int | None,
            domain: str | None = None, tta_views: str | None = None) -> None:
    """Evaluate a model on a dataset with the c3po, global and boxes protocols."""
    from changeseg.data.datasets import open_dataset
    from changeseg.data.pairs import PairSubset
    from changeseg.evaluation.overlap import training_overlap
    from changeseg.evaluation.report import render_markdown
    from changeseg.evaluation.runner import evaluate
    from changeseg.inference.backend import backend_box_grow, backend_min_area, backend_split
    from changeseg.inference.multiscale import views_of, with_views
    from changeseg.inference.predictor import ChangeDetector
    from changeseg.inference.tiling import Tiled, TilingOptions
    from changeseg.labels import BINARY_CLASSES

    views = parse_views(tta, scales, domain, tta_views)
    tiling = TilingOptions(tile_size, tile_overlap)  # bad tiling fails before anything is read
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
    data_classes = len(getattr(dataset, "class_names", None) or BINARY_CLASSES)
    binary = len(detector.class_names) == 2 or data_classes == 2

    backend = with_views(detector, views.tta, views.scales, views.domain)
    predict = probability_function(Tiled(backend, tiling) if tile_size else backend, binary)
    chosen = threshold if threshold is not None else detector.config.threshold
    # the boxes protocol drops regions below the model's own minimum area and splits merged
    # regions with the model's own settings, as `detect` does (BoxMetric checks given values)
    split_depth, split_cover = backend_split(detector)
    box_settings = {"min_area": backend_min_area(detector), "split_depth": split_depth,
                    "split_cover": split_cover, "grow": backend_box_grow(detector),
                    **parse_options(box_options, "--box-option")}
    overlap = training_overlap(detector.config.metadata, data_spec, dataset.names, options)
    report = evaluate(
        predict, dataset, protocols=protocols, threshold=chosen, out_dir=out_dir, worst_k=worst,
        options={"boxes": box_settings},
        class_names=detector.class_names if not binary else None, typed_by_threshold=True,
        metadata={"model": model, "trained": detector.trained, "data": data_spec,
                  "split": split, "data_options": options, "names": names, "limit": limit,
                  "precision": detector.precision, "tta": views.tta,
                  "scales": list(views_of(backend).scales), "domain": domain,
                  "tile_size": tile_size, "tile_overlap": tiling.overlap if tile_size else None,
                  "scored_as": "binary change" if binary else "classes"},
        training_overlap=overlap,
    )
    click.echo(render_markdown(report))
    for warning in overlap.warnings():
        click.echo(f"warning: {warning}", err=True)
    if not detector.trained:
        click.echo(f"warning: model {model!r} is UNTRAINED; these numbers are a baseline only",
                   err=True)
    click.echo(f"report written to {Path(out_dir)}")


def main(argv: Sequence[str] | None = None) -> int:
    """Run `changeseg evaluate`; returns the exit code."""
    return run_command(command, argv, "changeseg evaluate")
