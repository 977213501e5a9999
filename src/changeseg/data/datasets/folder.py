"""Reader for the ``A/``, ``B/``, ``label/`` layout (LEVIR-CD, DSIFN-CD, WHU-CD, open-cd).

::

    root/A/<name>.png      reference images
    root/B/<name>.png      comparison images
    root/label/<name>.png  masks, 0 = unchanged, 255 (or 1) = changed

A split is chosen, in this order, by a subfolder (``root/train/{A,B,label}``), by a list
file (``root/list/train.txt`` or ``root/train.txt``, one name per line, with or without an
extension), or by a name prefix (``train_*``, as in LEVIR-CD crops named ``train_12_0256_0512``).
"""

from __future__ import annotations

import os
from pathlib import Path

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
from changeseg.io.images import read_image, read_mask
from changeseg.labels import BINARY_CLASSES, IGNORE_INDEX

SPLIT_FOLDERS = ("train", "val", "test")


class FolderDataset(PairDataset):
    """Change pairs stored as ``A/``, ``B/``, ``label/`` folders with matching file names.

    `split` (e.g. ``"train"``) selects a subfolder, a list file or a name prefix (see the
    module docstring); ``None`` reads everything, including every split subfolder (then
    names are ``"<split>/<name>"``). The folder names can be changed for layouts that call
    them otherwise (CDD: ``label_dir="OUT"``). With more than two `class_names` the labels
    are read as class indices (0 = unchanged, 255 = ignore), e.g. the typed synthetic masks:
    ``label_dir="label_typed", class_names=["unchanged", "appear", "disappear", "exchange"]``.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str | None = None,
        reference_dir: str = "A",
        comparison_dir: str = "B",
        label_dir: str = "label",
        class_names: list[str] | None = None,
    ):
        self.root = Path(root)
        self.split = split
        self.dirs = (reference_dir, comparison_dir, label_dir)
        if class_names is not None and (isinstance(class_names, str) or len(class_names) < 2):
            raise InputError(f"folder dataset: class_names must be a list of two or more names, "
                             f"got {class_names!r}")
        self.class_names = [str(c) for c in class_names] if class_names else list(BINARY_CLASSES)
        if not self.root.is_dir():
            raise InputError(f"folder dataset: {self.root} is not a folder")
        self._paths: list[tuple[Path, Path, Path]] = []
        self.names: list[str] = []
        for prefix, folder, wanted in self._resolve():
            for stem, paths in _scan(folder, self.dirs, wanted):
                self.names.append(prefix + stem)
                self._paths.append(paths)
        if not self.names:
            raise InputError(f"folder dataset: no pairs found under {self.root} (split={split})")

    def _layout_hint(self) -> str:
        a, b, label = self.dirs
        return (
            f"expected {a}/, {b}/ and {label}/ folders under {self.root}, or"
            f" train|val|test/{{{a},{b},{label}}} subfolders"
        )

    def _resolve(self) -> list[tuple[str, Path, list[str] | None]]:
        """(name prefix, folder holding A/B/label, names to keep or None for all)."""
        reference_dir = self.dirs[0]
        flat = (self.root / reference_dir).is_dir()
        if self.split is None:
            if flat:
                return [("", self.root, None)]
            subs = [s for s in SPLIT_FOLDERS if (self.root / s / reference_dir).is_dir()]
            if not subs:
                raise InputError(f"folder dataset: {self._layout_hint()}")
            return [(f"{s}/", self.root / s, None) for s in subs]
        if (self.root / self.split / reference_dir).is_dir():
            return [("", self.root / self.split, None)]
        if not flat:
            raise InputError(f"folder dataset: no split {self.split!r}; {self._layout_hint()}")
        for candidate in (
            self.root / "list" / f"{self.split}.txt",
            self.root / f"{self.split}.txt",
        ):
            if candidate.is_file():
                return [("", self.root, _read_list(candidate))]
        prefix = f"{self.split}_"
        stems = list_images(self.root / reference_dir)
        wanted = sorted((s for s in stems if s.startswith(prefix)), key=natural_key)
        if not wanted:
            raise InputError(
                f"folder dataset: split {self.split!r} not found under {self.root}: no"
                f" {self.split}/ subfolder, no list/{self.split}.txt or {self.split}.txt list"
                f" file, and no names starting with {prefix!r}"
            )
        return [("", self.root, wanted)]

    def load(self, index: int) -> PairSample:
        """Read pair `index`: both images as stored, the label as 0/1 (or class indices)."""
        name = self.names[index]
        ref_path, cmp_path, mask_path = self._paths[index]
        raw = read_mask(mask_path, f"{name} label")
        return make_sample(
            read_image(ref_path, f"{name} reference"),
            read_image(cmp_path, f"{name} comparison"),
            binarize_mask(raw) if len(self.class_names) == 2 else self._class_indices(raw, name),
            name,
        )

    def _class_indices(self, raw: np.ndarray, name: str) -> np.ndarray:
        bad = np.setdiff1d(np.unique(raw), [*range(len(self.class_names)), IGNORE_INDEX])
        if bad.size:
            raise InputError(f"{name}: label values {bad[:5].tolist()} are not class indices "
                             f"0..{len(self.class_names) - 1} (or 255 = ignore)")
        return raw.astype(np.uint8)


def _read_list(path: Path) -> list[str]:
    names = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            names.append(Path(line.split()[0]).stem)
    if not names:
        raise InputError(f"split list {path} is empty")
    return names


def _scan(
    folder: Path, dirs: tuple[str, str, str], wanted: list[str] | None
) -> list[tuple[str, tuple[Path, Path, Path]]]:
    found = []
    for sub in dirs:
        if not (folder / sub).is_dir():
            raise InputError(
                f"folder dataset: {folder / sub} is missing; expected {'/, '.join(dirs)}/"
                f" folders in {folder}"
            )
        found.append(list_images(folder / sub))
    refs, cmps, labels = found
    stems = wanted if wanted is not None else sorted(refs, key=natural_key)
    missing = [
        f"{sub}/{stem}" for stem in stems for sub, table in zip(dirs, found) if stem not in table
    ]
    if missing:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise InputError(f"folder dataset: {len(missing)} files missing under {folder}: {shown}")
    return [(s, (refs[s], cmps[s], labels[s])) for s in stems]
