"""`changeseg detect`: find what changed in one image pair, or in many (batch), and write the results.

One pair:   changeseg detect REF CMP -o OUT
Pair list:  changeseg detect --pairs LIST.csv -o OUT        (rows: reference,comparison[,name])
Folders:    changeseg detect --ref-dir A --cmp-dir B -o OUT  (pairs matched by file name)
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from changeseg.cli.main import run_command
from changeseg.errors import InputError

BACKENDS = ("torch", "onnx")


def load_backend(backend: str, model: str, device: str, precision: str, tta: bool = False) -> Any:
    """The detector for `backend`: the PyTorch `ChangeDetector`, or the torch-free ONNX runtime;
    with `tta`, wrapped to average over a mirrored and a swapped view."""
    if backend == "onnx":
        try:
            from changeseg.inference.onnx_runtime import OnnxChangeDetector
        except ImportError as exc:
            raise InputError(f"the ONNX backend is unavailable ({exc}); install changeseg[onnx]") from None
        detector: Any = OnnxChangeDetector.from_pretrained(model)
    else:
        from changeseg.inference.predictor import ChangeDetector

        detector = ChangeDetector.from_pretrained(model, device=device, precision=precision)
    if tta:
        from changeseg.inference.tta import TestTimeAugmented

        detector = TestTimeAugmented(detector)
    return detector


def untrained_warning(detector: Any, model: str) -> None:
    """Warn on stderr when the model is untrained (its change map means nothing)."""
    if getattr(detector, "trained", True):
        return
    config = getattr(detector, "config", None)
    init = getattr(config, "metadata", {}).get("init", "random weights")
    click.echo(f"warning: model {model!r} is UNTRAINED ({init}); its change map is not "
               "meaningful. Train one with `changeseg train` or pass --model DIR.", err=True)


@contextmanager
def progress_bar(description: str, enabled: bool) -> Iterator[Callable[[int, int], None] | None]:
    """A rich progress bar on stderr (only on a terminal); yields an `update(done, total)` callback."""
    if not enabled or not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeRemainingColumn(), console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task(description, total=None)

        def update(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        yield update


def _options(threshold: float | None, min_area: int | None, resize: bool, bands: str | None, tile_size: int,
             tile_overlap: int | None, tile_batch: int, align: bool, align_method: str, ecc: bool,
             save_probability: bool, windowed: bool | None) -> Any:
    from changeseg.inference.align import AlignOptions
    from changeseg.inference.pipeline import DetectOptions
    from changeseg.inference.tiling import TilingOptions
    from changeseg.io.geotiff import parse_bands

    if (ecc or align_method != "sift") and not align:
        raise click.UsageError("--align-method and --ecc need --align")
    return DetectOptions(threshold=threshold, min_area=min_area, resize=resize, bands=parse_bands(bands),
                         tiling=TilingOptions(tile_size, tile_overlap, tile_batch),
                         align=AlignOptions(method=align_method, ecc=ecc) if align else None,
                         save_probability=save_probability, windowed=windowed)


@click.command("detect", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("reference", type=str, required=False)
@click.argument("comparison", type=str, required=False)
@click.option("-o", "--out", "out_dir", default="changeseg-output", show_default=True,
              help="Folder for mask.png, overlay.png, regions.json (and probability.png); in batch "
                   "mode one subfolder per pair plus summary.csv.")
@click.option("--pairs", "pairs_csv", type=str, default=None,
              help="Batch: a CSV of pairs, rows reference,comparison[,name] (paths relative to the CSV).")
@click.option("--ref-dir", type=str, default=None, help="Batch: folder of reference images.")
@click.option("--cmp-dir", type=str, default=None,
              help="Batch: folder of comparison images, paired with --ref-dir by file name.")
@click.option("--overwrite", is_flag=True,
              help="Batch: recompute pairs whose output folder is already complete (default: skip them).")
@click.option("-m", "--model", default="default", show_default=True,
              help="A packaged model name, a preset name, or a checkpoint folder.")
@click.option("--backend", type=click.Choice(BACKENDS), default="torch", show_default=True,
              help="torch: PyTorch; onnx: onnxruntime on an exported model, no torch import.")
@click.option("-t", "--threshold", type=click.FloatRange(0.0, 1.0), default=None,
              help="Change-probability threshold (default: the model's own, stored in its config.json).")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda, cuda:N or auto.")
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16"]), default="auto",
              show_default=True, help="auto uses channels_last + bf16 on CPUs that support it.")
@click.option("--min-area", type=click.IntRange(0), default=None,
              help="Drop changed regions smaller than this many pixels (default: the model's own, "
                   "0 for most models).")
@click.option("--resize", is_flag=True, help="Resize the comparison to the reference's size.")
@click.option("--align", is_flag=True,
              help="Register the comparison onto the reference (features + RANSAC homography); pixels "
                   "outside the overlap are unknown (unknown.png), never change.")
@click.option("--align-method", type=click.Choice(["sift", "orb"]), default="sift", show_default=True,
              help="Keypoints used by --align.")
@click.option("--ecc", is_flag=True, help="Refine the --align homography by ECC maximisation.")
@click.option("--tile-size", type=click.IntRange(0), default=1024, show_default=True,
              help="Images larger than this are predicted as overlapping tiles blended into one map "
                   "(0 = never tile).")
@click.option("--tile-overlap", type=click.IntRange(0), default=None,
              help="Overlap between neighbouring tiles, in pixels (default: a quarter tile, at most 128).")
@click.option("--tile-batch", type=click.IntRange(1), default=1, show_default=True,
              help="Tiles per forward pass.")
@click.option("--bands", default=None,
              help="Bands to use, 1-based like GDAL (4,3,2) or by name for band folders (B04,B03,B02).")
@click.option("--windowed/--no-windowed", default=None,
              help="GeoTIFF pairs: read and write windows so memory does not grow with the image "
                   "(default: automatic above 16 megapixels). Writes GeoTIFF/GeoJSON outputs only.")
@click.option("--save-probability", is_flag=True, help="Also write probability.png (0-255).")
@click.option("--tta", is_flag=True,
              help="Test-time augmentation: average the probabilities over the pair, its mirror "
                   "image and the swapped pair (3 forward passes; see docs/models.md).")
def command(reference: str | None, comparison: str | None, out_dir: str, pairs_csv: str | None,
            ref_dir: str | None, cmp_dir: str | None, overwrite: bool, model: str, backend: str,
            threshold: float | None, device: str, precision: str, min_area: int | None, resize: bool,
            align: bool,
            align_method: str, ecc: bool, tile_size: int, tile_overlap: int | None, tile_batch: int,
            bands: str | None, windowed: bool | None, save_probability: bool, tta: bool) -> int:
    """Detect changes between REFERENCE and COMPARISON images (or many pairs) and write the results.

    GeoTIFF inputs (files or folders of single-band files) keep their georeference: mask.tif,
    probability.tif and regions.geojson come out in the reference's CRS.
    """
    batch = pairs_csv is not None or ref_dir is not None or cmp_dir is not None
    if batch:
        if reference is not None or comparison is not None:
            raise click.UsageError("give either REFERENCE COMPARISON or --pairs / --ref-dir --cmp-dir, "
                                   "not both")
        if pairs_csv is not None and (ref_dir is not None or cmp_dir is not None):
            raise click.UsageError("give either --pairs or --ref-dir with --cmp-dir, not both")
        if pairs_csv is None and (ref_dir is None or cmp_dir is None):
            raise click.UsageError("--ref-dir and --cmp-dir go together")
    elif reference is None or comparison is None:
        raise click.UsageError("give REFERENCE and COMPARISON images, or --pairs LIST.csv, or "
                               "--ref-dir A --cmp-dir B")
    options = _options(threshold, min_area, resize, bands, tile_size, tile_overlap, tile_batch, align,
                       align_method, ecc, save_probability, windowed)
    if batch:
        return _run_batch(pairs_csv, ref_dir, cmp_dir, out_dir, overwrite, model, backend, device,
                          precision, options, tta)
    assert reference is not None and comparison is not None
    return _run_single(reference, comparison, out_dir, model, backend, device, precision, options,
                       tta)


def _run_single(reference: str, comparison: str, out_dir: str, model: str, backend: str, device: str,
                precision: str, options: Any, tta: bool = False) -> int:
    from changeseg.inference.pipeline import detect_to_folder, load_pair

    # Check the inputs first: a bad pair should fail fast, before the model is loaded.
    pair = load_pair(reference, comparison, options)
    detector = load_backend(backend, model, device, precision, tta)
    with progress_bar("tiles", enabled=True) as on_tile:
        summary = detect_to_folder(detector, pair, out_dir, options, on_tile=on_tile)
    untrained_warning(detector, model)
    details = []
    if "alignment" in summary:
        report = summary["alignment"]
        details.append(f"aligned with {report['inliers']} inliers ({report['inlier_ratio']:.0%}), "
                       f"residual {report['residual_px']:.2f} px")
    if summary.get("unknown_pixels"):
        details.append(f"{summary['unknown_fraction']:.2%} unknown")
    extra = f" ({'; '.join(details)})" if details else ""
    mode = getattr(detector, "precision", backend) + (", tta" if tta else "")
    click.echo(f"{summary['changed_fraction']:.2%} of {summary['width']}×{summary['height']} pixels changed "
               f"in {summary['region_count']} region(s){extra}; model {model}, {mode}, "
               f"{summary['timings_ms']['total']:.0f} ms → {Path(out_dir)}")
    return 0


def _run_batch(pairs_csv: str | None, ref_dir: str | None, cmp_dir: str | None, out_dir: str,
               overwrite: bool, model: str, backend: str, device: str, precision: str, options: Any,
               tta: bool = False) -> int:
    from changeseg.inference.batch import pairs_from_csv, pairs_from_dirs, run_batch

    if pairs_csv is not None:
        jobs = pairs_from_csv(pairs_csv)
    else:
        assert ref_dir is not None and cmp_dir is not None
        jobs = pairs_from_dirs(ref_dir, cmp_dir)
    detector = load_backend(backend, model, device, precision, tta)
    with progress_bar("pairs", enabled=True) as update:
        def on_pair(outcome: Any, index: int, total: int) -> None:
            if update is not None:
                update(index + 1, total)

        report = run_batch(detector, jobs, out_dir, options, resume=not overwrite, model=model,
                           on_pair=on_pair)
    untrained_warning(detector, model)
    for outcome in report.failed:
        click.echo(f"error: pair {outcome.name}: {outcome.error}", err=True)
    counts = {s: len(report.with_status(s)) for s in ("done", "skipped", "failed")}
    click.echo(f"{len(report.outcomes)} pair(s): {counts['done']} done, {counts['skipped']} skipped "
               f"(already complete), {counts['failed']} failed → {report.summary_path}")
    return 1 if counts["failed"] else 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run `changeseg detect` with the given arguments; returns the exit code."""
    return run_command(command, argv, "changeseg detect")
