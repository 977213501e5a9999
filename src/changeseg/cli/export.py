"""`changeseg export`: export a model to ONNX (model.onnx + config.json), verified against PyTorch, and/or
write the static on-device web page for it (`--web`)."""

from __future__ import annotations

from collections.abc import Sequence

import click

from changeseg.cli.main import run_command


@click.command("export", context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-m", "--model", required=True,
              help="A checkpoint folder, a packaged model name or a preset name (untrained).")
@click.option("--onnx", "onnx_dir", default=None,
              help="Output folder for model.onnx and config.json (run it with --backend onnx).")
@click.option("--web", "web_dir", default=None,
              help="Output folder for a self-contained static web page that runs the model in the browser "
                   "(onnxruntime-web; any static web server, no Python). Uses the export cache.")
@click.option("--tile-size", type=click.IntRange(min=0), default=1024, show_default=True,
              help="--web: images larger than this are tiled in the browser, as by `detect` (0 = never).")
@click.option("--tile-overlap", type=click.IntRange(min=0), default=None,
              help="--web: overlap between tiles in pixels [default: a quarter tile, at most 128].")
@click.option("--opset", type=click.IntRange(11, 23), default=None,
              help="ONNX opset (default: 17 with the torchscript exporter, 18 with dynamo).")
@click.option("--exporter", type=click.Choice(["torchscript", "dynamo"]), default="torchscript",
              show_default=True,
              help="torch's TorchScript-based exporter (fast) or the torch.export-based one.")
@click.option("--tolerance", type=click.FloatRange(0.0, min_open=True), default=1e-4, show_default=True,
              help="Largest allowed |probability difference| between onnxruntime and PyTorch.")
@click.option("--no-check", is_flag=True,
              help="Skip the onnxruntime-vs-PyTorch parity check on a seeded pair (not recommended).")
def command(model: str, onnx_dir: str | None, web_dir: str | None, tile_size: int, tile_overlap: int | None,
            opset: int | None, exporter: str, tolerance: float, no_check: bool) -> None:
    """Export MODEL to an ONNX folder with dynamic batch/height/width, normalisation inside the graph.

    Inputs `reference` and `comparison` are N×C×H×W float32 images in 0–1; the output
    `probabilities` is N×classes×H×W. Unless --no-check, the export is run by onnxruntime and
    compared with PyTorch on a seeded pair before anything is written. With --web, also (or
    only) write a static page that runs the model on the device (docs/deploy.md).
    """
    if not onnx_dir and not web_dir:
        raise click.UsageError("give --onnx OUTDIR, --web OUTDIR, or both")
    if web_dir:
        if no_check:
            raise click.UsageError("--web always checks the export against PyTorch; drop --no-check")
        from changeseg.service.web_bundle import find_web_runtime

        find_web_runtime()  # a missing runtime is one error line, before any export
    if onnx_dir:
        export_onnx_folder(model, onnx_dir, opset, exporter, tolerance, no_check)
    if web_dir:
        from changeseg.service.web_bundle import export_web

        report = export_web(model, web_dir, tile_size=tile_size, tile_overlap=tile_overlap, opset=opset,
                            exporter=exporter, tolerance=tolerance,
                            log=lambda line: click.echo(line, err=True))
        click.echo(f"wrote the on-device page for {model} to {report.summary()}")


def export_onnx_folder(model: str, onnx_dir: str, opset: int | None, exporter: str, tolerance: float,
                       no_check: bool) -> None:
    """`--onnx`: export MODEL to ONNX_DIR and print the report line."""
    from changeseg.inference.export import export_onnx
    from changeseg.inference.predictor import ChangeDetector

    detector = ChangeDetector.from_pretrained(model, precision="fp32")
    if not detector.trained:
        init = detector.config.metadata.get("init", "random weights")
        click.echo(f"warning: model {model!r} is UNTRAINED ({init}); the exported change map is not "
                   "meaningful.", err=True)
    report = export_onnx(detector, onnx_dir, opset=opset, check=not no_check, exporter=exporter,
                         tolerance=tolerance)
    click.echo(f"exported {model} to {report.summary()}")


def main(argv: Sequence[str] | None = None) -> int:
    """Run `changeseg export`; returns the exit code."""
    return run_command(command, argv, "changeseg export")
