"""Average the weights of checkpoints of one network (a "model soup"), e.g. two links of a chain.

    .venv/bin/python tools/average_weights.py runs/soup-link12-13 \
        runs/default-link12-f64/best runs/default-link13-f64/best

Checkpoints fine-tuned from a common start stay in one basin of the loss, where the mean of their
weights often scores at least as well as each (Wortsman et al. 2022, "Model soups"). Every floating
tensor is averaged (batch-norm statistics included); integer tensors (batch-norm step counters)
come from the first checkpoint, as does the config. The config records the ingredients
(`metadata.averaged_from`). The result is an uncalibrated checkpoint: calibrate it as any run.
"""

from __future__ import annotations

import argparse
from dataclasses import replace

import torch

from changeseg.errors import ChangesegError
from changeseg.io.checkpoints import load_checkpoint, save_checkpoint


def average_states(states: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Element-wise float32 mean of float tensors (ints from the first); same names and shapes needed."""
    first = states[0]
    for index, state in enumerate(states[1:], start=2):
        if state.keys() != first.keys():
            raise SystemExit(f"checkpoint {index} has other tensors than the first: not one network")
        mismatched = [name for name in first if state[name].shape != first[name].shape]
        if mismatched:
            raise SystemExit(f"checkpoint {index}: shapes differ from the first's ({mismatched[0]}, ...)")
    # float32 even where the first state is float16 (a packaged model): the mean needs the precision
    return {name: torch.stack([s[name].float() for s in states]).mean(0)
            if tensor.is_floating_point() else tensor.clone()
            for name, tensor in first.items()}


def main() -> None:
    """Load the checkpoints, average them, save the mean (float32) with the first one's config."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="folder for the averaged checkpoint")
    parser.add_argument("checkpoints", nargs="+", help="two or more checkpoint folders of one network")
    args = parser.parse_args()
    if len(args.checkpoints) < 2:
        raise SystemExit("error: give at least two checkpoints to average")
    try:
        loaded = [load_checkpoint(folder) for folder in args.checkpoints]
    except ChangesegError as exc:
        raise SystemExit(f"error: {exc}") from None
    config = loaded[0][0]
    if any(other.model != config.model for other, _ in loaded[1:]):
        raise SystemExit("error: the checkpoints' model configs differ: not one network")
    averaged = average_states([state for _, state in loaded])
    metadata = {**config.metadata, "averaged_from": list(args.checkpoints)}
    save_checkpoint(args.out, averaged, replace(config, metadata=metadata))
    print(f"averaged {len(args.checkpoints)} checkpoints -> {args.out}: {len(averaged)} tensors")


if __name__ == "__main__":
    main()
