"""Which pairs and which probabilities an evaluation scores: `--names` selections (a file,
or a model's own held-out pairs), `KEY=VALUE` reader options, and the probability function of
a detector. Shared by `changeseg evaluate`, `finetune` and the tools."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["parse_options", "probability_function", "read_names"]


def parse_options(pairs: Sequence[str], what: str) -> dict[str, Any]:
    """`KEY=VALUE` strings → a dict, values parsed as YAML scalars (numbers, booleans, lists)."""
    import yaml

    from changeseg.errors import InputError

    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InputError(f"{what} {pair!r} must look like KEY=VALUE")
        options[key.strip()] = yaml.safe_load(value) if value else ""
    return options


def read_names(source: str, model_metadata: dict[str, Any], data_spec: str | None = None) -> list[str]:
    """Pair names to evaluate: a file (one per line) or `model-val` (the model's own val split).

    With `model-val` and a `data_spec`, only the validation pairs the model's training carved
    from that data set are taken (its training sources are matched by format and folder
    name), so a model trained on several sets is scored on each set's own held-out pairs.
    `model-val:OTHER` takes the validation pairs of another model (a packaged name or a
    folder), e.g. to score `default` on exactly the pairs `pcb` held out.
    """
    from changeseg.errors import InputError

    if source.startswith("model-val:"):
        from changeseg.inference.predictor import packaged_models
        from changeseg.io.checkpoints import read_config

        other = source.partition(":")[2]
        folder = Path(other) if Path(other).is_dir() else packaged_models().get(other)
        if folder is None:
            raise InputError(f"--names {source}: no model folder or packaged model {other!r}")
        return read_names("model-val", read_config(folder).metadata, data_spec)
    if source == "model-val":
        names = model_metadata.get("val_names")
        if not names:
            raise InputError("--names model-val: this model's checkpoint records no validation names")
        if data_spec is None:
            return [str(n) for n in names]
        sources = (model_metadata.get("training") or {}).get("data", {}).get("sources") or []
        matching = [s for s in sources if _same_source(s.get("spec", ""), data_spec)]
        if not matching:
            known = ", ".join(s.get("spec", "?") for s in sources) or "none recorded"
            raise InputError(f"--names model-val: the model was not trained on {data_spec} "
                             f"(its sources: {known})")
        return [str(n) for s in matching for n in s.get("val_names") or []]
    path = Path(source)
    if not path.is_file():
        raise InputError(f"--names: file not found: {path}")
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def _same_source(trained_spec: str, data_spec: str) -> bool:
    """Whether two FORMAT:PATH specs name the same format and the same folder name."""
    fmt_a, _, path_a = trained_spec.partition(":")
    fmt_b, _, path_b = data_spec.partition(":")
    return fmt_a.lower() == fmt_b.lower() and Path(path_a.rstrip("/")).name == Path(path_b.rstrip("/")).name


def probability_function(detector: Any, binary: bool) -> Any:
    """`predict(reference, comparison)` for `report.evaluate`: change probability or class probabilities."""

    def predict(reference: Any, comparison: Any) -> Any:
        probs = detector.predict_proba(detector.prepare(reference, "reference"),
                                       detector.prepare(comparison, "comparison"))
        return 1.0 - probs[0] if binary else probs

    return predict
