"""Multi-scale inference: average a backend's probabilities over the pair resized to several scales.

`MultiScale(backend, scales)` is itself a backend (the protocol of `changeseg.inference.
pipeline`): each prepared pair is resized by every factor in `scales` (bilinear up, area
down), predicted, and each probability map is resized back to the pair's own size (area down,
bilinear up) before the maps are averaged. The network's output is 4× coarser than its input,
so small objects — people in a fixed camera's 352×240 frame — lose their outline at scale 1;
predicting the pair at 2× as well sharpens them (docs/models.md, "Multi-scale inference").
It costs one forward pass per scale on scale² as many pixels. Torch-free, so it wraps every
backend, and it composes with `TestTimeAugmented` and with tiling (each tile is resized).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from changeseg.errors import InputError
from changeseg.inference.backend import predict_proba_stacked

__all__ = ["MAX_SCALE", "MIN_SCALE", "MultiScale", "model_scales", "parse_scales", "resize_image",
           "resize_probabilities", "TestViews", "views_of", "with_views"]

MIN_SCALE = 0.25
MAX_SCALE = 4.0


def parse_scales(text: str | Sequence[float]) -> tuple[float, ...]:
    """Scales from "1,2" (or a sequence of numbers): each in [0.25, 4], none repeated.

    Raises InputError naming the bad value, so the CLI prints one line.
    """
    parts = text.split(",") if isinstance(text, str) else list(text)
    scales: list[float] = []
    for part in parts:
        try:
            scale = float(part)
        except (TypeError, ValueError):
            raise InputError(f"--scales: {str(part).strip()!r} is not a number (e.g. --scales 1,2)") from None
        if not MIN_SCALE <= scale <= MAX_SCALE:
            raise InputError(f"--scales: {scale:g} is outside [{MIN_SCALE:g}, {MAX_SCALE:g}]")
        if scale in scales:
            raise InputError(f"--scales: {scale:g} is given twice")
        scales.append(scale)
    if not scales:
        raise InputError("--scales: give at least one scale, e.g. --scales 1,2")
    return tuple(scales)


def scaled_size(height: int, width: int, scale: float) -> tuple[int, int]:
    """(height, width) of an image resized by `scale`, at least 1 pixel each."""
    return max(1, round(height * scale)), max(1, round(width * scale))


def resize_image(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """An H×W×C prepared image (any dtype, any channel count) resized to height×width:
    bilinear when enlarging, area averaging when shrinking."""
    enlarging = height * width >= image.shape[0] * image.shape[1]
    interpolation = cv2.INTER_LINEAR if enlarging else cv2.INTER_AREA
    source = image.astype(np.float32) if image.dtype not in (np.uint8, np.uint16, np.float32) else image
    channels = source.shape[2] if source.ndim == 3 else 0
    # OpenCV resizes at most 512 channels at a time; multispectral stacks stay well below
    if channels > 4:
        resized = np.stack([cv2.resize(source[:, :, c], (width, height), interpolation=interpolation)
                            for c in range(channels)], axis=2)
    else:
        resized = cv2.resize(source, (width, height), interpolation=interpolation)
        if channels == 1:
            resized = resized[:, :, None]
    return resized.astype(image.dtype, copy=False)


def resize_probabilities(probabilities: np.ndarray, height: int, width: int) -> np.ndarray:
    """K×h×w class probabilities resized to K×height×width (area down, bilinear up), float32."""
    planes = np.ascontiguousarray(probabilities, np.float32)
    enlarging = height * width >= planes.shape[1] * planes.shape[2]
    interpolation = cv2.INTER_LINEAR if enlarging else cv2.INTER_AREA
    return np.stack([cv2.resize(plane, (width, height), interpolation=interpolation) for plane in planes])


class MultiScale:
    """A backend whose probabilities are the mean over the pair predicted at each of `scales`."""

    def __init__(self, backend: Any, scales: Sequence[float] = (1.0, 2.0)) -> None:
        self.backend = backend
        self.scales = parse_scales(scales)

    def __getattr__(self, name: str) -> Any:  # prepare, class_names, config, name, precision, ...
        return getattr(self.backend, name)

    def predict_proba(self, reference: np.ndarray, comparison: np.ndarray) -> np.ndarray:
        """Mean class probabilities (K×H×W) over the scales for one prepared pair."""
        return self.predict_proba_batch(reference[None], comparison[None])[0]

    def predict_proba_batch(self, references: np.ndarray, comparisons: np.ndarray) -> np.ndarray:
        """Mean class probabilities (N×K×H×W) over the scales for N prepared pairs of one size."""
        height, width = references.shape[1:3]
        total: np.ndarray | None = None
        for scale in self.scales:
            size = scaled_size(height, width, scale)
            if size == (height, width):
                probs = predict_proba_stacked(self.backend, references, comparisons)
            else:
                resized = [np.stack([resize_image(image, *size) for image in images])
                           for images in (references, comparisons)]
                probs = predict_proba_stacked(self.backend, *resized)
                probs = np.stack([resize_probabilities(p, height, width) for p in probs])
            total = probs.astype(np.float32) if total is None else total + probs
        assert total is not None
        return total / np.float32(len(self.scales))


def model_scales(backend: Any) -> tuple[float, ...]:
    """The scales a model is meant to run at: its `config.metadata["scales"]` (a model trained on
    enlarged pairs records [2]), else (1,) — the pair as it is."""
    config = getattr(backend, "config", None)
    metadata = getattr(config, "metadata", None) or {}
    return parse_scales(metadata.get("scales", (1.0,)))


def with_views(backend: Any, tta: bool | str | None = False, scales: str | Sequence[float] | None = None,
               domain: str | None = None) -> Any:
    """`backend` wrapped for test-time views: `TestTimeAugmented` when `tta` (True or "flip-swap":
    the mirrored and the swapped pair; "dihedral": the eight rotations and mirror images; False,
    None or "none": no views), `MultiScale` when `scales` (a sequence or "1,2"-style text) is
    more than the pair as it is ((1,) leaves it alone; None: the model's own, `model_scales`),
    and outermost `DomainCalibrated` when `domain` names one of the model's domain calibrations
    (`changeseg.inference.domains`; an InputError when the model has none of that name)."""
    from changeseg.inference.domains import DomainCalibrated
    from changeseg.inference.tta import TestTimeAugmented, tta_views

    scales = model_scales(backend) if scales is None else parse_scales(scales)
    views = tta_views(tta)
    wrapped = TestTimeAugmented(backend, views) if views else backend
    if scales != (1.0,):
        wrapped = MultiScale(wrapped, scales)
    if domain is not None:
        wrapped = DomainCalibrated(wrapped, domain)
    return wrapped


def views_of(backend: Any) -> TestViews:
    """The test-time views a backend built by `with_views` averages over."""
    from changeseg.inference.domains import DomainCalibrated
    from changeseg.inference.tta import TestTimeAugmented, tta_set_name

    domain = backend.domain if isinstance(backend, DomainCalibrated) else None
    backend = backend.backend if isinstance(backend, DomainCalibrated) else backend
    scales = backend.scales if isinstance(backend, MultiScale) else (1.0,)
    inner = backend.backend if isinstance(backend, MultiScale) else backend
    views = inner.views if isinstance(inner, TestTimeAugmented) else ()
    return TestViews(tta_set_name(views), scales, domain)


@dataclass(frozen=True)
class TestViews:
    """How a detector is run at test time: `tta` (the name of a set of views of
    `changeseg.inference.tta`: "flip-swap", the mirrored and the swapped pair, or "dihedral"; None =
    none; True and False are read as "flip-swap" and None), `scales` (the
    pair resized by each factor; (1,) = as it is; None = the model's own) and `domain` (one of
    the model's domain calibrations applied to the averaged probabilities; None = none)."""

    __test__ = False  # not a pytest test class, despite its name

    tta: str | None = None
    scales: tuple[float, ...] | None = (1.0,)
    domain: str | None = None

    def __post_init__(self) -> None:
        from changeseg.inference.tta import tta_set_name, tta_views

        object.__setattr__(self, "tta", tta_set_name(tta_views(self.tta)))
        if self.scales is not None:
            object.__setattr__(self, "scales", parse_scales(self.scales))

    def describe(self) -> str:
        """", tta, scales 1,2, domain fixed-camera" (", tta dihedral" for that set) and the like for
        summary lines; "" for the pair as it is."""
        text = "" if self.tta is None else ", tta" if self.tta == "flip-swap" else f", tta {self.tta}"
        if self.scales is not None and self.scales != (1.0,):
            text += ", scales " + ",".join(f"{s:g}" for s in self.scales)
        if self.domain is not None:
            text += f", domain {self.domain}"
        return text
