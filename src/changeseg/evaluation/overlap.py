"""Whether a model trained on the pairs it is evaluated on: its recorded training names.

A trained model records, per training source, the names of the pairs it trained on
(``metadata.training.data.sources[].train_names``) and those it held out (``val_names``).
:func:`training_overlap` compares them with the names of the pairs an evaluation scores:

- a source *matches* the evaluated data set when it has the same format and folder name
  (the rule of ``--names model-val``, so a run folder recorded as ``../data/x`` matches
  ``/elsewhere/data/x``);
- models recorded before training names were kept have only ``val_names``: their training
  names are then the source's pairs, re-listed with the source's own reader options, minus
  its validation names (``derived``);
- names are compared as the readers spell them: a reader of every split may name a pair
  ``split/name`` where a reader of that split names it ``name`` (the folder reader does), so
  both spellings count; two *different* splits of one data set are taken to be disjoint.

Synthetic sources generate their pairs and are not compared. What a model trained on in an
earlier run it was initialised from (``init.from``) is not recorded, and the report says so.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from changeseg.data.datasets import is_synthetic, open_dataset, same_source
from changeseg.errors import InputError

SHOWN_NAMES = 20
"""How many overlapping names a report lists (the count is always complete)."""


@dataclass(frozen=True)
class TrainingOverlap:
    """The evaluated pairs a model trained on, as far as its record tells.

    Attributes:
        evaluated: how many pairs are evaluated.
        trained_on: names of evaluated pairs that were training pairs of the model.
        sources: the model's training sources that match the evaluated data set.
        derived: sources whose training names were derived (total minus validation names).
        unchecked: sources whose training pairs could not be listed, with the reason.
        initialised_from: the checkpoint the model's last run started from, if any (what
            that one trained on is not recorded).
    """

    evaluated: int
    trained_on: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    derived: list[str] = field(default_factory=list)
    unchecked: list[str] = field(default_factory=list)
    initialised_from: str | None = None

    def warnings(self) -> list[str]:
        """Plain-language warnings: overlapping pairs, and sources that could not be checked."""
        notes = []
        if self.trained_on:
            shown = ", ".join(self.trained_on[:SHOWN_NAMES])
            hidden = len(self.trained_on) - SHOWN_NAMES
            more = f", … ({hidden} more)" if hidden > 0 else ""
            notes.append(f"the model TRAINED ON {len(self.trained_on)} of the {self.evaluated} evaluated "
                         f"pairs ({shown}{more}): these numbers overstate its accuracy on unseen pairs; "
                         "use --names model-val or a set it never trained on")
        notes += [f"could not check the training pairs of {reason}" for reason in self.unchecked]
        return notes

    def notes(self) -> list[str]:
        """Facts about the check itself (derived names, an unrecorded initial model)."""
        notes = []
        if self.derived:
            notes.append("training names derived as the pairs of " + ", ".join(self.derived)
                         + " minus the recorded validation names (the model predates recorded "
                         "training names)")
        if self.initialised_from:
            notes.append(f"the model's last run started from {self.initialised_from}; the pairs "
                         "earlier runs trained on are not recorded")
        return notes

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the fields, ``trained_on_count``, the warnings and the notes."""
        return {**asdict(self), "trained_on_count": len(self.trained_on),
                "warnings": self.warnings(), "notes": self.notes()}


def training_overlap(metadata: Mapping[str, Any], data_spec: str, names: Sequence[str],
                     options: Mapping[str, Any] | None = None) -> TrainingOverlap:
    """Which of `names` (pairs of `data_spec` read with reader `options`) the model trained on.

    `metadata` is the model's ``config.metadata``. A model with no training record (a preset,
    an imported network) gives an empty result.
    """
    training = metadata.get("training") or {}
    sources = (training.get("data") or {}).get("sources") or []
    evaluated_split = (options or {}).get("split")
    overlapping: set[str] = set()
    matched, derived, unchecked = [], [], []
    for source in sources:
        spec = str(source.get("spec", ""))
        if is_synthetic(spec) or not same_source(spec, data_spec) or not source.get("train"):
            continue
        matched.append(spec)
        names_of_source = source.get("train_names")
        if names_of_source is None:
            try:
                names_of_source = _derived_train_names(source, data_spec)
            except InputError as exc:
                unchecked.append(f"{spec} ({exc})")
                continue
            derived.append(spec)
        trained, trained_split = set(names_of_source), (source.get("options") or {}).get("split")
        overlapping |= {n for n in names if _same_pair(n, evaluated_split, trained, trained_split)}
    return TrainingOverlap(evaluated=len(names), trained_on=[n for n in names if n in overlapping],
                           sources=matched,
                           derived=derived, unchecked=unchecked,
                           initialised_from=(training.get("init") or {}).get("from"))


def _derived_train_names(source: Mapping[str, Any], data_spec: str) -> list[str]:
    """A source's pairs (its format and options, read at `data_spec`'s path) minus its val names."""
    fmt = str(source["spec"]).partition(":")[0]
    path = data_spec.partition(":")[2]
    dataset = open_dataset(f"{fmt}:{path}", **(source.get("options") or {}))
    held_out = set(source.get("val_names") or [])
    return [name for name in dataset.names if name not in held_out]


def _same_pair(name: str, split: str | None, trained: set[str], trained_split: str | None) -> bool:
    """Whether pair `name` of a reader of `split` is among `trained` (names of `trained_split`)."""
    if trained_split == split:
        return name in trained
    if trained_split is None:  # trained on every split: `name` may be spelled "split/name" there
        return name in trained or f"{split}/{name}" in trained
    if split is None:  # evaluated on every split: a trained "name" may be spelled "split/name" here
        prefix = f"{trained_split}/"
        return name in trained or (name.startswith(prefix) and name[len(prefix):] in trained)
    return False  # two different splits of one data set are taken to be disjoint
