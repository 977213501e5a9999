"""changeseg: find what changed between a reference image and a comparison image.

The C-3PO method: a Siamese segmentation backbone, a module merging the two images'
features (appear / disappear / exchange branches), a feature pyramid and a segmentation head.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["ChangeDetector", "build_model", "__version__"]

if TYPE_CHECKING:
    from changeseg.inference.predictor import ChangeDetector
    from changeseg.models.model import build_model


def __getattr__(name: str) -> Any:
    # Lazy so that `import changeseg` (and the torch-free ONNX runtime path) does not import torch.
    if name == "ChangeDetector":
        from changeseg.inference.predictor import ChangeDetector

        return ChangeDetector
    if name == "build_model":
        from changeseg.models.model import build_model

        return build_model
    raise AttributeError(f"module 'changeseg' has no attribute {name!r}")
