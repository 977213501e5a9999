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
@click.option("--photos", "-p", type=str, multiple=True, metavar="DIR",
              help="Folder of ordinary photos to build pairs from (searched recursively; "
                   "label folders such as labels/, gt/ or *annot/ are skipped); repeat for "
                   "several. Default: the colour photos bundled with scikit-image.")
@click.option("--objects", "-O", type=str, multiple=True, metavar="DIR",
              help="Folder of real object cut-outs to paste (copy-paste change): PNG/WebP "
                   "with alpha, YOLO-seg images+labels (e.g. COCO), or CamVid-style class "
                   "maps; repeat for several. Default: random-shaped patches of other photos.")
@click.option("--preview", type=click.Path(dir_okay=False, path_type=Path), default=None,
              metavar="FILE", help="Also write a contact sheet of the first 16 pairs "
                                   "(reference | comparison | typed label) to this .png or "
                                   ".jpg file.")
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
def command(outdir: Path, count: int, photos: tuple[str, ...], objects: tuple[str, ...],
            preview: Path | None, size: int, seed: int, start: int, no_nuisance: bool,
            overwrite: bool, quiet: bool) -> int:
    """Write COUNT synthetic change pairs to OUTDIR in the `folder` layout.

    Each pair is a random crop of a photo (A/, the reference) and the same scene (B/, the
    comparison) with objects that appear, disappear or are exchanged - real cut-outs pasted
    by their masks with --objects, else shapes cut from other photos - plus nuisance changes
    that must not count as change. Labels: label/ (0 no change,
    255 change) and label_typed/ (0 none, 1 appear, 2 disappear, 3 exchange); meta.json holds
    the settings that regenerate the set.

    \b
    Example:
      changeseg synth data/synthetic --count 1000 --photos ~/Pictures --seed 1
      changeseg synth data/street -n 500 -p camvid/ -O coco128/ -O my_cutouts/ --preview s.png
    """
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from changeseg.data.synthetic import (
        SyntheticPairGenerator,
        check_output_folder,
        write_synthetic_set,
    )

    check_output_folder(outdir, overwrite)  # fail before any work or progress bar
    if preview is not None and preview.suffix.lower() not in (".png", ".jpg", ".jpeg"):
        raise click.BadParameter("must end in .png or .jpg", param_hint="--preview")
    photo_source = None if not photos else photos[0] if len(photos) == 1 else list(photos)
    generator = SyntheticPairGenerator(photo_source, size=size, seed=seed,
                                       objects=list(objects) or None, nuisance=not no_nuisance)
    with Progress(TextColumn("synth"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=Console(stderr=True), disable=quiet, transient=False) as progress:
        task = progress.add_task("synth", total=count)
        write_synthetic_set(outdir, count, generator, start=start, overwrite=overwrite,
                            progress=lambda done: progress.update(task, completed=done))
    if preview is not None:
        from changeseg.data.preview import contact_sheet, write_sheet

        shown = [generator.generate(start + i) for i in range(min(count, 16))]
        write_sheet(preview, contact_sheet(shown))
    click.echo(f"wrote {count} pairs to {outdir}" + (f" (preview {preview})" if preview else ""))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run `changeseg synth` with `argv` (default: sys.argv); returns the exit code."""
    return run_command(command, argv, "changeseg synth")
