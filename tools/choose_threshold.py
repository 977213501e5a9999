"""Set a trained run's decision threshold to its best-F1 threshold on the run's validation pairs.

    .venv/bin/python tools/choose_threshold.py runs/aerial      # rewrites runs/aerial/best/config.json

The validation pairs of every non-synthetic source recorded in RUN/summary.json are pooled
(pixel counts over all of them, the `global` protocol) and the threshold is swept in 0.01
steps, exactly as `changeseg finetune` does after fine-tuning, at the model's own scales. Only
validation pairs are used.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from changeseg.evaluation.threshold import choose_threshold
from changeseg.inference.multiscale import with_views
from changeseg.inference.predictor import ChangeDetector


def main() -> None:
    """Read RUN/summary.json, choose the threshold on RUN/best and print the choice."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a training run folder (holding summary.json and best/)")
    args = parser.parse_args()
    summary = json.loads((args.run / "summary.json").read_text(encoding="utf-8"))
    detector = ChangeDetector.from_pretrained(args.run / "best", precision="fp32")
    # at the scales the model records (a run with data.val_scale), as detect and evaluate run it
    chosen = choose_threshold(with_views(detector), args.run / "best", summary["split"]["sources"])
    if chosen is None:
        raise SystemExit(f"{args.run}: no non-synthetic validation pairs to choose a threshold on")
    print(f"{args.run / 'best'}: threshold {chosen['threshold']:.2f} "
          f"(best F1 {chosen['f1']:.4f} on {chosen['pairs']} validation pairs)")


if __name__ == "__main__":
    main()
