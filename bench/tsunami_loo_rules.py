"""Score a finished TSUNAMI leave-one-out run (`bench/tsunami_loo.sh`) under other decision
thresholds and other WiSE-FT mixes, without training again.

For each split k the fine-tuned weights alone (`OUT/splitK/run/best-tuned` where the fine-tune
averaged its `best/` with the starting model, else `best/`), or their average with the starting
model, `(1 - alpha) · start + alpha · tuned`, for every --alphas value (0 is the starting model
itself), are scored on held-out pair k at three thresholds:

- `kept`: the starting model's own threshold;
- `fine-tuning pairs`: the best-F1 threshold on the split's other two pairs pooled (what
  `changeseg finetune` chooses when it holds no pair back);
- `validation pair`: the best-F1 threshold on the pair the fine-tune held back, when it held
  one (`summary.json`; what `changeseg finetune` chooses with a validation split);
- `fine-tuning pairs at 1x`: for a model that records its own scales (`changeseg finetune
  --scale F`), the best-F1 threshold on the other two pairs seen at 1x — the pair as it is —
  while the held-out pair is still scored at the model's scales.

Every model is run at the scales it records, as `changeseg evaluate` runs it.

    OMP_WAIT_POLICY=PASSIVE python bench/tsunami_loo_rules.py runs/tsunami-loo-all20 --alphas 0,0.5,1

Prints one row per (alpha, rule): the thresholds, the held-out F1 of each split, their mean and
the F1 of the three held-out pairs' pixels pooled.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

PAIRS = 3


def f1_of(counts: np.ndarray) -> float:
    """F1 from (true positives, false positives, false negatives), as `changeseg evaluate` scores it."""
    from changeseg.evaluation.pixels import exact_scores

    return exact_scores(*(int(c) for c in counts))["f1"]


def counts_at(probability: np.ndarray, mask: np.ndarray, threshold: float) -> np.ndarray:
    """(tp, fp, fn) of `probability >= threshold` against the binary `mask`."""
    predicted, truth = probability >= threshold, mask.astype(bool)
    return np.array([(predicted & truth).sum(), (predicted & ~truth).sum(), (~predicted & truth).sum()])


def best_threshold(probabilities: Sequence[np.ndarray], masks: Sequence[np.ndarray]) -> float:
    """The best-F1 threshold on these pairs' pixels pooled (0.01 steps, as `changeseg finetune`)."""
    from changeseg.evaluation.calibration import best_f1_threshold

    prob = np.concatenate([p.ravel() for p in probabilities])
    target = np.concatenate([m.ravel() for m in masks])
    return best_f1_threshold(prob, target, np.round(np.arange(0.01, 1.0, 0.01), 2))[0]


def rule_thresholds(probabilities: Sequence[np.ndarray], masks: Sequence[np.ndarray], held_out: int,
                    validation: int | None, kept: float,
                    at_one: Sequence[np.ndarray] | None = None) -> dict[str, float]:
    """Each rule's threshold for the split that holds out pair `held_out` (module docstring);
    `at_one`, the pairs' probabilities at 1x for a model that runs at other scales."""
    others = [i for i in range(len(probabilities)) if i != held_out]
    rules = {"kept": kept,
             "fine-tuning pairs": best_threshold([probabilities[i] for i in others],
                                                 [masks[i] for i in others])}
    if validation is not None:
        rules["validation pair"] = best_threshold([probabilities[validation]], [masks[validation]])
    if at_one is not None:
        rules["fine-tuning pairs at 1x"] = best_threshold([at_one[i] for i in others],
                                                          [masks[i] for i in others])
    return rules


def tuned_weights(run: Path) -> Path:
    """The fine-tuned weights alone of a `changeseg finetune` run: `best-tuned/` when the run
    averaged `best/` with its starting model (--interpolate below 1), else `best/`."""
    from changeseg.training.weight_averaging import TUNED_FOLDER

    tuned = run / TUNED_FOLDER
    return tuned if (tuned / "config.json").is_file() else run / "best"


def held_back(run: Path, names: list[str]) -> int | None:
    """The index of the pair the fine-tune held back for validation, if any (its summary.json)."""
    sources = json.loads((run / "summary.json").read_text())["split"]["sources"]
    held = [name for source in sources for name in source.get("val_names") or []]
    return names.index(held[0]) if held else None


