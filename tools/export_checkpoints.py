"""Export a training run's periodic checkpoints as model folders, to compare them by a measure
the trainer did not monitor (e.g. the DeepPCB box F-score with `tools/sweep_box_threshold.py`).

    .venv/bin/python tools/export_checkpoints.py runs/pcb-link3      # -> runs/pcb-link3/steps/step0000100 ...

Keep the checkpoints while training with `trainer.keep_checkpoints=N` (default 1: only the
newest periodic one survives). Each folder takes its configuration from the run's exported
`best/` (or `last/`) with the checkpoint's step recorded.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from changeseg.errors import ChangesegError
from changeseg.training.trainer import export_checkpoint


def main(argv: list[str] | None = None) -> int:
    """Export every `checkpoints/step*.ckpt` of the run; returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a training run folder (with checkpoints/ and best/ or last/)")
    parser.add_argument("--out", type=Path, default=None, help="where the folders go (default RUN/steps)")
    args = parser.parse_args(argv)
    exported = [args.run / name for name in ("best", "last") if (args.run / name / "config.json").is_file()]
    like = exported[0] if exported else None
    checkpoints = sorted((args.run / "checkpoints").glob("step*.ckpt"))
    if like is None or not checkpoints:
        print(f"error: {args.run} has no exported best/ or last/ folder or no step*.ckpt checkpoints",
              file=sys.stderr)
        return 1
    out = args.out or args.run / "steps"
    try:
        for checkpoint in checkpoints:
            print(export_checkpoint(checkpoint, like, out / checkpoint.stem))
    except ChangesegError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
