"""Recipes compared over several seeds: one row per run, then each recipe's mean and spread.

Each run is an evaluation folder written by `bench/validate_models.sh` (one sub-folder per
validation set, `MODEL-SET/metrics.json`); a recipe is a group of such folders, one per seed.
The table gives the global F1 at each run's own threshold per set, then per recipe the mean and
the sample standard deviation over its seeds, so a difference between recipes can be read
against the seed-to-seed spread:

    python bench/seed_table.py "link 5=runs/eval-aerial-link5-seed53,runs/eval-aerial-link5-seed54" \\
        "link 8=runs/eval-aerial-link8-seed60,runs/eval-aerial-link8-seed61" --model aerial
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

DEFAULT_SETS = ("oscd", "airchange", "levir_samples", "dsifn_samples", "egy_ncc")


def parse_group(text: str) -> tuple[str, list[Path]]:
    """'NAME=DIR,DIR,…' → (NAME, [DIR, …]); raises ValueError for anything else."""
    name, sep, dirs = text.partition("=")
    paths = [Path(d) for d in dirs.split(",") if d.strip()]
    if not sep or not name.strip() or not paths:
        raise ValueError(f"a recipe reads NAME=DIR[,DIR...], got {text!r}")
    return name.strip(), paths


def run_scores(run: Path, model: str, sets: tuple[str, ...]) -> list[float]:
    """Global F1 at the run's threshold for each set, from `run/MODEL-SET/metrics.json`."""
    scores = []
    for name in sets:
        path = run / f"{model}-{name}" / "metrics.json"
        try:
            report = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise ValueError(f"{path}: {exc}") from None
        scores.append(float(report["protocols"]["global"]["f1"]))
    return scores


def seed_table(groups: list[tuple[str, list[Path]]], model: str, sets: tuple[str, ...]) -> str:
    """A Markdown table: each run's scores, then each recipe's mean ± standard deviation."""
    lines = [f"| recipe | run | {' | '.join(sets)} | mean over sets |",
             f"|---|---|{'---|' * len(sets)}---|"]
    for name, runs in groups:
        per_run = [run_scores(run, model, sets) for run in runs]
        for run, scores in zip(runs, per_run, strict=True):
            cells = " | ".join(f"{s:.3f}" for s in scores)
            lines.append(f"| {name} | {run.name} | {cells} | {statistics.fmean(scores):.3f} |")
        columns = list(zip(*per_run, strict=True))
        spread = [statistics.stdev(c) if len(c) > 1 else 0.0 for c in columns]
        cells = " | ".join(f"**{statistics.fmean(c):.3f}** ± {sd:.3f}"
                           for c, sd in zip(columns, spread, strict=True))
        overall = statistics.fmean(statistics.fmean(s) for s in per_run)
        lines.append(f"| {name} | mean ± sd of {len(runs)} | {cells} | **{overall:.3f}** |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Print the table for the recipes on the command line; one error line and 1 on bad input."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipes", nargs="+", help="NAME=EVAL_DIR[,EVAL_DIR...] per recipe")
    parser.add_argument("--model", default="aerial", help="the MODEL prefix of the set folders")
    parser.add_argument("--sets", default=",".join(DEFAULT_SETS), help="comma-separated set names")
    args = parser.parse_args(argv)
    sets = tuple(s for s in args.sets.split(",") if s)
    try:
        table = seed_table([parse_group(g) for g in args.recipes], args.model, sets)
    except ValueError as exc:
        sys.exit(f"error: {exc}")  # one line on stderr, exit status 1
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
