"""Writing a fixed set of synthetic pairs to disk in the `folder` layout, with meta.json."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from changeseg.data.synthetic.generator import NAME_PATTERN, SyntheticPairGenerator
from changeseg.errors import ConfigError, InputError
from changeseg.io.images import write_json, write_png
from changeseg.labels import CHANGE_TYPES, TYPED_CLASSES

_LAYOUT = ("A", "B", "label", "label_typed")


def check_output_folder(outdir: str | os.PathLike, overwrite: bool = False) -> Path:
    """Check that `outdir` can receive a synthetic set; returns it as a Path.

    Raises InputError when it is a file, or (unless `overwrite`) already holds a data set.
    With `overwrite`, files of the same names are replaced and others are left alone.
    """
    root = Path(outdir)
    if root.exists() and not root.is_dir():
        raise InputError(f"output is not a folder: {root}")
    existing = [name for name in (*_LAYOUT, "meta.json") if (root / name).exists()]
    if existing and not overwrite:
        raise InputError(f"{root} already holds a data set ({', '.join(existing)}); "
                         f"choose another folder or overwrite it (--overwrite)")
    return root


def write_synthetic_set(outdir: str | os.PathLike, count: int,
                        generator: SyntheticPairGenerator | None = None, *, start: int = 0,
                        overwrite: bool = False, progress: Callable[[int], None] | None = None,
                        **generator_kwargs: Any) -> Path:
    """Write `count` pairs (indices start .. start+count-1) in the `folder` layout.

    ``A/NAME.png`` reference, ``B/NAME.png`` comparison, ``label/NAME.png`` change mask
    (0 / 255), ``label_typed/NAME.png`` typed mask (0..3), and ``meta.json`` with the seed,
    count, generator settings and photo source. Either pass a `generator` or the keyword
    arguments of SyntheticPairGenerator (photos, size, seed, config, overrides).
    `progress(n)` is called after each pair. Refuses a folder that already holds a set unless
    `overwrite`. Returns the output folder.
    """
    if generator is not None and generator_kwargs:
        raise ConfigError("write_synthetic_set: pass a generator or generator settings, not both")
    if count < 1:
        raise ConfigError(f"write_synthetic_set: count must be at least 1, got {count}")
    if start < 0:
        raise ConfigError(f"write_synthetic_set: start must be non-negative, got {start}")
    root = check_output_folder(outdir, overwrite)
    if generator is None:
        generator = SyntheticPairGenerator(**generator_kwargs)
    for name in _LAYOUT:
        (root / name).mkdir(parents=True, exist_ok=True)
    type_counts = dict.fromkeys(CHANGE_TYPES, 0)
    unchanged = 0
    for number in range(count):
        pair = generator.generate(start + number)
        write_png(root / "A" / f"{pair.name}.png", pair.reference)
        write_png(root / "B" / f"{pair.name}.png", pair.comparison)
        write_png(root / "label" / f"{pair.name}.png", pair.mask * np.uint8(255))
        write_png(root / "label_typed" / f"{pair.name}.png", pair.typed_mask)
        for change in pair.changes:
            type_counts[change["type"]] += 1
        unchanged += not pair.mask.any()
        if progress is not None:
            progress(number + 1)
    from changeseg import __version__

    meta = {
        "format": "folder",
        "generator": "changeseg.data.synthetic",
        "changeseg_version": __version__,
        "seed": generator.seed,
        "count": int(count),
        "start": int(start),
        "name_pattern": NAME_PATTERN,
        "first": generator.name(start),
        "last": generator.name(start + count - 1),
        **generator.settings(),
        "labels": {"label": {"0": "no change", "255": "change"},
                   "label_typed": {str(code): name for code, name in enumerate(TYPED_CLASSES)}},
        "label_frame": "shared pixel grid; each object labelled where it is visible: appear in "
                       "the comparison, disappear in the reference, exchange the union of both",
        "stats": {"changes": type_counts, "pairs_without_change": int(unchanged)},
    }
    write_json(root / "meta.json", meta)
    return root
