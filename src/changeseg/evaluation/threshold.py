"""Choose a trained model's decision threshold on its own validation pairs.

`changeseg finetune` and `tools/choose_threshold.py` set a model's threshold to the best-F1
threshold of the ``sweep`` protocol over the validation pairs its run recorded (pixel counts
pooled over every non-synthetic source), in 0.01 steps. A fine-tune on a handful of pairs holds
none back; it asks for its training pairs instead (`training_fallback`), and a model fine-tuned on
pairs enlarged F× scores those training pairs as they are, at 1× (`training_detector_1x`).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from changeseg.evaluation.runner import evaluate
from changeseg.evaluation.selection import probability_function, recorded_pairs, validation_pairs
from changeseg.io.images import write_json


def choose_threshold(detector: Any, model_dir: Path, sources: Sequence[dict[str, Any]],
                     training_fallback: bool = False,
                     training_detector_1x: Any | None = None) -> dict[str, Any] | None:
    """Set the model in `model_dir` to its best-F1 threshold on its run's validation pairs.

    `detector` is the model loaded from `model_dir` (anything with ``prepare``,
    ``predict_proba`` and ``config.threshold``, e.g. a `ChangeDetector`, wrapped by
    `changeseg.inference.multiscale.with_views` so that a model recording its own scales is
    scored at them); `sources` is the run's ``summary.json`` ``split.sources``. With
    `training_fallback`, a run without validation pairs chooses on its training pairs; a model
    that trained on them enlarged has seen them at its own scale, where their best threshold
    comes out higher than new pairs' do, so `training_detector_1x`, when given (the model at 1×),
    scores them instead (measured on the TSUNAMI leave-one-out: docs/training.md, "`--scale F`").
    Rewrites the model's config.json (atomically) and returns ``{"threshold", "f1", "pairs",
    "on"}`` (`on`: "validation" or "training"), or None when there are no pairs to choose on.
    """
    on, scorer = "validation", detector
    parts = validation_pairs(sources)
    if training_fallback and not any(len(part) for part in parts):
        on, parts = "training", recorded_pairs(sources, "train_names")
        if training_detector_1x is not None:
            scorer = training_detector_1x
    pairs = sum(len(part) for part in parts)
    if not pairs:
        return None
    report = evaluate(probability_function(scorer, binary=True), itertools.chain(*parts),
                      protocols="sweep", threshold=detector.config.threshold, total=pairs,
                      progress=False)
    config_path = Path(model_dir) / "config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config["threshold"] = float(report["best_threshold"])
    config.setdefault("metadata", {})["threshold_choice"] = {
        "rule": f"best F1 on the run's {on} pairs{' at 1x' if scorer is not detector else ''}",
        "pairs": pairs,
        "f1": report["best_f1"], "previous": detector.config.threshold}
    write_json(config_path, config)
    return {"threshold": config["threshold"], "f1": report["best_f1"], "pairs": pairs, "on": on}
