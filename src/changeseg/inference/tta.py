"""Test-time augmentation: average a backend's probabilities over flipped and swapped views.

`TestTimeAugmented(backend)` is itself a backend (the protocol of `changeseg.inference.
pipeline`): each pair is also predicted mirrored left-right (the output mirrored back) and
with reference and comparison exchanged (for typed models the appear and disappear
probabilities exchanged back, since what appears from A to B disappears from B to A), and
the probabilities are averaged. Torch-free, so it wraps the PyTorch and ONNX backends alike;
it costs one forward pass per view.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from changeseg.inference.backend import predict_proba_stacked

__all__ = ["TTA_VIEWS", "TestTimeAugmented", "swap_permutation"]

TTA_VIEWS = ("flip", "swap")


def swap_permutation(class_names: list[str]) -> list[int]:
    """Class order that undoes a reference/comparison exchange (appear ↔ disappear)."""
    order = list(range(len(class_names)))
    names = [n.lower() for n in class_names]
    if "appear" in names and "disappear" in names:
        a, d = names.index("appear"), names.index("disappear")
        order[a], order[d] = d, a
    return order


class TestTimeAugmented:
    """A backend whose probabilities are the mean over the identity and the chosen `views`."""

    __test__ = False  # not a pytest test class, despite its name

    def __init__(self, backend: Any, views: tuple[str, ...] = TTA_VIEWS) -> None:
        unknown = [v for v in views if v not in TTA_VIEWS]
        if unknown:
            raise ValueError(f"unknown test-time views {unknown}; choose from {TTA_VIEWS}")
        self.backend = backend
        self.views = tuple(views)
        self._swap = swap_permutation(list(backend.class_names))

    def __getattr__(self, name: str) -> Any:  # prepare, class_names, config, name, precision, ...
        return getattr(self.backend, name)

    def predict_proba(self, reference: np.ndarray, comparison: np.ndarray) -> np.ndarray:
        """Mean class probabilities (K×H×W) over the views of one prepared pair."""
        return self.predict_proba_batch(reference[None], comparison[None])[0]

    def predict_proba_batch(self, references: np.ndarray, comparisons: np.ndarray) -> np.ndarray:
        """Mean class probabilities (N×K×H×W) over the views of N prepared pairs."""
        inputs = [(references, comparisons)]
        if "flip" in self.views:
            inputs.append((references[:, :, ::-1], comparisons[:, :, ::-1]))
        if "swap" in self.views:
            inputs.append((comparisons, references))
        count = len(references)
        probs = predict_proba_stacked(self.backend,
                                      np.concatenate([np.ascontiguousarray(r) for r, _ in inputs]),
                                      np.concatenate([np.ascontiguousarray(c) for _, c in inputs]))
        total = probs[:count].astype(np.float32)
        view = 1
        if "flip" in self.views:
            total += probs[view * count:(view + 1) * count, :, :, ::-1]
            view += 1
        if "swap" in self.views:
            total += probs[view * count:(view + 1) * count][:, self._swap]
            view += 1
        return total / np.float32(view)
