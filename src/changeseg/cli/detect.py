"""`changeseg detect REF CMP`: find what changed in one image pair and write the results."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import click

from changeseg.cli.main import run_command


@click.command("detect", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("reference", type=str)
@click.argument("comparison", type=str)
@click.option("-o", "--out", "out_dir", default="changeseg-output", show_default=True,
              help="Folder for mask.png, overlay.png, regions.json (and probability.png).")
@click.option("-m", "--model", default="default", show_default=True,
              help="A packaged model name, a preset name, or a checkpoint folder.")
@click.option("-t", "--threshold", type=click.FloatRange(0.0, 1.0), default=None,
              help="Change-probability threshold (default: the model's own, usually 0.5).")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda, cuda:N or auto.")
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16"]), default="auto",
              show_default=True, help="auto uses channels_last + bf16 on CPUs that support it.")
@click.option("--min-area", type=click.IntRange(0), default=0, show_default=True,
              help="Drop changed regions smaller than this many pixels.")
@click.option("--resize", is_flag=True, help="Resize the comparison to the reference's size.")
@click.option("--save-probability", is_flag=True, help="Also write probability.png (0-255).")
def command(reference: str, comparison: str, out_dir: str, model: str, threshold: float | None,
            device: str, precision: str, min_area: int, resize: bool,
            save_probability: bool) -> None:
    """Detect changes between REFERENCE and COMPARISON images and write the results."""
    from changeseg.inference.predictor import ChangeDetector, match_size
    from changeseg.io.images import read_image

    # Check the inputs first: a bad pair should fail fast, before the model is loaded.
    ref = read_image(reference, "reference")
    cmp = match_size(ref, read_image(comparison, "comparison"), resize)
    detector = ChangeDetector.from_pretrained(model, device=device, precision=precision)
    result = detector.predict(ref, cmp, threshold=threshold, min_area=min_area)
    result.save(out_dir, save_probability=save_probability)
    if not detector.trained:
        init = detector.config.metadata.get("init", "random weights")
        click.echo(f"warning: model {model!r} is UNTRAINED ({init}); its change map is not "
                   "meaningful. Train one with `changeseg train` or pass --model DIR.", err=True)
    height, width = result.mask.shape
    click.echo(f"{result.changed_fraction:.2%} of {width}×{height} pixels changed in "
               f"{len(result.regions)} region(s); model {model}, {detector.precision}, "
               f"{result.timings_ms['total']:.0f} ms → {Path(out_dir)}")


def main(argv: Sequence[str] | None = None) -> int:
    """Run `changeseg detect` with the given arguments; returns the exit code."""
    return run_command(command, argv, "changeseg detect")
