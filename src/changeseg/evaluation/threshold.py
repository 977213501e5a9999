"""Choose a trained model's decision threshold on its own validation pairs.

`changeseg finetune` and `tools/choose_threshold.py` set a model's threshold to the best-F1
threshold of the ``sweep`` protocol over the validation pairs its run recorded (pixel counts
pooled over every non-synthetic source), in 0.01 steps. Only validation pairs are used.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from changeseg.evaluation.runner import evaluate
from changeseg.evaluation.selection import probability_function, validation_pairs
from changeseg.io.images import write_json


def choose_threshold(detector: Any, model_dir: Path, sources: Sequence[dict[str, Any]]
                     ) -> dict[str, Any] | None:
    """Set the model in `model_dir` to its best-F1 threshold on its run's validation pairs.

    `detector` is the model loaded from `model_dir` (anything with ``prepare``,
    ``predict_proba`` and ``config.threshold``, e.g. a `ChangeDetector`); `sources` is the
    run's ``summary.json`` ``split.sources``. Rewrites the model's config.json (atomically)
    and returns ``{"threshold", "f1", "pairs"}``, or None when there are no validation pairs
    to choose on.
    """
    parts = validation_pairs(sources)
    pairs = sum(len(part) for part in parts)
    if not pairs:
        return None
    report = evaluate(probability_function(detector, binary=True), itertools.chain(*parts),
                      protocols="sweep", threshold=detector.config.threshold, total=pairs,
                      progress=False)
    config_path = Path(model_dir) / "config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config["threshold"] = float(report["best_threshold"])
    config.setdefault("metadata", {})["threshold_choice"] = {
        "rule": "best F1 on the run's validation pairs", "pairs": pairs,
        "f1": report["best_f1"], "previous": detector.config.threshold}
    write_json(config_path, config)
    return {"threshold": config["threshold"], "f1": report["best_f1"], "pairs": pairs}
