"""Label conventions shared by every layer, and the one decision rule.

A change mask holds class indices. Index 0 is always "no change"; every other class is a
kind of change (binary sets: 1 = changed; typed models and sets: 1 appear, 2 disappear,
3 exchange; other sets: their own class list). Two values are reserved:

- :data:`IGNORE_INDEX` (255): pixels that carry no label (padding, unlabelled borders). No
  loss, metric or calibration counts them.
- :data:`UNTYPED_CHANGE` (254): "changed, type unknown", what a binary-labelled set shows a
  typed model; it counts as change against no change, never as one particular type.

The decision rule (:func:`is_change`) is the same in ``detect``, training and evaluation: a
pixel is predicted changed where its change probability is **at least** the threshold.

This module imports nothing, so any layer (data, models, inference, training, evaluation,
io) may import it.
"""

from __future__ import annotations

from typing import TypeVar

IGNORE_INDEX = 255
"""Mask value of pixels that carry no label (padding, unlabelled areas)."""

UNTYPED_CHANGE = 254
"""Mask value of a change of unknown type (binary labels served to a typed model)."""

NO_CHANGE, APPEAR, DISAPPEAR, EXCHANGE = 0, 1, 2, 3
"""Class indices of typed change masks."""

CHANGE_TYPES: tuple[str, ...] = ("appear", "disappear", "exchange")
"""Names of the typed change classes 1, 2, 3."""

BINARY_CLASSES: tuple[str, ...] = ("unchanged", "changed")
"""Class names of a binary change mask (index 0 and 1)."""

TYPED_CLASSES: tuple[str, ...] = ("unchanged", *CHANGE_TYPES)
"""Class names of a typed change mask (0 unchanged, 1 appear, 2 disappear, 3 exchange)."""

ArrayT = TypeVar("ArrayT")


def class_names(typed: bool) -> list[str]:
    """The class names of typed (4 classes) or binary (2 classes) change masks."""
    return list(TYPED_CLASSES if typed else BINARY_CLASSES)


def is_change(probability: ArrayT, threshold: float) -> ArrayT:
    """The decision rule: change where ``probability >= threshold``.

    Works element-wise on numpy arrays, torch tensors and plain numbers alike, and returns
    the boolean result of the same kind.
    """
    return probability >= threshold  # type: ignore[operator,return-value]
