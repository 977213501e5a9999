"""Cut a trained model's MSF width F (`fpn_channels`) down, keeping its most important channels.

    .venv/bin/python tools/narrow_model.py default runs/chain/default-7-f64 --width 64

The narrowed model is the start of a fine-tuning run (`model.init_from`), not a model to use
as it is: the dropped channels carried part of what it knew (`changeseg.models.narrowing`).
Its config records where it came from (`metadata.narrowed_from`).

`--fresh-classifier` leaves out the head's last 1×1 conv (`head.4`), so the fine-tuning run
starts it from a fresh initialisation. On `default` link 7 cut to F=64, fine-tuning from the
cut classifier stalled (it predicted no change at all after 420 steps), while a fresh
classifier on the same narrowed network learnt at once (docs/models.md, `default`, "links 9
and 10, half the MSF width").
"""

from __future__ import annotations

import argparse
from dataclasses import replace

from changeseg.errors import ChangesegError
from changeseg.inference.export_cache import resolve_source
from changeseg.io.checkpoints import load_checkpoint, save_checkpoint
from changeseg.models.model import ChangeSegModel, ModelConfig
from changeseg.models.narrowing import narrow_msf_state
from changeseg.training.module import load_matching_weights

CLASSIFIER = "head.4."  # the FCN head's last 1x1 conv


def main() -> None:
    """Load, narrow, check that every tensor fits the narrower network, and save (float32)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="a packaged model name or a checkpoint folder")
    parser.add_argument("out", help="folder for the narrowed checkpoint")
    parser.add_argument("--width", type=int, default=64, help="the new fpn_channels (default 64)")
    parser.add_argument("--fresh-classifier", action="store_true",
                        help="leave out the head's last 1x1 conv: the fine-tune starts it afresh")
    args = parser.parse_args()

    try:
        source = resolve_source(args.model).folder
        config, state = load_checkpoint(source)
        narrowed, model = narrow_msf_state(state, config.model, args.width)
    except ChangesegError as exc:
        raise SystemExit(f"error: {exc}") from None
    wide = ModelConfig.from_dict(config.model).fpn_channels
    network = ChangeSegModel(ModelConfig.from_dict(model))
    loaded, skipped = load_matching_weights(network, narrowed)
    if skipped or len(loaded) != len(network.state_dict()):
        raise SystemExit(f"narrowed tensors do not fit the F={args.width} network: {skipped}")
    if args.fresh_classifier:
        narrowed = {name: t for name, t in narrowed.items() if not name.startswith(CLASSIFIER)}
    # a domain calibration was fitted on the wide network's probabilities: not carried over
    metadata = {**{k: v for k, v in config.metadata.items() if k != "domains"}, "narrowed_from": {
        "model": str(source), "fpn_channels": wide, "fresh_classifier": args.fresh_classifier}}
    save_checkpoint(args.out, narrowed, replace(config, model=model, metadata=metadata))
    print(f"{source} (F={wide}) -> {args.out} (F={args.width}): {len(narrowed)} tensors")


if __name__ == "__main__":
    main()
