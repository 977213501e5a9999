"""Test-time augmentation: average a backend's probabilities over flipped, rotated and swapped views.

`TestTimeAugmented(backend, views)` is itself a backend (the protocol of `changeseg.inference.
pipeline`): each pair is also predicted under every view in `views` — mirrored left-right ("flip"),
rotated by quarter turns ("rot90", "rot180", "rot270"), with reference and comparison exchanged
("swap"), or a combination such as "swap-flip-rot90" — each output is mapped back (the mirror and
the rotation undone; for a typed model the appear and disappear probabilities exchanged back, since
what appears from A to B disappears from B to A), and the probabilities are averaged with the pair
as it is. A swap-symmetric network (`changeseg.swap_symmetry`: `pcb`, `aerial`) gives the swapped
pair's output for the pair itself, so its swapped views reuse their unswapped twins' forward passes:
the same mean for fewer passes (`--tta` on `pcb`: two). Named sets (`TTA_SETS`): "flip-swap"
(`--tta`, three forward passes) and "dihedral" (the eight rotations and mirror images of the
square's symmetry group, for top-down imagery whose orientation means nothing: boards, aerial
scenes; eight forward passes). Torch-free, so it wraps the PyTorch and ONNX backends alike.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import product
from typing import Any

import numpy as np

from changeseg.errors import InputError
from changeseg.inference.backend import predict_proba_stacked
from changeseg.swap_symmetry import network_is_swap_symmetric

__all__ = ["TTA_SETS", "TTA_VIEWS", "TestTimeAugmented", "swap_permutation", "tta_option",
           "tta_set_name", "tta_views"]


def _view_name(swap: bool, flip: bool, quarter_turns: int) -> str:
    parts = (["swap"] if swap else []) + (["flip"] if flip else []) + \
        ([f"rot{90 * quarter_turns}"] if quarter_turns else [])
    return "-".join(parts)


# every view but the pair as it is: name -> (swap, flip, quarter turns)
_TRANSFORMS = {_view_name(s, f, k): (s, f, k) for s, f, k in product((False, True), (False, True), range(4))
               if (s, f, k) != (False, False, 0)}
TTA_VIEWS = tuple(_TRANSFORMS)
TTA_SETS: dict[str, tuple[str, ...]] = {
    "flip-swap": ("flip", "swap"),
    "dihedral": ("flip", "rot90", "rot180", "rot270", "flip-rot90", "flip-rot180", "flip-rot270"),
}


def tta_views(tta: bool | str | Sequence[str] | None) -> tuple[str, ...]:
    """The views of a test-time augmentation setting: False / None / "none" → none, True → the
    "flip-swap" set, a set name → its views, a sequence of view names (or their "," join, as
    `tta_set_name` writes a set with no name) → those views, checked."""
    if tta is None or tta is False or tta == "none":
        return ()
    if tta is True:
        return TTA_SETS["flip-swap"]
    if isinstance(tta, str) and tta in TTA_SETS:
        return TTA_SETS[tta]
    if isinstance(tta, str) and "," not in tta and tta not in _TRANSFORMS:
        raise InputError(f"--tta-views: unknown set {tta!r}; choose from "
                         f"{', '.join(['none', *TTA_SETS])}")
    views = tuple(tta.split(",")) if isinstance(tta, str) else tuple(tta)
    unknown = [v for v in views if v not in _TRANSFORMS]
    if unknown:
        raise InputError(f"unknown test-time views {unknown}; each is 'swap', 'flip' and/or 'rot90' / "
                         "'rot180' / 'rot270' joined by '-' in that order, e.g. 'swap-flip-rot90'")
    return views


def tta_option(tta: bool, set_name: str | None) -> bool | str | None:
    """The view setting of a `--tta` flag beside a `--tta-views NAME` option (`set_name`): NAME
    when given, else the flag; an InputError when both are given and NAME is not "flip-swap"
    (what `--tta` means)."""
    if tta and set_name not in (None, "flip-swap"):
        raise InputError(f"--tta is --tta-views flip-swap; give either it or --tta-views {set_name}")
    return set_name if set_name is not None else tta


def tta_set_name(views: Sequence[str]) -> str | None:
    """The name of a view set ("flip-swap", "dihedral"), the views joined by "," when they form
    no named set, None when there are none."""
    views = tuple(views)
    if not views:
        return None
    for name, members in TTA_SETS.items():
        if set(members) == set(views):
            return name
    return ",".join(views)


def swap_permutation(class_names: list[str]) -> list[int]:
    """Class order that undoes a reference/comparison exchange (appear ↔ disappear)."""
    order = list(range(len(class_names)))
    names = [n.lower() for n in class_names]
    if "appear" in names and "disappear" in names:
        a, d = names.index("appear"), names.index("disappear")
        order[a], order[d] = d, a
    return order


def _forward(images: np.ndarray, flip: bool, quarter_turns: int) -> np.ndarray:
    """N×H×W×C prepared images mirrored left-right, then rotated counter-clockwise."""
    if flip:
        images = images[:, :, ::-1]
    return np.ascontiguousarray(np.rot90(images, quarter_turns, axes=(1, 2)))


def _backward(probs: np.ndarray, flip: bool, quarter_turns: int) -> np.ndarray:
    """N×K×H×W probabilities of a `_forward` view mapped back onto the pair as it is."""
    probs = np.rot90(probs, -quarter_turns, axes=(2, 3))
    return probs[..., ::-1] if flip else probs


class TestTimeAugmented:
    """A backend whose probabilities are the mean over the identity and the chosen `views`
    (elementary view names or a set name of `TTA_SETS`)."""

    __test__ = False  # not a pytest test class, despite its name

    def __init__(self, backend: Any, views: str | Sequence[str] = "flip-swap") -> None:
        try:
            self.views = tta_views(views)
        except InputError as error:
            raise ValueError(str(error)) from None
        self.backend = backend
        self._swap = swap_permutation(list(backend.class_names))
        model = getattr(getattr(backend, "config", None), "model", None)
        # such a network's swapped pair repeats the pair itself exactly: one pass serves both
        self.swap_symmetric = isinstance(model, Mapping) and network_is_swap_symmetric(model)
        self._transforms = [(False, False, 0)] + [_TRANSFORMS[v] for v in self.views]
        self.passes = sorted({(swap and not self.swap_symmetric, flip, turns)
                              for swap, flip, turns in self._transforms})

    def __getattr__(self, name: str) -> Any:  # prepare, class_names, config, name, precision, ...
        return getattr(self.backend, name)

    def predict_proba(self, reference: np.ndarray, comparison: np.ndarray) -> np.ndarray:
        """Mean class probabilities (K×H×W) over the views of one prepared pair."""
        return self.predict_proba_batch(reference[None], comparison[None])[0]

    def predict_proba_batch(self, references: np.ndarray, comparisons: np.ndarray) -> np.ndarray:
        """Mean class probabilities (N×K×H×W) over the views of N prepared pairs."""
        # passes of one shape go to the backend in one batch (a quarter turn transposes H and W)
        groups: dict[bool, list[tuple[bool, bool, int]]] = {}
        for transform in self.passes:
            groups.setdefault(transform[2] % 2 == 1, []).append(transform)
        count = len(references)
        mapped_back: dict[tuple[bool, bool, int], np.ndarray] = {}
        for group in groups.values():
            inputs = [(_forward(comparisons if s else references, f, k),
                       _forward(references if s else comparisons, f, k)) for s, f, k in group]
            probs = predict_proba_stacked(self.backend, np.concatenate([r for r, _ in inputs]),
                                          np.concatenate([c for _, c in inputs]))
            for index, (swap, flip, turns) in enumerate(group):
                mapped_back[swap, flip, turns] = _backward(probs[index * count:(index + 1) * count],
                                                           flip, turns)
        total = np.zeros_like(mapped_back[False, False, 0], dtype=np.float32)
        for swap, flip, turns in self._transforms:
            view = mapped_back[swap and not self.swap_symmetric, flip, turns]
            total += view[:, self._swap] if swap else view
        return np.ascontiguousarray(total / np.float32(len(self._transforms)))
