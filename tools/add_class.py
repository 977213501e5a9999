"""Give a trained checkpoint one more output class, started as a copy of an existing class.

    .venv/bin/python tools/add_class.py runs/chain/pcb-2 runs/chain/pcb-2-cores --name core --copy 1

The final classifier (the head's last 1×1 convolution) gains a row: the weights and bias of
class `--copy`, so the new model at step 0 scores the new class as it scored that one (e.g.
`pcb`'s "core" class starts as its "changed" class; a `model.init_from` of the new folder then
trains all three). Everything else, the threshold and the metadata, are kept (but for domain
calibrations, `metadata.domains`, fitted on the old outputs); the class count in `config.json` grows
by one and `--name` is appended to its class names.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace

import torch

from changeseg.errors import ChangesegError
from changeseg.io.checkpoints import load_checkpoint, save_checkpoint


def add_class(source: str, target: str, name: str, copy: int) -> int:
    """Write `target`: `source` with one more class copied from class `copy`; returns the new count."""
    config, state = load_checkpoint(source)
    classes = int(config.model["num_classes"])
    if not 0 <= copy < classes:
        raise ChangesegError(f"--copy must name a class 0..{classes - 1}, got {copy}")
    if name in config.class_names:
        raise ChangesegError(f"{source} already has a class named {name!r}")
    rows = [key for key, tensor in state.items()
            if key.endswith(".weight") and tensor.ndim == 4 and tensor.shape[0] == classes
            and key.removesuffix(".weight") + ".bias" in state]
    if len(rows) != 1:
        raise ChangesegError(f"{source}: expected one final classifier with {classes} outputs, "
                             f"found {rows or 'none'}")
    weight, bias = rows[0], rows[0].removesuffix(".weight") + ".bias"
    state[weight] = torch.cat([state[weight], state[weight][copy : copy + 1]])
    state[bias] = torch.cat([state[bias], state[bias][copy : copy + 1]])
    model = {**config.model, "num_classes": classes + 1}
    metadata = {key: value for key, value in config.metadata.items() if key != "domains"}
    save_checkpoint(target, state, replace(config, model=model, metadata=metadata,
                                           class_names=[*config.class_names, name]))
    return classes + 1


def main() -> None:
    """Command line: SOURCE TARGET --name NAME --copy INDEX."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", help="a checkpoint folder or packaged model name")
    parser.add_argument("target", help="folder for the new checkpoint")
    parser.add_argument("--name", required=True, help="the new class's name")
    parser.add_argument("--copy", type=int, default=1, help="the class the new one starts as (default 1)")
    args = parser.parse_args()
    try:
        count = add_class(args.source, args.target, args.name, args.copy)
    except ChangesegError as error:
        sys.exit(f"error: {error}")
    print(f"{args.target}: {count} classes")


if __name__ == "__main__":
    main()
