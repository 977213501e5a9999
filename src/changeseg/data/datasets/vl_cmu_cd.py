"""Reader for VL-CMU-CD street-view change pairs, in either of its two published layouts.

Written from the public releases' documented layouts; no copy of VL-CMU-CD is available to
this project, so it is tested on small generated trees only.

The binary release used by C-3PO (``VL-CMU-CD-binary255``, 512×512, 3 732 train and 429
test pairs, rotated copies included)::

    root/train/t0/007_1_00_0.png   reference
    root/train/t1/007_1_00_0.png   comparison
    root/train/mask/007_1_00_0.png 0 = unchanged, 255 = changed
    root/test/...

The last ``_`` field of a name is the rotation index: 0 is the original view, other values
are rotated copies made for augmentation (``include_rotated=False`` keeps only index 0).

The raw release (1024×768)::

    root/train/<sequence>/RGB/1_00.png  reference
    root/train/<sequence>/RGB/2_00.png  comparison
    root/train/<sequence>/GT/gt00.png   label: grey level 0 = no change, 255 = sky
                                        (not change), anything between = change

`root` may also be one split folder itself (holding ``t0/``, ``t1/``, ``mask/``).
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from changeseg.data.pairs import (
    PairDataset,
    PairSample,
    binarize_mask,
    list_images,
    make_sample,
    natural_key,
)
from changeseg.errors import InputError
from changeseg.io.images import read_image
from changeseg.labels import BINARY_CLASSES

SPLITS = ("train", "test")


class VLCMUCDDataset(PairDataset):
    """VL-CMU-CD pairs (binary ``t0/t1/mask`` release or raw ``RGB/GT`` sequences).

    `split` is ``"train"``, ``"test"`` or ``None`` (both, names prefixed ``"<split>/"``;
    or the folder itself when `root` is one split).
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str | None = None,
        include_rotated: bool = True,
    ):
        self.root = Path(root)
        self.split = split
        self.include_rotated = include_rotated
        self.class_names = list(BINARY_CLASSES)
        if split not in (None, *SPLITS):
            raise InputError(f"vl_cmu_cd: split must be 'train', 'test' or None, got {split!r}")
        if not self.root.is_dir():
            raise InputError(f"vl_cmu_cd: {self.root} is not a folder")
        self.names: list[str] = []
        self._entries: list[tuple[Path, Path, Path, bool]] = []  # t0, t1, mask, raw layout
        if split is None and _is_binary_split(self.root):
            self._add_binary(self.root, "")
        else:
            splits = [split] if split else [s for s in SPLITS if (self.root / s).is_dir()]
            if not splits or not all((self.root / s).is_dir() for s in splits):
                raise InputError(f"vl_cmu_cd: {self._expected()}")
            for s in splits:
                prefix = "" if split else f"{s}/"
                if _is_binary_split(self.root / s):
                    self._add_binary(self.root / s, prefix)
                else:
                    self._add_raw(self.root / s, prefix)
        if not self.names:
            raise InputError(f"vl_cmu_cd: no pairs found; {self._expected()}")

    def _expected(self) -> str:
        return (
            f"expected {self.root}/train|test/{{t0,t1,mask}}/*.png (binary release) or"
            f" {self.root}/train|test/<sequence>/{{RGB,GT}}/ (raw release)"
        )

    def _add_binary(self, folder: Path, prefix: str) -> None:
        t0, t1, masks = (list_images(folder / d) for d in ("t0", "t1", "mask"))
        for stem in sorted(masks, key=natural_key):
            if not self.include_rotated and _rotation_index(stem) != 0:
                continue
            if stem not in t0 or stem not in t1:
                raise InputError(f"vl_cmu_cd: {folder}/mask/{stem} has no t0/ or t1/ image")
            self.names.append(prefix + stem)
            self._entries.append((t0[stem], t1[stem], masks[stem], False))

    def _add_raw(self, folder: Path, prefix: str) -> None:
        sequences = sorted(
            (p for p in folder.iterdir() if (p / "GT").is_dir() and (p / "RGB").is_dir()),
            key=lambda p: natural_key(p.name),
        )
        if not sequences:
            raise InputError(f"vl_cmu_cd: nothing usable in {folder}; {self._expected()}")
        for seq in sequences:
            rgb = list_images(seq / "RGB")
            for stem, gt in sorted(
                list_images(seq / "GT").items(), key=lambda kv: natural_key(kv[0])
            ):
                if not stem.startswith("gt"):
                    continue
                index = stem[2:]
                ref, cmp = rgb.get(f"1_{index}"), rgb.get(f"2_{index}")
                if ref is None or cmp is None:
                    raise InputError(f"vl_cmu_cd: {gt} has no RGB/1_{index} or RGB/2_{index}")
                self.names.append(f"{prefix}{seq.name}/{index}")
                self._entries.append((ref, cmp, gt, True))

    def load(self, index: int) -> PairSample:
        """Read pair `index` with its label as 0/1."""
        name = self.names[index]
        t0, t1, mask_path, raw = self._entries[index]
        label = read_image(mask_path, f"{name} mask")
        grey = _to_grey(label)
        mask = ((grey > 0) & (grey < 255)).astype(np.uint8) if raw else binarize_mask(grey)
        return make_sample(
            read_image(t0, f"{name} reference"), read_image(t1, f"{name} comparison"), mask, name
        )


def _is_binary_split(folder: Path) -> bool:
    return all((folder / d).is_dir() for d in ("t0", "t1", "mask"))


def _rotation_index(stem: str) -> int:
    last = stem.rsplit("_", 1)[-1]
    return int(last) if last.isdigit() else 0


def _to_grey(label: np.ndarray) -> np.ndarray:
    if label.shape[2] == 1:
        grey = label[:, :, 0]
    else:
        grey = cv2.cvtColor(np.ascontiguousarray(label[:, :, :3]), cv2.COLOR_RGB2GRAY)
    if grey.dtype != np.uint8:
        grey = np.clip(grey, 0, 255).astype(np.uint8)
    return grey