@contextlib.contextmanager
def one_error_line(start: str | None = None) -> Iterator[None]:
    """Turn changeseg's errors (a run's recipe that does not parse; a model that does not load or
    mix, say fine-tunes of another architecture than `start`) into one error line and exit
    status 1."""
    from changeseg.errors import ChangesegError

    try:
        yield
    except ChangesegError as error:
        where = f"with starting model {start} (the model the fine-tunes started from): " if start else ""
        print(f"error: {where}{error}", file=sys.stderr)
        raise SystemExit(1) from None


def started_from(run: Path) -> str:
    """The model a fine-tune started from, as its `recipe.yaml` records it (`model.init_from`);
    `default` for a run that records none."""
    from changeseg.training.recipe import read_yaml

    recipe = read_yaml(run / "recipe.yaml") if (run / "recipe.yaml").is_file() else {}
    model = recipe.get("model")
    return str((model.get("init_from") if isinstance(model, dict) else None) or "default")


def main() -> int:
    """Score every split of the leave-one-out folder under every alpha and rule."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="the OUT folder of bench/tsunami_loo.sh")
    parser.add_argument("--alphas", default="1", help="WiSE-FT mixes, comma-separated, in [0, 1]")
    parser.add_argument("--data", default="../shared/data/tsunami", help="the TSUNAMI folder")
    parser.add_argument("--start", help="the model the fine-tunes started from (default: what the first "
                        "split's recipe.yaml records, as bench/tsunami_loo.sh's FROM set it)")
    args = parser.parse_args()
    try:
        alphas = [float(a) for a in args.alphas.split(",")]
        if not all(0.0 <= a <= 1.0 for a in alphas):
            raise ValueError
    except ValueError:
        print(f"error: --alphas takes numbers in [0, 1] separated by commas, got {args.alphas!r}",
              file=sys.stderr)
        return 1
    runs = [args.out / f"split{k}" / "run" for k in range(PAIRS)]
    missing = [run for run in runs if not (run / "best" / "config.json").is_file()]
    if missing:
        print(f"error: no fine-tuned model in {missing[0]}/best (run bench/tsunami_loo.sh first)",
              file=sys.stderr)
        return 1

    from changeseg.data.datasets import open_dataset
    from changeseg.evaluation.selection import probability_function
    from changeseg.inference.multiscale import model_scales, with_views
    from changeseg.inference.predictor import ChangeDetector
    from changeseg.io.checkpoints import model_folder, read_config
    from changeseg.training.weight_averaging import interpolate_models

    with one_error_line():
        start_name = args.start or started_from(runs[0])
    start = model_folder(start_name) or Path(start_name)
    with one_error_line(start_name):
        kept = read_config(start).threshold
    dataset = open_dataset(f"pcd:{args.data}")
    samples = [dataset[i] for i in range(len(dataset))]
    masks = [np.asarray(sample["mask"]) == 1 for sample in samples]

    def probabilities(detector: ChangeDetector, scales: tuple[float, ...] | None = None) -> list[np.ndarray]:
        predict = probability_function(with_views(detector, scales=scales), binary=True)
        return [predict(sample["reference"], sample["comparison"]) for sample in samples]

    rows: dict[tuple[float, str], list[tuple[float, np.ndarray]]] = {}
    with tempfile.TemporaryDirectory() as scratch, one_error_line(start_name):
        for k, run in enumerate(runs):
            validation = held_back(run, list(dataset.names))
            tuned = tuned_weights(run)
            for alpha in alphas:
                folder = start if alpha == 0 else tuned
                if 0 < alpha < 1:
                    folder = interpolate_models(start, tuned, alpha, Path(scratch) / f"{k}-{alpha}")
                detector = ChangeDetector.from_pretrained(folder, precision="fp32")
                probs = probabilities(detector)
                at_one = probabilities(detector, (1.0,)) if model_scales(detector) != (1.0,) else None
                for rule, threshold in rule_thresholds(probs, masks, k, validation, kept, at_one).items():
                    scored = counts_at(probs[k], masks[k], threshold)
                    rows.setdefault((alpha, rule), []).append((threshold, scored))
    for (alpha, rule), scored in rows.items():
        f1s = [f1_of(c) for _, c in scored]
        pooled = f1_of(sum(c for _, c in scored))
        print(f"alpha {alpha:.2f}  {rule:18s} thresholds {' / '.join(f'{t:.2f}' for t, _ in scored)}  "
              f"F1 {' / '.join(f'{f:.3f}' for f in f1s)}  mean {np.mean(f1s):.3f}  pooled {pooled:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
