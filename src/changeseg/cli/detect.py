"""`changeseg detect`: find what changed in one image pair, or in many (batch), and write the results.

One pair:   changeseg detect REF CMP -o OUT
Pair list:  changeseg detect --pairs LIST.csv -o OUT        (rows: reference,comparison[,name])
Folders:    changeseg detect --ref-dir A --cmp-dir B -o OUT  (pairs matched by file name)
On Ray:     add --ray local|auto|HOST:PORT to a batch (pairs spread over workers) or to one GeoTIFF
            pair (its tile windows spread over workers); see changeseg.distributed.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from changeseg.cli.main import run_command

DEFAULT_MAX_PIXELS = 100_000_000  # = changeseg.io.images.DEFAULT_MAX_PIXELS (not imported: keeps --help fast)

BACKENDS = ("auto", "torch", "onnx", "openvino")  # = changeseg.inference.loading.BACKENDS
PRECISIONS = ("auto", "fp32", "bf16", "int8")  # = changeseg.inference.loading.PRECISIONS


# the view sets of changeseg.inference.tta (TTA_SETS) and "none", spelt out so that the CLI starts
# without importing numpy; tests/cli/test_detect.py checks that they agree
TTA_CHOICES = ("none", "flip-swap", "dihedral")


def say(message: str) -> None:
    """One line on stderr (one-off work such as an export into the cache; notes)."""
    click.echo(message, err=True)


def validation_calibration(model: str) -> Callable[[], Any]:
    """`calibration()` for int8 quantisation: the model's own validation pairs, read from
    $CHANGESEG_DATA only when a quantised model has to be made."""
    def pairs() -> Any:
        from changeseg.evaluation.selection import calibration_pairs
        from changeseg.io.checkpoints import model_folder, read_config

        folder = model_folder(model) or Path(model)
        return calibration_pairs(read_config(folder).metadata)

    return pairs


def load_backend(backend: str, model: str, device: str, precision: str, views: Any = None) -> Any:
    """The detector for `backend` (auto, torch, onnx or openvino; `changeseg.inference.loading`),
    wrapped to average over the test-time `views` (`changeseg.inference.multiscale.TestViews`:
    mirrored and swapped views, several scales). One-off work (an ONNX export into the cache, an
    int8 quantisation on the model's validation pairs) and notes go to stderr."""
    from changeseg.inference.loading import load_backend as load

    return load(backend_spec(backend, model, device, precision, views), log=say,
                calibration=validation_calibration(model))


def parse_views(tta: bool, scales: str | None, domain: str | None = None,
                tta_views: str | None = None) -> Any:
    """The test-time views of --tta, --tta-views, --scales and --domain (`TestViews`; no
    --scales: the model's own); a bad --scales is an InputError (an unknown --domain is one when
    the model loads), and so is --tta beside a --tta-views other than flip-swap."""
    from changeseg.inference.multiscale import TestViews, parse_scales
    from changeseg.inference.tta import tta_option

    return TestViews(tta_option(tta, tta_views), parse_scales(scales) if scales is not None else None,
                     domain)


def backend_spec(backend: str, model: str, device: str, precision: str, views: Any = None) -> Any:
    """The `BackendSpec` of these options and test-time `views` (None: no tta, the model's own
    scales, no domain calibration)."""
    from changeseg.inference.loading import BackendSpec

    if views is None:
        return BackendSpec(model, backend, device, precision)
    return BackendSpec(model, backend, device, precision, views.tta, views.scales, views.domain)


def backend_label(detector: Any, requested: str) -> str:
    """"openvino (auto), bf16" and the like, for the summary line."""
    from changeseg.inference.loading import describe_backend

    return describe_backend(detector, requested)


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


def _options(threshold: float | None, min_area: int | None, resize: bool, bands: str | None,
             tile_size: int | None,
             tile_overlap: int | None, tile_batch: int, align: bool, align_method: str, ecc: bool,
             save_probability: bool, windowed: bool | None, scale: str = "auto",
             max_pixels: int = 0, save_branches: bool = False, split_depth: float | None = None,
             split_cover: float | None = None) -> Any:
    from changeseg.inference.align import AlignOptions
    from changeseg.inference.pipeline import DetectOptions
    from changeseg.inference.tiling import (
        DEFAULT_TILE_SIZE,
        WINDOWED_TILE_OVERLAP,
        WINDOWED_TILE_SIZE,
        TilingOptions,
    )
    from changeseg.io.geotiff import parse_bands
    from changeseg.io.scaling import parse_scaling

    if (ecc or align_method != "sift") and not align:
        raise click.UsageError("--align-method and --ecc need --align")
    # DetectOptions checks the split settings: a bad value is an InputError (one line), before any
    # image is read or the model is loaded
    return DetectOptions(threshold=threshold, min_area=min_area, split_depth=split_depth,
                         split_cover=split_cover, resize=resize, bands=parse_bands(bands),
                         tiling=TilingOptions(DEFAULT_TILE_SIZE if tile_size is None else tile_size,
                                              tile_overlap, tile_batch),
                         windowed_tiling=None if tile_size is not None else TilingOptions(
                             WINDOWED_TILE_SIZE,
                             WINDOWED_TILE_OVERLAP if tile_overlap is None else tile_overlap, tile_batch),
                         align=AlignOptions(method=align_method, ecc=ecc) if align else None,
                         save_probability=save_probability, windowed=windowed,
                         scale=parse_scaling(scale).spec(), max_pixels=max_pixels or None,
                         save_branches=save_branches)


@contextmanager
def pixel_limit_hint() -> Iterator[None]:
    """Add the option that raises the limit to a PixelLimitError's message."""
    from changeseg.errors import PixelLimitError

    try:
        yield
    except PixelLimitError as exc:
        raise PixelLimitError(f"{exc}; --max-pixels N raises the limit (0 = none)") from None


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
@click.option("--backend", type=click.Choice(BACKENDS), default="auto", show_default=True,
              help="auto: the fastest installed for the device and model (named in the summary line); "
                   "torch: PyTorch; onnx: onnxruntime; openvino: OpenVINO on the CPU. onnx and openvino "
                   "run the model exported once into the cache (~/.cache/changeseg, $CHANGESEG_CACHE), "
                   "with no torch import.")
@click.option("-t", "--threshold", type=click.FloatRange(0.0, 1.0), default=None,
              help="Change-probability threshold (default: the model's own, stored in its config.json).")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda, cuda:N or auto.")
@click.option("--precision", type=click.Choice(PRECISIONS), default="auto", show_default=True,
              help="auto: int8 where its verdict on the model's validation pairs passes (onnx, openvino), "
                   "else bf16 on CPUs with native bf16 (torch, openvino), else fp32. int8: the quantised "
                   "model (onnx, openvino; made once, calibrated on the model's validation pairs).")
@click.option("--min-area", type=click.IntRange(0), default=None,
              help="Drop changed regions smaller than this many pixels (default: the model's own, "
                   "0 for most models).")
@click.option("--split-depth", type=float, default=None, metavar="D",
              help="Split a changed region that holds several blobs (e.g. touching defects) where "
                   "the neck between them is at least D pixels narrower than the blobs "
                   "(0 = never split; default: the model's own, 0 for most models). Not on the "
                   "windowed path.")
@click.option("--split-cover", type=float, default=None, metavar="C",
              help="Keep a split only where the pieces' boxes cover at most C times the whole "
                   "region's box (> 0; default: the model's own, else 1.0).")
@click.option("--resize", is_flag=True, help="Resize the comparison to the reference's size.")
@click.option("--align", is_flag=True,
              help="Register the comparison onto the reference (features + RANSAC homography); pixels "
                   "outside the overlap are unknown (unknown.png), never change.")
@click.option("--align-method", type=click.Choice(["sift", "orb"]), default="sift", show_default=True,
              help="Keypoints used by --align.")
@click.option("--ecc", is_flag=True, help="Refine the --align homography by ECC maximisation.")
@click.option("--tile-size", type=click.IntRange(0), default=None,
              help="Images larger than this are predicted as overlapping tiles blended into one map "
                   "(0 = never tile). Default: 1024; 512 on the windowed paths, where it bounds memory.")
@click.option("--tile-overlap", type=click.IntRange(0), default=None,
              help="Overlap between neighbouring tiles, in pixels (default: a quarter tile, at most 128; "
                   "64 for the windowed paths' 512-pixel tiles).")
@click.option("--tile-batch", type=click.IntRange(1), default=1, show_default=True,
              help="Tiles per forward pass.")
@click.option("--bands", default=None,
              help="Bands to use, 1-based like GDAL (4,3,2) or by name for band folders (B04,B03,B02).")
@click.option("--windowed/--no-windowed", default=None,
              help="Large pairs, so memory does not grow with the image (default: automatic above 16 "
                   "megapixels): GeoTIFFs are read and written in windows (GeoTIFF/GeoJSON outputs "
                   "only); image files are decoded once each, kept on disk and read back tile by tile "
                   "(no --align or --resize).")
@click.option("--scale", default="auto", show_default=True,
              help="How raw pixel values become the model's 0-1 input: dtype (/255, /65535), "
                   "reflectance[:N] (/N, default 10000: Sentinel-2), percentile[:LO,HI] (one stretch "
                   "per image over all bands, default 0,99.9), or auto (8-bit: dtype; 16-bit: the "
                   "model's own, recorded in its config.json).")
@click.option("--max-pixels", type=click.IntRange(0), default=DEFAULT_MAX_PIXELS, show_default=True,
              help="Refuse image files whose header declares more pixels than this, before decoding "
                   "them (0 = no limit). GeoTIFF pairs read in windows (--windowed) are not limited.")
@click.option("--overlap/--no-overlap", default=True, show_default=True,
              help="Batch: read the next pair and write the last one while the model runs (threads). "
                   "--no-overlap: one pair after another, which can be faster where other jobs "
                   "already keep every core busy.")
@click.option("--save-probability", is_flag=True, help="Also write probability.png (0-255).")
@click.option("--save-branches", is_flag=True,
              help="Also write the i/a/d/e branch activation maps of every pyramid level as "
                   "branches/level<k>_<branch>.png (the patent's Fig. 12; PyTorch backend).")
@click.option("--tta", is_flag=True,
              help="Test-time augmentation: average the probabilities over the pair, its mirror "
                   "image and the swapped pair (3 forward passes, 2 for a model such as pcb whose "
                   "output for the swapped pair is the same; see docs/models.md).")
@click.option("--tta-views", type=click.Choice(TTA_CHOICES), default=None,
              help="Which test-time views to average over: flip-swap (= --tta), dihedral (the "
                   "eight rotations and mirror images, for boards and aerial scenes whose "
                   "orientation means nothing; 8 forward passes) or none.")
@click.option("--scales", default=None, metavar="S1,S2,...",
              help="Multi-scale inference: average the probabilities over the pair resized by each "
                   "factor (e.g. 1,2: sharper outlines of small objects such as people in a fixed "
                   "camera's frame; one forward pass per scale on scale² the pixels; docs/models.md). "
                   "Default: the model's own (1, the pair as it is, unless the model records others).")
@click.option("--domain", default=None, metavar="NAME",
              help="Where the pair comes from, when the model has a calibration for it: its "
                   "probabilities then carry that calibration (`default`: fixed-camera, two frames of "
                   "a camera that does not move; docs/models.md). `changeseg info` lists each model's.")
@click.option("--ray", "ray_address", default=None, metavar="ADDRESS",
              help="Run on Ray (pip install 'changeseg[ray]'): local (start Ray on this machine), auto "
                   "(RAY_ADDRESS or the cluster running here) or HOST:PORT of a head node. A batch "
                   "spreads its pairs over the workers; one GeoTIFF pair its tile windows. -o must be "
                   "a folder every worker can write, or an object-store URI (s3://..., gs://...).")
@click.option("--ray-workers", type=click.IntRange(1), default=None,
              help="Ray workers, each holding one loaded model (default: as many as the cluster's "
                   "CPUs, or GPUs, allow).")
@click.option("--ray-cpus-per-worker", type=click.FloatRange(0, min_open=False), default=1.0,
              show_default=True, help="CPUs each Ray worker reserves.")
@click.option("--ray-gpus-per-worker", type=click.FloatRange(0), default=0.0, show_default=True,
              help="GPUs each Ray worker reserves (> 0: torch workers use cuda).")
@click.option("--ray-num-cpus", type=click.IntRange(1), default=None,
              help="With --ray local: CPUs the local Ray instance may use (default: all).")
def command(reference: str | None, comparison: str | None, out_dir: str, pairs_csv: str | None,
            ref_dir: str | None, cmp_dir: str | None, overwrite: bool, model: str, backend: str,
            threshold: float | None, device: str, precision: str, min_area: int | None,
            split_depth: float | None, split_cover: float | None, resize: bool, align: bool,
            align_method: str, ecc: bool, tile_size: int | None, tile_overlap: int | None, tile_batch: int,
            bands: str | None, windowed: bool | None, scale: str, max_pixels: int, save_probability: bool,
            save_branches: bool, tta: bool, tta_views: str | None = None, scales: str | None = None,
            domain: str | None = None,
            ray_address: str | None = None,
            ray_workers: int | None = None,
            ray_cpus_per_worker: float = 1.0, ray_gpus_per_worker: float = 0.0,
            ray_num_cpus: int | None = None, overlap: bool = True) -> int:
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
    if not overlap and (not batch or ray_address is not None):
        raise click.UsageError("--no-overlap is for local batch runs (--pairs or --ref-dir/--cmp-dir, "
                               "without --ray)")
    if save_branches and backend == "auto":
        backend = "torch"  # branch maps come from the PyTorch network
    if save_branches and backend != "torch":
        raise click.UsageError("--save-branches needs --backend torch (an ONNX graph returns only the "
                               "probabilities)")
    options = _options(threshold, min_area, resize, bands, tile_size, tile_overlap, tile_batch, align,
                       align_method, ecc, save_probability, windowed, scale, max_pixels, save_branches,
                       split_depth, split_cover)
    views = parse_views(tta, scales, domain, tta_views)
    ray = _ray_settings(ray_address, ray_workers, ray_cpus_per_worker, ray_gpus_per_worker, ray_num_cpus,
                        out_dir)
    if ray is not None:
        if batch:
            return _run_batch_ray(pairs_csv, ref_dir, cmp_dir, out_dir, overwrite, model, backend, device,
                                  precision, options, views, ray)
        assert reference is not None and comparison is not None
        return _run_single_ray(reference, comparison, out_dir, model, backend, device, precision, options,
                               views, ray)
    if batch:
        return _run_batch(pairs_csv, ref_dir, cmp_dir, out_dir, overwrite, model, backend, device,
                          precision, options, views, overlap)
    assert reference is not None and comparison is not None
    return _run_single(reference, comparison, out_dir, model, backend, device, precision, options,
                       views)


def _run_single(reference: str, comparison: str, out_dir: str, model: str, backend: str, device: str,
                precision: str, options: Any, views: Any) -> int:
    from changeseg.inference.multiscale import views_of
    from changeseg.inference.outputs import check_output_folder
    from changeseg.inference.pipeline import detect_to_folder, load_pair

    # Check the inputs and the output folder first: fail fast, before the model is loaded.
    with pixel_limit_hint():
        pair = load_pair(reference, comparison, options)
    check_output_folder(out_dir, create=False)
    detector = load_backend(backend, model, device, precision, views)
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
    if options.save_branches:
        details.append("branch maps in branches/")
    extra = f" ({'; '.join(details)})" if details else ""
    mode = backend_label(detector, backend) + views_of(detector).describe()
    click.echo(f"{summary['changed_fraction']:.2%} of {summary['width']}×{summary['height']} pixels changed "
               f"in {summary['region_count']} region(s){extra}; model {model}, {mode}, "
               f"{summary['timings_ms']['total']:.0f} ms → {Path(out_dir)}")
    return 0


def _run_batch(pairs_csv: str | None, ref_dir: str | None, cmp_dir: str | None, out_dir: str,
               overwrite: bool, model: str, backend: str, device: str, precision: str, options: Any,
               views: Any, overlap: bool = True) -> int:
    from changeseg.inference.batch import pairs_from_csv, pairs_from_dirs, run_batch
    from changeseg.inference.multiscale import views_of
    from changeseg.inference.outputs import check_output_folder

    if pairs_csv is not None:
        jobs = pairs_from_csv(pairs_csv)
    else:
        assert ref_dir is not None and cmp_dir is not None
        jobs = pairs_from_dirs(ref_dir, cmp_dir)
    check_output_folder(out_dir, create=False)
    detector = load_backend(backend, model, device, precision, views)
    with progress_bar("pairs", enabled=True) as update:
        def on_pair(outcome: Any, index: int, total: int) -> None:
            if update is not None:
                update(index + 1, total)

        report = run_batch(detector, jobs, out_dir, options, resume=not overwrite, model=model,
                           on_pair=on_pair, overlap=overlap)
    untrained_warning(detector, model)
    mode = backend_label(detector, backend) + views_of(detector).describe()
    return _report_batch(report, str(report.summary_path), f"; {mode}")


def _report_batch(report: Any, summary: str, where: str = "") -> int:
    """The end of a batch run: one `error:` line per failed pair, the counts, the exit code."""
    for outcome in report.failed:
        click.echo(f"error: pair {outcome.name}: {outcome.error}", err=True)
    counts = {s: len(report.with_status(s)) for s in ("done", "skipped", "failed")}
    click.echo(f"{len(report.outcomes)} pair(s): {counts['done']} done, {counts['skipped']} skipped "
               f"(already complete), {counts['failed']} failed{where} → {summary}")
    return 1 if counts["failed"] else 0


def _ray_settings(address: str | None, workers: int | None, cpus: float, gpus: float, num_cpus: int | None,
                  out_dir: str) -> Any:
    """The --ray options checked (None without --ray); Ray itself is imported here, so a missing
    extra is one clear line before anything else happens."""
    if address is None:
        given = [name for name, value in (("--ray-workers", workers), ("--ray-num-cpus", num_cpus),
                                          ("--ray-cpus-per-worker", cpus != 1.0),
                                          ("--ray-gpus-per-worker", gpus != 0.0)) if value]
        if given:
            raise click.UsageError(f"{', '.join(given)} need --ray ADDRESS")
        if "://" in out_dir:
            raise click.UsageError(f"-o {out_dir}: object-store outputs need --ray (a local run writes "
                                   "to a folder)")
        return None
    from changeseg.distributed.cluster import WorkerOptions, parse_address, preflight, require_ray

    require_ray()
    parsed = parse_address(address)
    if num_cpus is not None and parsed != "local":
        raise click.UsageError("--ray-num-cpus applies to --ray local only (a cluster has its own CPUs)")
    settings = {"address": parsed, "num_cpus": num_cpus, "workers": WorkerOptions(workers, cpus, gpus)}
    preflight(parsed)  # an unreachable cluster fails here, before the model is loaded
    return settings


def _run_batch_ray(pairs_csv: str | None, ref_dir: str | None, cmp_dir: str | None, out_dir: str,
                   overwrite: bool, model: str, backend: str, device: str, precision: str, options: Any,
                   views: Any, ray: dict[str, Any]) -> int:
    from changeseg.distributed.batch import run_batch_ray
    from changeseg.distributed.cluster import ray_session
    from changeseg.distributed.storage import output_store
    from changeseg.inference.batch import pairs_from_csv, pairs_from_dirs
    if pairs_csv is not None:
        jobs = pairs_from_csv(pairs_csv)
    else:
        assert ref_dir is not None and cmp_dir is not None
        jobs = pairs_from_dirs(ref_dir, cmp_dir)
    output_store(out_dir).check(create=False)
    detector = load_backend(backend, model, "cpu", precision, views)  # a bad model fails here, before Ray
    spec = backend_spec(backend, model, device, precision, views)
    with ray_session(ray["address"], ray["num_cpus"]), progress_bar("pairs", enabled=True) as update:
        def on_pair(outcome: Any, index: int, total: int) -> None:
            if update is not None:
                update(index + 1, total)

        report = run_batch_ray(jobs, out_dir, spec, options, ray["workers"], resume=not overwrite,
                               model=model, check_model=False, on_pair=on_pair)
    untrained_warning(detector, model)
    workers = f" on {report.workers} Ray worker(s)" if report.workers else ""
    return _report_batch(report, report.summary_location, f"; {backend_label(detector, backend)}{workers}")


def _run_single_ray(reference: str, comparison: str, out_dir: str, model: str, backend: str, device: str,
                    precision: str, options: Any, views: Any, ray: dict[str, Any]) -> int:
    from dataclasses import replace

    from changeseg.distributed.cluster import ray_session
    from changeseg.distributed.raster import detect_geotiff_ray
    from changeseg.distributed.storage import output_store
    from changeseg.inference.pipeline import load_pair
    from changeseg.io.geotiff import is_geotiff

    if not (is_geotiff(reference) and is_geotiff(comparison)):
        raise click.UsageError("--ray with one pair needs a GeoTIFF pair (its tile windows are spread over "
                               "the workers); for many pairs use --pairs or --ref-dir/--cmp-dir")
    if options.windowed is False:
        raise click.UsageError("--ray with one GeoTIFF pair always reads it in windows; drop --no-windowed")
    if options.save_branches:
        raise click.UsageError("--save-branches needs the pair in memory; it is not available with --ray "
                               "on one pair")
    load_pair(reference, comparison, replace(options, windowed=True))  # grids, bands, --align/--resize
    output_store(out_dir).check(create=False)
    detector = load_backend(backend, model, "cpu", precision, views)  # a bad model fails here, before Ray
    spec = backend_spec(backend, model, device, precision, views)
    with ray_session(ray["address"], ray["num_cpus"]), progress_bar("tiles", enabled=True) as on_tile:
        summary = detect_geotiff_ray(reference, comparison, out_dir, spec, bands=options.bands,
                                     threshold=options.threshold, min_area=options.min_area,
                                     tiling=options.tiling_for(windowed=True), scale=options.scale,
                                     workers=ray["workers"],
                                     on_tile=on_tile)
    untrained_warning(detector, model)
    click.echo(f"{summary['changed_fraction']:.2%} of {summary['width']}×{summary['height']} pixels changed "
               f"in {summary['region_count']} region(s); model {model}, {backend_label(detector, backend)}, "
               f"tile windows on {summary['ray_workers']} Ray worker(s), "
               f"{summary['timings_ms']['total']:.0f} ms → {out_dir}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run `changeseg detect` with the given arguments; returns the exit code."""
    return run_command(command, argv, "changeseg detect")
