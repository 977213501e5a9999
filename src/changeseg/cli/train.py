"""`changeseg train`: train a change model from a YAML recipe, with key=value overrides."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from changeseg.cli.main import run_command

RECIPE_IN_RUN = "recipe.yaml"


def import_training() -> Any:
    """Import `changeseg.training.trainer`, or explain how to install what it needs."""
    try:
        from changeseg.training import trainer
    except ImportError as exc:
        raise click.ClickException(
            f"training needs the 'train' extra ({exc.name or exc}); "
            "install it with: pip install 'changeseg[train]'") from None
    return trainer


def recipe_path(config: Path | None, resume: bool, out: Path | None) -> Path:
    """The recipe to read: --config, or the run folder's saved recipe when resuming."""
    if config is not None:
        return config
    if resume and out is not None and (out / RECIPE_IN_RUN).is_file():
        return out / RECIPE_IN_RUN
    raise click.UsageError("give --config FILE (or --resume --out RUN_DIR of an earlier run)")


@click.command(name="train", context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "-c", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="YAML training recipe (see configs/).")
@click.option("--out", "-o", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Run folder (default: the recipe's output.dir, else runs/<name>).")
@click.option("--resume", is_flag=True,
              help="Continue the run in the output folder from its last checkpoint.")
@click.option("--auto-resume", is_flag=True,
              help="Resume if the output folder holds a checkpoint, else start (for re-queued jobs).")
@click.option("--no-progress", is_flag=True, help="No progress bar (log lines only).")
@click.argument("overrides", nargs=-1, metavar="[KEY.SUB=VALUE]...")
def command(config: Path | None, out: Path | None, resume: bool, auto_resume: bool, no_progress: bool,
            overrides: tuple[str, ...]) -> int:
    """Train a change model as a recipe says; the best model lands in RUN/best/.

    Overrides change single recipe values, parsed as YAML: optim.lr=3e-4,
    trainer.max_epochs=5, trainer.devices=2, data.batch_size=4, model.pretrained=null.

    \b
    Examples:
      changeseg train --config configs/deeppcb.yaml
      changeseg train -c configs/aerial.yaml trainer.devices=4 trainer.strategy=ddp
      changeseg train -c configs/deeppcb.yaml --resume
      srun changeseg train -c configs/aerial.yaml --auto-resume trainer.strategy=ddp ...
    """
    trainer = import_training()
    from changeseg.training.recipe import load_recipe

    path = recipe_path(config, resume or auto_resume, out)
    recipe = load_recipe(path, list(overrides))
    if out is not None:
        recipe.output.dir = str(out)
    mode: bool | str = "auto" if auto_resume else resume
    best = trainer.train(recipe, resume=mode, progress_bar=False if no_progress else None)
    if trainer.is_rank_zero():
        click.echo(f"best model: {best}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run `changeseg train` with `argv` (default: sys.argv); returns the exit code."""
    return run_command(command, argv, "changeseg train")

