"""`changeseg synth`: write a set of synthetic labelled change pairs made from ordinary photos."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import click

from changeseg.cli.main import run_command


@click.command(name="synth", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("outdir", type=click.Path(file_okay=False, dir_okay=True, path_type=Path))
@click.option("--count", "-n", type=click.IntRange(min=1), required=True,
              help="Number of pairs to write.")
@click.option("--photos", "-p", type=str, default=None, metavar="DIR",
              help="Folder of ordinary photos to build pairs from (searched recursively). "
                   "Default: the colour photos bundled with scikit-image.")
@click.option("--size", type=click.IntRange(min=32), default=256, show_default=True,
              help="Side of the square output images, in pixels.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Base seed: the same seed and settings give the same pairs bit for bit.")
@click.option("--start", type=click.IntRange(min=0), default=0, show_default=True,
              help="Index of the first pair (to extend a set, or to split work between runs).")
@click.option("--no-nuisance", is_flag=True,
              help="Leave out nuisance changes (misregistration, illumination, colour, shadows, "
                   "blur, noise, JPEG): pairs differ only where the label says so.")
@click.option("--overwrite", is_flag=True,
              help="Write into OUTDIR even if it already holds a data set.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def command(outdir: Path, count: int, photos: str | None, size: int, seed: int, start: int,
            no_nuisance: bool, overwrite: bool, quiet: bool) -> int:
    """Write COUNT synthetic change pairs to OUTDIR in the `folder` layout.

    Each pair is a random crop of a photo (A/, the reference) and the same scene (B/, the
    comparison) with objects cut from other photos that appear, disappear or are exchanged,
    plus nuisance changes that must not count as change. Labels: label/ (0 no change,
    255 change) and label_typed/ (0 none, 1 appear, 2 disappear, 3 exchange); meta.json holds
    the settings that regenerate the set.

    \b
    Example:
      changeseg synth data/synthetic --count 1000 --photos ~/Pictures --seed 1
    """
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from changeseg.data.synthetic import (
        SyntheticPairGenerator,
        check_output_folder,
        write_synthetic_set,
    )

    check_output_folder(outdir, overwrite)  # fail before any work or progress bar
    generator = SyntheticPairGenerator(photos, size=size, seed=seed, nuisance=not no_nuisance)
    with Progress(TextColumn("synth"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=Console(stderr=True), disable=quiet, transient=False) as progress:
        task = progress.add_task("synth", total=count)
        write_synthetic_set(outdir, count, generator, start=start, overwrite=overwrite,
                            progress=lambda done: progress.update(task, completed=done))
    click.echo(f"wrote {count} pairs to {outdir}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run `changeseg synth` with `argv` (default: sys.argv); returns the exit code."""
    return run_command(command, argv, "changeseg synth")
