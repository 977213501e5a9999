"""`changeseg finetune`: adapt a trained change model (or a fresh preset) to a few labelled pairs."""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import click

from changeseg.cli.main import run_command
from changeseg.cli.train import import_training
from changeseg.errors import ConfigError

if TYPE_CHECKING:
    from changeseg.training.recipe import DatasetEntry

DEFAULT_ALPHA = 1.0


@click.command(name="finetune", context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--from", "start", required=True, metavar="MODEL",
              help="A packaged model name (default), a trained change-model folder, or a preset "
                   "name to start from an ImageNet backbone with fresh fusion and head.")
@click.option("--data", "-d", "data", multiple=True, required=True, metavar="FORMAT:PATH",
              help="Training pairs, e.g. folder:my_pairs or pcd:data/tsunami (repeatable). "
                   "A validation share is carved from them with a fixed seed (none from fewer "
                   "than 10 pairs).")
@click.option("--config", "-c", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Optional YAML recipe merged over the fine-tuning defaults.")
@click.option("--out", "-o", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Run folder (default: runs/finetune-<model>).")
@click.option("--resume", is_flag=True, help="Continue the run in the output folder.")
@click.option("--no-progress", is_flag=True, help="No progress bar (log lines only).")
@click.option("--keep-threshold", is_flag=True,
              help="Keep the starting model's decision threshold instead of re-choosing it as "
                   "the best-F1 threshold on the fine-tuning validation pairs.")
@click.option("--interpolate", "alpha", type=click.FloatRange(0.0, 1.0), default=DEFAULT_ALPHA,
              show_default=True, metavar="ALPHA",
              help="Average the weights: RUN/best = (1-ALPHA)·start + ALPHA·fine-tuned (WiSE-FT; "
                   "the fine-tuned weights alone stay in RUN/best-tuned). 1 keeps the fine-tuned "
                   "weights. Needs --from a model, not a preset.")
@click.option("--scale", type=float, default=1.0, show_default=True,
              metavar="F",
              help="Enlarge the training pairs F× as they are read, before cropping "
                   "(data.train_scale), and validate at F× (data.val_scale); the fine-tuned model "
                   "records F and detects at F×; a threshold chosen on the training pairs is "
                   "chosen on them at 1×. To try with frames smaller than the 256 px crops.")
@click.argument("overrides", nargs=-1, metavar="[KEY.SUB=VALUE]...")
def command(start: str, data: tuple[str, ...], config: Path | None, out: Path | None, resume: bool,
            no_progress: bool, keep_threshold: bool, alpha: float, scale: float,
            overrides: tuple[str, ...]) -> int:
    """Fine-tune a change model on a handful of pairs; the result lands in RUN/best/.

    The recipe suits few pairs: learning rate 3e-5 (1e-4 from a preset), 20 epochs of 64
    random crops per source, flips, rotations, scaling and colour jitter; the whole
    network trains, the backbone's BatchNorm statistics kept (from a preset, and with
    optim.freeze_bn=false, they follow the batches). The architecture, normalisation and
    class names come from the starting model. Override anything with KEY.SUB=VALUE. Fine-tuning shifts the
    network's confidence, so the decision threshold is re-chosen afterwards as the best-F1
    threshold on the validation pairs carved from --data (20 %); with fewer than 10 pairs
    none are held out and the threshold is chosen on the training pairs (set
    data.val_fraction to hold some back; --keep-threshold keeps the old threshold).
    Frames smaller than the training crop fill only part of it; --scale F enlarges them
    (the model then detects at F×; a threshold chosen on the training pairs is chosen on them
    as they are, at 1×).

    \b
    Examples:
      changeseg finetune --from default --data folder:my_pairs
      changeseg finetune --from runs/aerial/best --data folder:my_pairs
      changeseg finetune --from c3po-mobilenetv2-fcn --data pcd:data/tsunami optim.lr=1e-4
      changeseg finetune --from default --data folder:small_frames --scale 3
    """
    trainer = import_training()
    from changeseg.evaluation.threshold import choose_threshold
    from changeseg.inference.multiscale import MAX_SCALE, MIN_SCALE, with_views
    from changeseg.inference.predictor import ChangeDetector
    from changeseg.io.checkpoints import model_folder
    from changeseg.training.recipe import FINETUNE_FEW_PAIRS, finetune_base, load_recipe
    from changeseg.training.weight_averaging import TUNED_FOLDER

    folder = model_folder(start)  # a model shipped with changeseg may be given by name
    if folder is not None:
        start = str(folder)
    if not MIN_SCALE <= scale <= MAX_SCALE:
        raise ConfigError(f"--scale {scale:g}: give a factor in [{MIN_SCALE:g}, {MAX_SCALE:g}]")
    base = finetune_base(start, list(data))
    if scale != 1.0:  # --config and KEY=VALUE may still set either
        base["data"]["train_scale"] = base["data"]["val_scale"] = scale
    if alpha < 1.0 and not Path(start).is_dir():
        raise ConfigError(f"--interpolate {alpha:g} needs --from a trained model to average with; "
                          f"{start} is a preset (use --interpolate 1)")
    recipe = load_recipe(config, list(overrides), base=base)
    # counted with the reader options the recipe gives each source (e.g. scenes, pairs per scene)
    pairs = count_pairs(recipe.data.train)
    few = pairs is not None and pairs < FINETUNE_FEW_PAIRS
    if few:
        base["data"]["val_fraction"] = 0.0  # --config and KEY=VALUE still set it
        recipe = load_recipe(config, list(overrides), base=base)
    if out is not None:
        recipe.output.dir = str(out)
    if few and recipe.data.val_fraction == 0:
        click.echo(f"{pairs} pairs (fewer than {FINETUNE_FEW_PAIRS}): training on all of them, none "
                   f"held out{'' if keep_threshold else ', the threshold chosen on them'} "
                   f"(data.val_fraction=0.2 holds some back)")
    best = trainer.train(recipe, resume=resume, progress_bar=False if no_progress else None)
    if trainer.is_rank_zero():
        if alpha < 1.0:
            average_with_start(Path(start), Path(best), alpha)
            click.echo(f"weights: {1 - alpha:g} × {start} + {alpha:g} × fine-tuned "
                       f"(the fine-tuned weights alone: {Path(best).with_name(TUNED_FOLDER)})")
        if not keep_threshold:
            summary = json.loads((recipe.run_dir() / "summary.json").read_text(encoding="utf-8"))
            detector = ChangeDetector.from_pretrained(best, precision="fp32")
            # at the scales the model records (--scale), as detect and evaluate will run it; its
            # own training pairs, seen enlarged, at 1x (docs/training.md, "`--scale F`")
            enlarged = recipe.data.train_scale != 1.0
            chosen = choose_threshold(with_views(detector), Path(best), summary["split"]["sources"],
                                      training_fallback=True,
                                      training_detector_1x=detector if enlarged else None)
            if chosen is not None:
                click.echo(f"decision threshold: {chosen['threshold']:.2f} (best F1 "
                           f"{chosen['f1']:.3f} on {chosen['pairs']} {chosen['on']} pairs)")
        click.echo(f"best model: {best}")
    return 0


def count_pairs(sources: Sequence[DatasetEntry]) -> int | None:
    """How many pairs the recipe's training sources hold together, each opened with its reader
    options; None when one of them generates its pairs (a synthetic source has no fixed count)."""
    from changeseg.data.datasets import is_synthetic, open_dataset

    if any(is_synthetic(source.spec) for source in sources):
        return None
    return sum(len(open_dataset(source.spec, **source.options).names) for source in sources)


def average_with_start(start: Path, best: Path, alpha: float) -> None:
    """Replace the run's `best/` by its interpolation with `start`; the fine-tuned weights move
    to `best-tuned/` (folders swapped by renames, so an interrupted run leaves both readable)."""
    from changeseg.training.weight_averaging import TUNED_FOLDER, interpolate_models

    tuned = best.with_name(TUNED_FOLDER)
    staging = best.with_name(f".{best.name}.interpolating")
    for stale in (tuned, staging):
        if stale.exists():
            shutil.rmtree(stale)
    interpolate_models(start, best, alpha, staging)
    best.rename(tuned)
    staging.rename(best)


def main(argv: Sequence[str] | None = None) -> int:
    """Run `changeseg finetune` with `argv` (default: sys.argv); returns the exit code."""
    return run_command(command, argv, "changeseg finetune")
