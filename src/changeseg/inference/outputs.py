"""The output folder of one detection: the files changeseg owns there, and getting it ready.

`check_output_folder` makes sure a folder exists and can be written (a file in the way, a
missing permission or a read-only file system is an OutputError with one clear line), and
`clear_owned_outputs` removes what an earlier run wrote there — only the names changeseg
writes (`OWNED_FILES`, the `branches/` maps, and leftover temporary files of those), never
anything else — so a reused folder never mixes results of two runs. regions.json goes
first: without it the folder reads as incomplete until the new run writes it last.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

from changeseg.errors import OutputError
from changeseg.io.images import output_error

# Everything `detect_to_folder` may write into a pair's folder (ChangeResult.save, the GeoTIFF
# outputs, the windowed path), regions.json first.
OWNED_FILES = ("regions.json", "mask.png", "overlay.png", "types.png", "probability.png", "unknown.png",
               "mask.tif", "probability.tif", "regions.geojson")
BRANCHES_FOLDER = "branches"
BRANCH_FILE = re.compile(r"^(level\d+_[a-z]\.png|branches\.json)$")
_TEMPORARY = re.compile(r"^\.(?P<name>.+)\.[^.]+\.tmp$")  # atomic_write's temporary names
SPOOL_PREFIX = ".changeseg-spool."  # decoded images the windowed image path keeps on disk while it runs


def check_output_folder(path: str | os.PathLike, create: bool = True) -> Path:
    """Check that files can be written in folder `path`, creating it (and its parents) if needed.

    With `create=False` nothing is made: the nearest existing folder on the way must accept
    new files, so bad input found later leaves no empty output folder behind. Raises
    OutputError naming the problem: a file where a folder should be, no permission, a
    read-only or full file system.
    """
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"cannot write to {folder}: it is a file, not a folder (choose another -o/--out)")
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise OutputError(f"cannot write to {folder}: {existing} is a file, not a folder")
    if create:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise output_error(folder, exc) from None
        existing = folder
    try:
        with tempfile.TemporaryFile(dir=existing, prefix=".changeseg-probe."):
            pass
    except OSError as exc:
        where = "" if existing == folder else f" ({existing} does not accept new files)"
        raise OutputError(f"cannot write to {folder}: {exc.strerror or exc}{where}") from None
    return folder


def _owned(name: str) -> bool:
    if name.startswith(SPOOL_PREFIX):  # left by a run that was killed
        return True
    match = _TEMPORARY.match(name)
    return (match.group("name") if match else name) in OWNED_FILES


def clear_owned_outputs(path: str | os.PathLike) -> list[Path]:
    """Remove the outputs an earlier run left in `path` (only changeseg's own names); returns them."""
    folder = Path(path)
    if not folder.is_dir():
        return []
    removed = []
    try:
        for name in OWNED_FILES:  # regions.json first: the folder reads as incomplete from here on
            target = folder / name
            if target.is_file():
                target.unlink()
                removed.append(target)
        for entry in folder.iterdir():
            if entry.is_file() and entry.name.startswith(".") and _owned(entry.name):
                entry.unlink()
                removed.append(entry)
        branches = folder / BRANCHES_FOLDER
        if branches.is_dir():
            for entry in branches.iterdir():
                if entry.is_file() and BRANCH_FILE.match(entry.name):
                    entry.unlink()
                    removed.append(entry)
            if not any(branches.iterdir()):
                branches.rmdir()
    except OSError as exc:
        raise output_error(folder, exc) from None
    return removed


def prepare_output_folder(path: str | os.PathLike) -> Path:
    """`check_output_folder`, then `clear_owned_outputs`: a writable folder holding no stale results."""
    folder = check_output_folder(path)
    clear_owned_outputs(folder)
    return folder
