"""Dataset readers, one module per on-disk format, and `open_dataset("FORMAT:PATH")`.

Every reader is a `changeseg.data.pairs.PairDataset`: a map-style torch dataset of numpy
`PairSample` dicts with ``.names`` and ``.class_names``. `FORMATS` maps each format name to
its class; it is a plain dict, nothing registers itself on import.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

from changeseg.data.datasets.airchange import AirChangeDataset
from changeseg.data.datasets.changesim import ChangeSimDataset
from changeseg.data.datasets.deeppcb import DeepPCBDataset
from changeseg.data.datasets.folder import FolderDataset
from changeseg.data.datasets.oscd import OSCDDataset
from changeseg.data.datasets.pcd import PCDDataset
from changeseg.data.datasets.sbi2015 import SBI2015Dataset
from changeseg.data.datasets.vl_cmu_cd import VLCMUCDDataset
from changeseg.data.pairs import PairDataset
from changeseg.errors import InputError

FORMATS: dict[str, type[PairDataset]] = {
    "folder": FolderDataset,
    "pcd": PCDDataset,
    "vl_cmu_cd": VLCMUCDDataset,
    "changesim": ChangeSimDataset,
    "deeppcb": DeepPCBDataset,
    "oscd": OSCDDataset,
    "airchange": AirChangeDataset,
    "sbi2015": SBI2015Dataset,
}

SYNTHETIC = "synthetic"
"""The source "format" of generated pairs in training recipes (`synthetic` or `synthetic:PHOTOS`)."""

__all__ = [
    "FORMATS",
    "SYNTHETIC",
    "AirChangeDataset",
    "ChangeSimDataset",
    "DeepPCBDataset",
    "FolderDataset",
    "OSCDDataset",
    "PCDDataset",
    "SBI2015Dataset",
    "VLCMUCDDataset",
    "is_synthetic",
    "open_dataset",
    "parse_spec",
    "same_source",
]


def parse_spec(spec: str) -> tuple[str, str]:
    """Split ``"FORMAT:PATH"`` into (format, path); InputError when malformed or unknown."""
    fmt, sep, path = spec.partition(":")
    fmt = fmt.strip().lower()
    known = ", ".join(FORMATS)
    if not sep or not path:
        raise InputError(
            f"dataset {spec!r}: expected FORMAT:PATH, e.g. folder:/data/levir ({known})"
        )
    if fmt not in FORMATS:
        raise InputError(f"dataset {spec!r}: unknown format {fmt!r}; known formats: {known}")
    return fmt, path


def open_dataset(spec: str, **options: Any) -> PairDataset:
    """Open a dataset from ``"FORMAT:PATH"`` (e.g. ``"pcd:/data/tsunami"``) with reader options.

    Options are the reader's keyword arguments (``split="train"``, ``fold=1``, ``bands="all"``);
    an option the reader does not take is an InputError listing those it does.
    """
    fmt, path = parse_spec(spec)
    cls = FORMATS[fmt]
    accepted = [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "root")]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise InputError(
            f"format {fmt!r} has no option {', '.join(unknown)}; its options: {', '.join(accepted)}"
        )
    return cls(path, **options)


def is_synthetic(spec: str) -> bool:
    """Whether a source spec names synthetic pairs (`synthetic` or `synthetic:PHOTOS`)."""
    return spec.strip().lower().split(":", 1)[0] == SYNTHETIC


def same_source(spec: str, other: str) -> bool:
    """Whether two FORMAT:PATH specs name the same format and the same folder name.

    Paths recorded in a model (relative to where it was trained) and paths given now rarely
    agree, so the folder's own name stands for the data set.
    """
    fmt_a, _, path_a = spec.partition(":")
    fmt_b, _, path_b = other.partition(":")
    return (fmt_a.strip().lower() == fmt_b.strip().lower()
            and Path(path_a.rstrip("/")).name == Path(path_b.rstrip("/")).name)
