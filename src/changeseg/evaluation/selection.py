"""Which pairs and which probabilities an evaluation scores: `--names` selections (a file,
or a model's own held-out pairs), a run's validation pairs, `KEY=VALUE` reader options, and
the probability function of a detector. Shared by `changeseg evaluate`, `finetune` and the
tools."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from changeseg.data.datasets import is_synthetic, open_dataset, same_source
from changeseg.data.pairs import PairSubset

__all__ = ["calibration_pairs", "model_validation_pairs", "parse_options", "probability_function",
           "read_names", "rebase_spec", "spread_selection", "validation_pairs"]

DATA_ENV = "CHANGESEG_DATA"
DEFAULT_DATA_ROOT = "../shared/data"
_RECORDED_ROOT = "shared/data/"
CALIBRATION_PAIRS = 32  # where the packaged models' training recorded its data


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
        from changeseg.io.checkpoints import model_folder, read_config

        other = source.partition(":")[2]
        folder = model_folder(other)
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
        matching = [s for s in sources if same_source(s.get("spec", ""), data_spec)]
        if not matching:
            known = ", ".join(s.get("spec", "?") for s in sources) or "none recorded"
            raise InputError(f"--names model-val: the model was not trained on {data_spec} "
                             f"(its sources: {known})")
        return [str(n) for s in matching for n in s.get("val_names") or []]
    path = Path(source)
    if not path.is_file():
        raise InputError(f"--names: file not found: {path}")
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def validation_pairs(sources: Sequence[dict[str, Any]]) -> list[PairSubset]:
    """The validation pairs a training run recorded (summary.json `split.sources`), re-opened.

    Synthetic sources are skipped: their pairs are generated, not read.
    """
    return recorded_pairs(sources, "val_names")


def recorded_pairs(sources: Sequence[dict[str, Any]], which: str) -> list[PairSubset]:
    """The pairs a training run recorded under `which` ("val_names" or "train_names") in its
    summary.json `split.sources`, re-opened; synthetic sources (generated pairs) are skipped."""
    parts = []
    for source in sources:
        if source.get(which) and not is_synthetic(source["spec"]):
            dataset = open_dataset(source["spec"], **(source.get("options") or {}))
            parts.append(PairSubset(dataset, source[which]))
    return parts


def rebase_spec(spec: str, data_root: str | Path) -> str:
    """A recorded ``FORMAT:PATH`` spec with its data root (``…/shared/data/``) moved to `data_root`.

    Specs recorded elsewhere are returned unchanged.
    """
    fmt, sep, path = spec.partition(":")
    normalised = path.replace("\\", "/")
    where = normalised.find(_RECORDED_ROOT)
    if not sep or where < 0:
        return spec
    return f"{fmt}:{Path(data_root) / normalised[where + len(_RECORDED_ROOT):]}"


def model_validation_pairs(metadata: dict[str, Any], data_root: str | Path | None = None
                           ) -> list[tuple[str, PairSubset]]:
    """A trained model's own held-out pairs, per data source: [(spec, pairs)], re-opened.

    The sources come from the model's training record (`metadata["training"]["data"]
    ["sources"]`); synthetic ones are skipped (their pairs are generated). Data paths are
    rebased onto `data_root` (default: $CHANGESEG_DATA, else ../shared/data). Raises
    InputError when the model records none or a data set is missing.
    """
    import os

    from changeseg.errors import InputError

    root = data_root or os.environ.get(DATA_ENV, "").strip() or DEFAULT_DATA_ROOT
    sources = ((metadata.get("training") or {}).get("data") or {}).get("sources") or []
    parts = []
    for source in sources:
        if not source.get("val_names") or is_synthetic(source.get("spec", "")):
            continue
        spec = rebase_spec(source["spec"], root)
        if not Path(spec.partition(":")[2]).exists():
            raise InputError(f"validation data not found: {spec.partition(':')[2]} (set {DATA_ENV} to the "
                             "folder holding the model's data sets)")
        dataset = open_dataset(spec, **(source.get("options") or {}))
        parts.append((spec, PairSubset(dataset, source["val_names"])))
    if not parts:
        raise InputError("the model records no validation pairs of real data "
                         "(metadata.training.data.sources)")
    return parts


def spread_selection(sizes: Sequence[int], count: int) -> list[tuple[int, int]]:
    """Up to `count` (source, index) picks spread over sources of the given sizes.

    Sources take turns (round robin), and within a source the picks are evenly spaced, so a
    large source cannot crowd out a small one and neighbouring (similar) pairs are avoided.
    """
    if count <= 0:
        return []
    total = sum(sizes)
    if total <= count:
        return [(s, i) for s, size in enumerate(sizes) for i in range(size)]
    share = [0] * len(sizes)
    left = count
    while left:
        for source, size in enumerate(sizes):
            if left and share[source] < size:
                share[source] += 1
                left -= 1
    picks = []
    for source, (size, n) in enumerate(zip(sizes, share)):
        picks += [(source, int(i * size / n)) for i in range(n)]
    return picks


def calibration_pairs(metadata: dict[str, Any], count: int = CALIBRATION_PAIRS,
                      data_root: str | Path | None = None) -> list[tuple[Any, Any]]:
    """(reference, comparison) images of up to `count` of a model's validation pairs, spread
    over its data sources (`spread_selection`): what int8 quantisation calibrates on."""
    parts = [pairs for _, pairs in model_validation_pairs(metadata, data_root)]
    picks = spread_selection([len(p) for p in parts], count)
    return [(sample["reference"], sample["comparison"])
            for sample in (parts[source][index] for source, index in picks)]


def probability_function(detector: Any, binary: bool) -> Any:
    """`predict(reference, comparison)` for `report.evaluate`: change probability or class probabilities."""

    def predict(reference: Any, comparison: Any) -> Any:
        probs = detector.predict_proba(detector.prepare(reference, "reference"),
                                       detector.prepare(comparison, "comparison"))
        return 1.0 - probs[0] if binary else probs

    return predict
