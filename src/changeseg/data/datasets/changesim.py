"""Reader for ChangeSim (simulated industrial indoor scenes, 640×480), binary or multi-class.

Written from the public release's documented layout (the ChangeSim repository and the
C-3PO code that evaluates on it); no copy of ChangeSim is available to this project, so it
is tested on small generated trees only.

::

    root/Query/Query_Seq_Train/Warehouse_0/Seq_0/rgb/12.png                  comparison (query)
    root/Query/Query_Seq_Train/Warehouse_0/Seq_0/t0/rgb/12.png               aligned reference
    root/Query/Query_Seq_Train/Warehouse_0/Seq_0/change_segmentation/12.png  colour-coded label
    root/Query/Query_Seq_Test/Warehouse_6/...

(``Localization/`` in place of ``Query/`` is accepted; so is a ``Query_Seq_*`` folder as
`root`.) The published protocol trains on Warehouse_0-5 and tests on Warehouse_6-9, using
the ``Seq_0`` and ``Seq_1`` sequences of each; ``sequences=None`` also takes the variants
with dust or darkness (every ``Seq_*`` folder).

Labels are RGB colours, one per change class: static (0, 0, 0), new (81, 38, 0), missing
(41, 36, 132), rotated (25, 48, 16), replaced (131, 192, 13). In ``classes="multi"`` any other
colour becomes 255 (ignored); in ``classes="binary"`` every non-black pixel is a change.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from changeseg.data.pairs import (
    PairDataset,
    PairSample,
    list_images,
    make_sample,
    natural_key,
)
from changeseg.errors import InputError
from changeseg.io.images import read_image
from changeseg.labels import BINARY_CLASSES, IGNORE_INDEX

MULTI_CLASSES = ("static", "new", "missing", "rotated", "replaced")
CLASS_COLOURS = ((0, 0, 0), (81, 38, 0), (41, 36, 132), (25, 48, 16), (131, 192, 13))
SPLIT_FOLDERS = {"train": "Query_Seq_Train", "test": "Query_Seq_Test"}
DEFAULT_SEQUENCES = ("Seq_0", "Seq_1")


def colours_to_classes(label: np.ndarray) -> np.ndarray:
    """Map an H×W×3 ChangeSim colour label to class indices 0-4 (unknown colours → 255)."""
    rgb = label[:, :, :3].astype(np.int32)
    codes = (rgb[:, :, 0] << 16) | (rgb[:, :, 1] << 8) | rgb[:, :, 2]
    out = np.full(codes.shape, IGNORE_INDEX, dtype=np.uint8)
    for index, (r, g, b) in enumerate(CLASS_COLOURS):
        out[codes == ((r << 16) | (g << 8) | b)] = index
    return out


class ChangeSimDataset(PairDataset):
    """ChangeSim query frames with their aligned reference frames and change labels.

    `split`: ``"train"``, ``"test"`` or ``None`` (both, or the folder itself when `root` is
    a ``Query_Seq_*`` folder). `classes`: ``"binary"`` (unchanged/changed) or ``"multi"``
    (static, new, missing, rotated, replaced).
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str | None = None,
        classes: str = "binary",
        sequences: Sequence[str] | None = DEFAULT_SEQUENCES,
    ):
        self.root = Path(root)
        self.split = split
        if classes not in ("binary", "multi"):
            raise InputError(f"changesim: classes must be 'binary' or 'multi', got {classes!r}")
        if split not in (None, *SPLIT_FOLDERS):
            raise InputError(f"changesim: split must be 'train', 'test' or None, got {split!r}")
        self.classes = classes
        self.class_names = list(BINARY_CLASSES if classes == "binary" else MULTI_CLASSES)
        self.sequences = None if sequences is None else tuple(sequences)
        self.names: list[str] = []
        self._entries: list[tuple[Path, Path, Path]] = []
        for folder in self._split_folders():
            for warehouse in sorted(folder.iterdir(), key=lambda p: natural_key(p.name)):
                if warehouse.is_dir() and warehouse.name.startswith("Warehouse"):
                    self._add_warehouse(warehouse)
        if not self.names:
            raise InputError(f"changesim: no pairs found; {self._expected()}")

    def _expected(self) -> str:
        return (
            f"expected {self.root}/Query/Query_Seq_Train|Query_Seq_Test/Warehouse_N/Seq_K/"
            "{rgb, t0/rgb, change_segmentation}/*.png"
        )

    def _split_folders(self) -> list[Path]:
        if not self.root.is_dir():
            raise InputError(f"changesim: {self.root} is not a folder")
        if any(p.name.startswith("Warehouse") for p in self.root.iterdir()):
            if self.split is not None:
                raise InputError(
                    f"changesim: {self.root} holds Warehouse_* folders of one split already;"
                    " leave split unset or point at the dataset root"
                )
            return [self.root]
        base = next(
            (self.root / b for b in ("Query", "Localization") if (self.root / b).is_dir()), None
        )
        if base is None:
            raise InputError(f"changesim: no Query/ folder in {self.root}; {self._expected()}")
        wanted = [self.split] if self.split else list(SPLIT_FOLDERS)
        folders = [base / SPLIT_FOLDERS[s] for s in wanted if (base / SPLIT_FOLDERS[s]).is_dir()]
        if self.split and not folders:
            raise InputError(f"changesim: {base / SPLIT_FOLDERS[self.split]} is missing")
        return folders

    def _add_warehouse(self, warehouse: Path) -> None:
        for seq in sorted(warehouse.iterdir(), key=lambda p: natural_key(p.name)):
            if not seq.is_dir() or not seq.name.startswith("Seq_"):
                continue
            if self.sequences is not None and seq.name not in self.sequences:
                continue
            if not (seq / "rgb").is_dir():
                continue
            queries = list_images(seq / "rgb")
            refs = list_images(seq / "t0" / "rgb") if (seq / "t0" / "rgb").is_dir() else {}
            labels = (
                list_images(seq / "change_segmentation")
                if (seq / "change_segmentation").is_dir()
                else {}
            )
            for stem in sorted(queries, key=natural_key):
                if stem not in refs or stem not in labels:
                    raise InputError(
                        f"changesim: {queries[stem]} has no t0/rgb/{stem} or"
                        f" change_segmentation/{stem} beside it"
                    )
                self.names.append(f"{warehouse.name}/{seq.name}/{stem}")
                self._entries.append((refs[stem], queries[stem], labels[stem]))

    def load(self, index: int) -> PairSample:
        """Read pair `index`; the colour label becomes class indices."""
        name = self.names[index]
        ref_path, query_path, label_path = self._entries[index]
        label = read_image(label_path, f"{name} change label")
        if label.shape[2] < 3:
            raise InputError(f"{name}: change label {label_path} is not an RGB colour image")
        if self.classes == "binary":
            mask = (label[:, :, :3].max(axis=2) > 0).astype(np.uint8)
        else:
            mask = colours_to_classes(label)
        return make_sample(
            read_image(ref_path, f"{name} reference"),
            read_image(query_path, f"{name} query"),
            mask,
            name,
        )
