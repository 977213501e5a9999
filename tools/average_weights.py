"""Average the weights of checkpoints of one network (a "model soup"), or join them as an ensemble.

    .venv/bin/python tools/average_weights.py runs/soup-link12-13 \
        runs/default-link12-f64/best runs/default-link13-f64/best
    .venv/bin/python tools/average_weights.py --ensemble runs/pcb-ensemble pcb runs/pcb-seed43/last

Checkpoints fine-tuned from a common start stay in one basin of the loss, where the mean of their
weights often scores at least as well as each (Wortsman et al. 2022, "Model soups"). Every floating
tensor is averaged (batch-norm statistics included); integer tensors (batch-norm step counters)
come from the first checkpoint, as does the config. The config records the ingredients
(`metadata.averaged_from`). The result is an uncalibrated checkpoint: calibrate it as any run.

A calibrated ingredient (a packaged model, or `tools/calibrate_model.py`'s output: its config
has `metadata.calibration`) has a temperature and a no-change bias folded into its classifier;
that calibration is undone first, so every ingredient is averaged in the logits it was trained
in (a soup before 2026-12-05 mixed a packaged model's folded classifier with raw ones).

`--ensemble` keeps every checkpoint's weights and averages their *outputs* instead
(`changeseg.models.ensemble`: one network whose forward pass is the mean of the members'
logits; `config.model.ensemble` says how many). That is what independently trained runs need —
their weights lie in different basins, where a soup fails — at the cost of one forward pass per
member. The members must hold out the same validation pairs (else no pair is held out from all
of them, and `--names model-val` would score pairs one member trained on); the config records
each member's source and training run (`metadata.ensemble_of`).
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from typing import Any

import torch

from changeseg.errors import ChangesegError
from changeseg.evaluation.calibration import Calibration, fold_into_model
from changeseg.io.checkpoints import CheckpointConfig, load_checkpoint, model_folder, save_checkpoint
from changeseg.models.ensemble import MEMBERS_PREFIX
from changeseg.models.model import build_model

# What `metadata.ensemble_of` keeps of each member's training record.
TRAINING_SUMMARY = ("recipe_name", "seed", "global_step", "selected_on", "started", "finished",
                    "duration_s", "machine")


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


def uncalibrated_state(config: CheckpointConfig, state: dict[str, torch.Tensor]
                       ) -> tuple[dict[str, torch.Tensor], Calibration | None]:
    """The checkpoint's weights with its folded calibration (if its config records one) undone."""
    recorded = folded_calibration(config)
    if recorded is None:
        return state, None
    calibration = Calibration(**recorded)
    model = build_model(**config.model)
    model.load_state_dict({name: tensor.float() if tensor.is_floating_point() else tensor
                           for name, tensor in state.items()})
    with torch.no_grad():
        fold_into_model(model, calibration.inverted())
    return model.state_dict(), calibration


def ensemble_state(states: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The state dict of an `EnsembleModel` whose members are `states`, in order (float32)."""
    return {f"{MEMBERS_PREFIX}{index}.{name}": tensor.float() if tensor.is_floating_point() else tensor
            for index, state in enumerate(states) for name, tensor in state.items()}


def ensemble_metadata(sources: list[str], configs: list[CheckpointConfig]) -> dict[str, Any]:
    """The first member's metadata (its training record, validation names) plus `ensemble_of`:
    each member's source and training run. Raises SystemExit when the members' held-out pairs
    differ."""
    def held_out(config: CheckpointConfig) -> tuple[list[str], list[Any]]:
        sources_ = ((config.metadata.get("training") or {}).get("data") or {}).get("sources") or []
        return (list(config.metadata.get("val_names") or []),
                [(s.get("spec"), list(s.get("val_names") or [])) for s in sources_])

    for source, config in zip(sources[1:], configs[1:]):
        if held_out(config) != held_out(configs[0]):
            raise SystemExit(f"error: {source} holds out other validation pairs than {sources[0]}: "
                             "no pair would be held out from every member")
    metadata = stripped_metadata(configs[0])
    metadata["ensemble_of"] = [
        {"source": source, "training": {key: (config.metadata.get("training") or {}).get(key)
                                        for key in TRAINING_SUMMARY},
         "calibration_undone": folded_calibration(config)}
        for source, config in zip(sources, configs)]
    return metadata


def folded_calibration(config: CheckpointConfig) -> dict[str, float] | None:
    """The temperature and no-change bias folded into a checkpoint's classifier, if it records one."""
    recorded = config.metadata.get("calibration")
    if not recorded:
        return None
    return {"temperature": float(recorded["temperature"]),
            "no_change_bias": float(recorded["no_change_bias"])}


def stripped_metadata(config: CheckpointConfig) -> dict[str, Any]:
    """`config`'s metadata without what no longer holds for a combined checkpoint: its calibration,
    where it was packaged from, and its domain calibrations (which sit on top of its own)."""
    return {key: value for key, value in config.metadata.items()
            if key not in ("calibration", "packaged_from", "domains")}


def main() -> None:
    """Load the checkpoints, combine them (weights averaged, or an output ensemble), save the
    result (float32, uncalibrated) with the first one's config."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="folder for the averaged checkpoint (or the ensemble)")
    parser.add_argument("checkpoints", nargs="+",
                        help="two or more checkpoint folders (or packaged model names) of one network")
    parser.add_argument("--ensemble", action="store_true",
                        help="keep each checkpoint's weights and average the outputs (an output ensemble)")
    args = parser.parse_args()
    if len(args.checkpoints) < 2:
        raise SystemExit("error: give at least two checkpoints to combine")
    try:
        loaded = [load_checkpoint(model_folder(given) or given) for given in args.checkpoints]
    except ChangesegError as exc:
        raise SystemExit(f"error: {exc}") from None
    config = loaded[0][0]
    if any(other.model != config.model for other, _ in loaded[1:]):
        raise SystemExit("error: the checkpoints' model configs differ: not one network")
    if any((other.mean, other.std, other.class_names) != (config.mean, config.std, config.class_names)
           for other, _ in loaded[1:]):
        raise SystemExit("error: the checkpoints' input normalisation or class names differ")
    if int(config.model.get("ensemble", 1)) > 1:
        raise SystemExit("error: the checkpoints are ensembles already; combine their members instead")
    states = []
    for folder, (ingredient, state) in zip(args.checkpoints, loaded):
        state, undone = uncalibrated_state(ingredient, state)
        if undone is not None:
            print(f"{folder}: folded calibration undone (T {undone.temperature:.3f}, "
                  f"no-change bias {undone.no_change_bias:+.3f})")
        states.append(state)
    # an uncalibrated result decides at the threshold its first ingredient had before calibration
    threshold = float(config.metadata.get("calibration", {}).get("previous_threshold", config.threshold))
    if args.ensemble:
        metadata = ensemble_metadata(args.checkpoints, [c for c, _ in loaded])
        joined = ensemble_state(states)
        model = {**config.model, "ensemble": len(states)}
        save_checkpoint(args.out, joined, replace(config, model=model, metadata=metadata,
                                                  threshold=threshold))
        print(f"joined {len(states)} checkpoints as an output ensemble -> {args.out}: "
              f"{len(joined)} tensors")
        return
    averaged = average_states(states)
    metadata = stripped_metadata(config)
    metadata["averaged_from"] = list(args.checkpoints)
    save_checkpoint(args.out, averaged, replace(config, metadata=metadata, threshold=threshold))
    print(f"averaged {len(args.checkpoints)} checkpoints -> {args.out}: {len(averaged)} tensors")


if __name__ == "__main__":
    main()
