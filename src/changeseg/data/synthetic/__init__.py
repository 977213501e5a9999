"""Synthetic change pairs made from ordinary photos (the patent's "ordinary image data").

The package, one job per module:

- :mod:`~changeseg.data.synthetic.generator`: `SyntheticPairGenerator` (scenes, objects,
  labels; the label frame and reproducibility are described there) and `SyntheticPair`;
- :mod:`~changeseg.data.synthetic.config`: `SynthConfig`, every knob of the generator;
- :mod:`~changeseg.data.synthetic.photos`: the photo bank (folders, lists, scikit-image);
- :mod:`~changeseg.data.synthetic.ops`: image operations (crops, shapes, blending, pasting);
- :mod:`~changeseg.data.synthetic.nuisance`: whole-image nuisance that is not change;
- :mod:`~changeseg.data.synthetic.datasets`: map-style and streaming torch datasets;
- :mod:`~changeseg.data.synthetic.writer`: writing a fixed set in the `folder` layout.

The names below are the package's public API; the label codes and class names (appear,
disappear, exchange) are those of :mod:`changeseg.labels`.
"""

from __future__ import annotations

from changeseg.data.synthetic.config import SynthConfig
from changeseg.data.synthetic.datasets import SyntheticPairDataset, SyntheticPairStream
from changeseg.data.synthetic.generator import NAME_PATTERN, SyntheticPair, SyntheticPairGenerator
from changeseg.data.synthetic.photos import SKIMAGE_PHOTOS, find_photos, load_skimage_photos
from changeseg.data.synthetic.writer import check_output_folder, write_synthetic_set

__all__ = [
    "NAME_PATTERN",
    "SKIMAGE_PHOTOS",
    "SynthConfig",
    "SyntheticPair",
    "SyntheticPairDataset",
    "SyntheticPairGenerator",
    "SyntheticPairStream",
    "check_output_folder",
    "find_photos",
    "load_skimage_photos",
    "write_synthetic_set",
]
