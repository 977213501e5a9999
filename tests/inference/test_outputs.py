"""Output folders: clear errors for folders that cannot be written, only changeseg's own files cleared."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from changeseg.errors import OutputError
from changeseg.inference.outputs import (
    OWNED_FILES,
    check_output_folder,
    clear_owned_outputs,
    prepare_output_folder,
)


def unwritable_folder(tmp_path: Path) -> Path:
    """An existing folder this process cannot create files in (root ignores permission bits)."""
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o555)
    candidates = [folder, Path("/sys/kernel"), Path("/proc/self")]
    for candidate in candidates:
        try:
            with tempfile.TemporaryFile(dir=candidate):
                pass
        except OSError:
            return candidate
    pytest.skip("no folder here refuses new files to this user")  # pragma: no cover


def test_a_file_in_the_way_is_an_output_error(tmp_path):
    blocker = tmp_path / "result.png"
    blocker.write_text("x")
    with pytest.raises(OutputError, match="it is a file, not a folder"):
        check_output_folder(blocker)
    with pytest.raises(OutputError, match="result.png is a file, not a folder"):
        check_output_folder(blocker / "deeper" / "out", create=False)
    with pytest.raises(OutputError, match="result.png is a file, not a folder"):
        prepare_output_folder(blocker / "deeper")


def test_an_unwritable_folder_is_an_output_error(tmp_path):
    locked = unwritable_folder(tmp_path)
    try:
        with pytest.raises(OutputError, match="cannot write"):
            check_output_folder(locked)
        with pytest.raises(OutputError, match="cannot write"):
            check_output_folder(locked / "new", create=False)
    finally:
        (tmp_path / "locked").chmod(0o755)


def test_checking_without_create_makes_nothing(tmp_path):
    assert check_output_folder(tmp_path / "a" / "b", create=False) == tmp_path / "a" / "b"
    assert not (tmp_path / "a").exists()
    assert check_output_folder(tmp_path / "a" / "b").is_dir()
    assert os.listdir(tmp_path / "a" / "b") == []  # the write probe leaves nothing behind


def test_only_changeseg_outputs_are_cleared(tmp_path):
    for name in OWNED_FILES:
        (tmp_path / name).write_text("old")
    (tmp_path / ".mask.png.k2j3.tmp").write_text("left by a killed run")
    (tmp_path / "branches").mkdir()
    (tmp_path / "branches" / "level1_a.png").write_text("old")
    (tmp_path / "branches" / "branches.json").write_text("{}")
    keep = [tmp_path / "notes.txt", tmp_path / "mask.png.bak", tmp_path / ".hidden",
            tmp_path / "sub" / "mask.png"]
    (tmp_path / "sub").mkdir()
    for path in keep:
        path.write_text("mine")
    removed = clear_owned_outputs(tmp_path)
    assert removed[0].name == "regions.json"  # first: the folder reads as incomplete at once
    assert len(removed) == len(OWNED_FILES) + 3
    assert sorted(p.name for p in tmp_path.iterdir()) == [".hidden", "mask.png.bak", "notes.txt", "sub"]
    assert all(p.read_text() == "mine" for p in keep)


def test_a_branches_folder_holding_user_files_is_kept(tmp_path):
    (tmp_path / "branches").mkdir()
    (tmp_path / "branches" / "level2_i.png").write_text("old")
    (tmp_path / "branches" / "mine.txt").write_text("mine")
    prepare_output_folder(tmp_path)
    assert [p.name for p in (tmp_path / "branches").iterdir()] == ["mine.txt"]
