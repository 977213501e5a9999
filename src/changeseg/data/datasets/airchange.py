"""Reader for the SZTAKI AirChange benchmark (aerial pairs, 952×640, 1.5 m/px).

::

    root/Szada/2/im1.png     reference (im1.bmp in the original archive; any image format)
    root/Szada/2/im2.png     comparison
    root/Szada/2/gt.png      hand-drawn change mask, 0 = no change, 255 = change
    root/Tiszadob/1/...
    root/Archieve/1/...      (the third region of the original archive, if present)

Pairs are named ``"<region>/<number>"``; `regions` restricts the regions read.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from changeseg.data.pairs import (
    PairDataset,
    PairSample,
    binarize_mask,
    list_images,
    make_sample,
    natural_key,
)
from changeseg.errors import InputError
from changeseg.io.images import read_image, read_mask
from changeseg.labels import BINARY_CLASSES


class AirChangeDataset(PairDataset):
    """AirChange pairs from ``<region>/<number>/{im1,im2,gt}`` folders (masks as 0/1)."""

    def __init__(self, root: str | os.PathLike, regions: Sequence[str] | None = None):
        self.root = Path(root)
        self.class_names = list(BINARY_CLASSES)
        if not self.root.is_dir():
            raise InputError(f"airchange: {self.root} is not a folder")
        self.names: list[str] = []
        self._paths: list[tuple[Path, Path, Path]] = []
        found_regions = sorted(p.name for p in self.root.iterdir() if p.is_dir())
        if regions is not None:
            unknown = [r for r in regions if r not in found_regions]
            if unknown:
                raise InputError(f"airchange: no region folder {', '.join(unknown)} in {self.root}")
        for region in found_regions:
            if regions is not None and region not in regions:
                continue
            pairs = sorted(
                (p for p in (self.root / region).iterdir() if p.is_dir()),
                key=lambda p: natural_key(p.name),
            )
            for folder in pairs:
                files = list_images(folder)
                if not {"im1", "im2", "gt"} <= files.keys():
                    continue
                self.names.append(f"{region}/{folder.name}")
                self._paths.append((files["im1"], files["im2"], files["gt"]))
        if not self.names:
            raise InputError(
                f"airchange: no pairs found; expected {self.root}/<region>/<number>/ folders"
                " (e.g. Szada/2/) holding im1, im2 and gt images"
            )

    def load(self, index: int) -> PairSample:
        """Read pair `index` with its mask as 0/1."""
        name = self.names[index]
        im1, im2, gt = self._paths[index]
        return make_sample(
            read_image(im1, f"{name} im1"),
            read_image(im2, f"{name} im2"),
            binarize_mask(read_mask(gt, f"{name} gt")),
            name,
        )
