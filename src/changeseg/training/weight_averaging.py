"""Weight-space interpolation of a fine-tuned model with the model it started from.

Fine-tuning on a handful of pairs pulls a model towards those pairs and away from what it knew;
averaging the two sets of weights, `(1 - alpha) * start + alpha * tuned`, keeps much of both
(WiSE-FT, Wortsman et al., "Robust fine-tuning of zero-shot models", CVPR 2022). It applies
because a fine-tune starts from the other model's exact weights and architecture;
`changeseg finetune --interpolate ALPHA` uses it.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from changeseg.errors import ConfigError
from changeseg.io.checkpoints import check_state_dict, load_checkpoint, save_checkpoint

TUNED_FOLDER = "best-tuned"
"""Where `changeseg finetune --interpolate` keeps the fine-tuned weights alone, beside the averaged
`best/` of the same run."""


def interpolate_models(start: str | os.PathLike, tuned: str | os.PathLike, alpha: float,
                       out: str | os.PathLike) -> Path:
    """Write `(1 - alpha) * start + alpha * tuned` (floating-point tensors; integer buffers such
    as BatchNorm's batch counters are the tuned model's) as a model folder at `out`.

    The configuration (threshold included) is the tuned model's, with the interpolation
    recorded in `metadata.interpolation`. Raises ConfigError for an alpha outside [0, 1] and
    CheckpointError when the two models' tensors do not match.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ConfigError(f"interpolation alpha must lie in [0, 1], got {alpha}")
    _, start_state = load_checkpoint(start)
    config, tuned_state = load_checkpoint(tuned)
    check_state_dict(tuned_state, start_state, str(start))
    mixed = {name: (1.0 - alpha) * start_state[name] + alpha * value if value.is_floating_point()
             else value for name, value in tuned_state.items()}
    metadata = {**config.metadata,
                "interpolation": {"start": str(start), "tuned": str(tuned), "alpha": float(alpha),
                                  "rule": "(1 - alpha) * start + alpha * tuned (WiSE-FT)"}}
    return save_checkpoint(out, mixed, replace(config, metadata=metadata))
