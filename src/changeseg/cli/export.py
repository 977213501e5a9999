"""`changeseg export`: export a model to ONNX (model.onnx + config.json), verified against PyTorch."""

from __future__ import annotations

from collections.abc import Sequence

import click

from changeseg.cli.main import run_command


@click.command("export", context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-m", "--model", required=True,
              help="A checkpoint folder, a packaged model name or a preset name (untrained).")
@click.option("--onnx", "onnx_dir", required=True,
              help="Output folder for model.onnx and config.json (run it with --backend onnx).")
@click.option("--opset", type=click.IntRange(11, 23), default=None,
              help="ONNX opset (default: 17 with the torchscript exporter, 18 with dynamo).")
@click.option("--exporter", type=click.Choice(["torchscript", "dynamo"]), default="torchscript",
              show_default=True,
              help="torch's TorchScript-based exporter (fast) or the torch.export-based one.")
@click.option("--tolerance", type=click.FloatRange(0.0, min_open=True), default=1e-4, show_default=True,
              help="Largest allowed |probability difference| between onnxruntime and PyTorch.")
@click.option("--no-check", is_flag=True,
              help="Skip the onnxruntime-vs-PyTorch parity check on a seeded pair (not recommended).")
def command(model: str, onnx_dir: str, opset: int | None, exporter: str, tolerance: float,
            no_check: bool) -> None:
    """Export MODEL to an ONNX folder with dynamic batch/height/width, normalisation inside the graph.

    Inputs `reference` and `comparison` are N×C×H×W float32 images in 0–1; the output
    `probabilities` is N×classes×H×W. Unless --no-check, the export is run by onnxruntime and
    compared with PyTorch on a seeded pair before anything is written.
    """
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
