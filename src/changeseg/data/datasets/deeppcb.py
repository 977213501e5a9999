"""Reader for DeepPCB: a defect-free template vs a tested printed-circuit-board image.

::

    root/PCBData/trainval.txt                          pair list (test.txt in the full release)
    root/PCBData/group20085/20085/20085000_temp.jpg    template (reference), 640×640 grey
    root/PCBData/group20085/20085/20085000_test.jpg    tested image (comparison)
    root/PCBData/group20085/20085_not/20085000.txt     defects, one per line: x1 y1 x2 y2 type

A list line reads ``group20085/20085/20085000.jpg group20085/20085_not/20085000.txt``.
Box fields are separated by spaces (commas are accepted too); type is 1 open, 2 short,
3 mousebite, 4 spur, 5 copper (spurious copper), 6 pin-hole. The boxes are rasterised
into the mask (corners inclusive): 0/1 by default, the defect type with
``typed_mask=True`` (a later box overwrites an earlier one where they overlap). The boxes
themselves are kept in ``sample["boxes"]`` for box-level scoring.

``separate=N`` (a training option) cuts a no-change gap between defects whose boxes touch or
overlap a little: where two boxes grown by N px meet, the mask is 0. Adjacent defects then stay
apart in the target, as the box protocol needs them (one region per defect); without it, 23 of
the 716 defects on `pcb`'s validation boards share a region even in the true mask. Boxes that
overlap by more than half of the smaller one's area are left as they are.

``shrink=S`` (a training option, 0 <= S < 0.5) paints each box with every side pulled in by
``floor(S × side length)`` px: the target is the defect's core, so neighbours that touch or overlap
a little are far apart in it (the "shrunk text kernels" of DBNet-style detectors). A model trained
so finds cores; ``changeseg.evaluation.boxes.mask_to_boxes(grow=1 / (1 - 2S))`` grows their boxes
back. The boxes in ``sample["boxes"]`` stay the annotated ones.

``cores=S`` (a training option, 0 < S < 0.5, not with ``typed_mask`` or ``shrink``) paints both:
each whole box as class 1 and its core (``shrink=S``) as class 2, so one three-class model
(``DEEPPCB_CORE_CLASSES``) learns a defect's extent and the core that tells touching neighbours
apart (PSENet's kernels; ``bench/pcb_cores.py`` cuts the whole regions between the cores).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from changeseg.data.pairs import (
    PairDataset,
    PairSample,
    clip_boxes,
    make_sample,
    natural_key,
)
from changeseg.errors import InputError
from changeseg.io.images import read_image, to_model_channels
from changeseg.labels import BINARY_CLASSES

DEFECT_TYPES = ("open", "short", "mousebite", "spur", "copper", "pin-hole")
DEFECT_CLASSES = (BINARY_CLASSES[0], *DEFECT_TYPES)
DEEPPCB_CORE_CLASSES = (*BINARY_CLASSES, "core")
"""Classes of the ``cores`` option: unchanged, changed (the whole box), core (its shrunk middle)."""


def read_boxes(path: Path) -> np.ndarray:
    """Parse a DeepPCB annotation file into an N×5 int64 array ``x1, y1, x2, y2, type``."""
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        fields = [f for f in re.split(r"[,\s]+", line.strip()) if f]
        if not fields:
            continue
        if len(fields) != 5 or not all(f.lstrip("-").isdigit() for f in fields):
            raise InputError(f"{path}:{number}: expected 'x1 y1 x2 y2 type', got {line!r}")
        row = [int(f) for f in fields]
        if not 1 <= row[4] <= len(DEFECT_TYPES):
            raise InputError(f"{path}:{number}: defect type {row[4]} is not 1..{len(DEFECT_TYPES)}")
        rows.append(row)
    return np.array(rows, dtype=np.int64).reshape(-1, 5)


SEPARATE_MAX_OVERLAP = 0.5  # boxes overlapping more (of the smaller box's area) are one blob


def rasterise_boxes(
    boxes: np.ndarray, height: int, width: int, typed: bool = False, separate: int = 0,
    shrink: float = 0.0,
) -> np.ndarray:
    """Paint N×5 inclusive-corner boxes into an H×W uint8 mask (1, or the box type if typed).

    `separate` > 0 zeroes the band where two touching or slightly overlapping boxes, each grown
    by `separate` px, meet; `shrink` > 0 paints only each box's core (module docstring).
    """
    check_shrink(shrink)
    mask = np.zeros((height, width), dtype=np.uint8)
    boxes = clip_boxes(boxes, width, height)
    corners = np.stack([np.minimum(boxes[:, 0], boxes[:, 2]), np.minimum(boxes[:, 1], boxes[:, 3]),
                        np.maximum(boxes[:, 0], boxes[:, 2]), np.maximum(boxes[:, 1], boxes[:, 3])], 1)
    if shrink > 0:
        sides = corners[:, 2:] - corners[:, :2] + 1  # width, height of each box
        inset = np.floor(sides * shrink).astype(np.int64)
        corners = np.concatenate([corners[:, :2] + inset, corners[:, 2:] - inset], axis=1)
    for (x1, y1, x2, y2), kind in zip(corners, boxes[:, 4], strict=True):
        mask[y1 : y2 + 1, x1 : x2 + 1] = kind if typed else 1
    if separate > 0:
        for y1, y2, x1, x2 in _separating_bands(corners, separate):
            mask[y1 : y2 + 1, x1 : x2 + 1] = 0
    return mask


def check_shrink(shrink: float, option: str = "shrink") -> None:
    """Raise InputError unless 0 <= `shrink` < 0.5 (the fraction of each side pulled in)."""
    if not 0.0 <= shrink < 0.5:
        raise InputError(f"deeppcb: {option} must be in [0, 0.5) (the fraction of each box side "
                         f"pulled in), got {shrink}")


def _separating_bands(corners: np.ndarray, grow: int) -> list[tuple[int, int, int, int]]:
    """Inclusive ``y1, y2, x1, x2`` rectangles where two grown boxes meet (pairs that may be cut)."""
    areas = (corners[:, 2] - corners[:, 0] + 1) * (corners[:, 3] - corners[:, 1] + 1)
    bands = []
    for i in range(len(corners)):
        for j in range(i + 1, len(corners)):
            low = np.maximum(corners[i, :2], corners[j, :2])
            high = np.minimum(corners[i, 2:], corners[j, 2:])
            if (low > high + 2 * grow).any():
                continue  # too far apart for the grown boxes to meet
            overlap = np.prod(np.clip(high - low + 1, 0, None))
            if overlap > SEPARATE_MAX_OVERLAP * min(areas[i], areas[j]):
                continue
            x1, y1 = np.maximum(low - grow, 0)
            x2, y2 = high + grow
            bands.append((int(y1), int(y2), int(x1), int(x2)))
    return bands


class DeepPCBDataset(PairDataset):
    """DeepPCB template/tested pairs with defect boxes rasterised into a change mask.

    `split` names a list file in ``PCBData/`` (``"trainval"`` or ``"test"``); ``None`` takes
    every pair found in the group folders. `root` may be the folder holding ``PCBData/`` or
    ``PCBData/`` itself. `separate` > 0 cuts gaps between adjacent defects in the mask
    (module docstring); `shrink` > 0 paints each defect's core only; `cores` > 0 paints whole
    boxes as class 1 and their cores as class 2; the boxes are unchanged.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str | None = None,
        typed_mask: bool = False,
        separate: int = 0,
        shrink: float = 0.0,
        cores: float = 0.0,
    ):
        if separate < 0:
            raise InputError(f"deeppcb: separate must be >= 0 pixels, got {separate}")
        check_shrink(float(shrink))
        check_shrink(float(cores), "cores")
        if cores > 0 and (typed_mask or shrink > 0):
            raise InputError("deeppcb: cores paints whole boxes and their cores; it does not go "
                             "with typed_mask or shrink")
        self.shrink = float(shrink)
        self.cores = float(cores)
        self.root = Path(root)
        self.split = split
        self.typed_mask = typed_mask
        self.separate = int(separate)
        self.class_names = list(DEFECT_CLASSES if typed_mask
                                else DEEPPCB_CORE_CLASSES if self.cores > 0 else BINARY_CLASSES)
        data = self.root / "PCBData" if (self.root / "PCBData").is_dir() else self.root
        if not data.is_dir() or not any(data.glob("group*")):
            raise InputError(
                f"deeppcb: expected {self.root}/PCBData/groupNNNNN/NNNNN/*_temp.jpg,"
                " *_test.jpg and groupNNNNN/NNNNN_not/*.txt"
            )
        self.data_dir = data
        entries = self._from_list(data, split) if split else self._from_folders(data)
        if not entries:
            raise InputError(f"deeppcb: no pairs found under {data} (split={split})")
        self.names = [name for name, _ in entries]
        self._paths = [paths for _, paths in entries]

    @staticmethod
    def _from_list(data: Path, split: str) -> list[tuple[str, tuple[Path, Path, Path]]]:
        list_file = data / f"{split}.txt"
        if not list_file.is_file():
            raise InputError(f"deeppcb: split list {list_file} not found")
        entries = []
        for number, line in enumerate(list_file.read_text(encoding="utf-8").splitlines(), 1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != 2:
                raise InputError(f"{list_file}:{number}: expected 'IMAGE.jpg ANNOTATION.txt'")
            image, boxes = data / fields[0], data / fields[1]
            stem = image.stem
            entries.append(
                (
                    stem,
                    (
                        image.with_name(f"{stem}_temp.jpg"),
                        image.with_name(f"{stem}_test.jpg"),
                        boxes,
                    ),
                )
            )
        return entries

    @staticmethod
    def _from_folders(data: Path) -> list[tuple[str, tuple[Path, Path, Path]]]:
        entries = []
        for tested in data.glob("group*/*/*_test.jpg"):
            stem = tested.name[: -len("_test.jpg")]
            folder = tested.parent
            boxes = folder.parent / f"{folder.name}_not" / f"{stem}.txt"
            entries.append((stem, (folder / f"{stem}_temp.jpg", tested, boxes)))
        return sorted(entries, key=lambda e: natural_key(e[0]))

    def load(self, index: int) -> PairSample:
        """Read pair `index`: template, tested image, rasterised mask and boxes."""
        name = self.names[index]
        template, tested, box_file = self._paths[index]
        if not box_file.is_file():
            raise InputError(f"{name}: annotation file not found: {box_file}")
        # The release is greyscale, but 37 of its 2000 JPEGs are stored as 3-channel copies of
        # the grey values: read every image as one channel so each pair matches.
        reference = to_model_channels(read_image(template, f"{name} template"), 1)
        comparison = to_model_channels(read_image(tested, f"{name} tested image"), 1)
        height, width = reference.shape[:2]
        boxes = clip_boxes(read_boxes(box_file), width, height)
        mask = rasterise_boxes(boxes, height, width, typed=self.typed_mask, separate=self.separate,
                               shrink=self.shrink)
        if self.cores > 0:
            mask[rasterise_boxes(boxes, height, width, shrink=self.cores) > 0] = 2
        return make_sample(reference, comparison, mask, name, boxes=boxes)
