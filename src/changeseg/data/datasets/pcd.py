"""Reader for the PCD street-view panoramas (TSUNAMI, GSV) in their raw release layout.

::

    root/t0/00000000.jpg     reference panoramas (224×1024)
    root/t1/00000000.jpg     comparison panoramas
    root/mask/00000000.png   change masks (``ground_truth/*.bmp`` is accepted too)

The official 5-fold cross-validation: pair ``i`` (its numeric file name) is in the test part
of fold ``k`` when ``2k <= i % 10 < 2k + 2``; the train part is every other pair.

The raw PCD release marks change **black** (0) on white; pass ``invert_mask=True`` for such
masks. Masks already stored with change white (255), like the copy in ``shared/data/tsunami``,
are read with the default ``invert_mask=False``.
"""

from __future__ import annotations

import os
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

NUM_FOLDS = 5
MASK_DIRS = ("mask", "ground_truth")


def in_test_fold(index: int, fold: int) -> bool:
    """True when PCD pair number `index` belongs to the test part of `fold` (0..4)."""
    return 2 * fold <= index % 10 < 2 * fold + 2


class PCDDataset(PairDataset):
    """PCD (TSUNAMI or GSV) pairs, optionally one side of an official cross-validation fold.

    `split` is ``None`` (all pairs), ``"train"`` or ``"test"`` of fold `fold` (0..4).
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str | None = None,
        fold: int = 0,
        invert_mask: bool = False,
    ):
        self.root = Path(root)
        self.split = split
        self.fold = int(fold)
        self.invert_mask = invert_mask
        self.class_names = list(BINARY_CLASSES)
        if split not in (None, "train", "test"):
            raise InputError(f"pcd: split must be 'train', 'test' or None, got {split!r}")
        if not 0 <= self.fold < NUM_FOLDS:
            raise InputError(f"pcd: fold must be 0..{NUM_FOLDS - 1}, got {fold}")
        expected = f"t0/, t1/ and mask/ (or ground_truth/) folders under {self.root}"
        for sub in ("t0", "t1"):
            if not (self.root / sub).is_dir():
                raise InputError(f"pcd: {self.root / sub} is missing; expected {expected}")
        mask_dir = next((self.root / m for m in MASK_DIRS if (self.root / m).is_dir()), None)
        if mask_dir is None:
            raise InputError(f"pcd: no mask folder in {self.root}; expected {expected}")
        t0, t1, masks = (list_images(d) for d in (self.root / "t0", self.root / "t1", mask_dir))
        self.names, self._paths = [], []
        for stem in sorted(masks, key=natural_key):
            if not stem.isdigit():
                raise InputError(f"pcd: mask {masks[stem].name} is not named by a pair number")
            if stem not in t0 or stem not in t1:
                raise InputError(f"pcd: pair {stem} has a mask but no t0/ or t1/ image")
            if split is not None and in_test_fold(int(stem), self.fold) != (split == "test"):
                continue
            self.names.append(stem)
            self._paths.append((t0[stem], t1[stem], masks[stem]))
        if not self.names:
            what = "" if split is None else f" in the {split} part of fold {self.fold}"
            raise InputError(f"pcd: no pairs{what} under {self.root}")

    def load(self, index: int) -> PairSample:
        """Read pair `index`; the mask becomes 0/1 (inverted first if `invert_mask`)."""
        name = self.names[index]
        t0, t1, mask_path = self._paths[index]
        mask = binarize_mask(read_mask(mask_path, f"{name} mask"))
        if self.invert_mask:
            mask = 1 - mask
        return make_sample(read_image(t0, f"{name} t0"), read_image(t1, f"{name} t1"), mask, name)
