"""`changeseg detect` outputs: clean errors for bad output paths, no stale files, quiet decoders,
branch maps."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from changeseg.cli import detect
from tests.inference.test_outputs import unwritable_folder
from tests.io.test_native import png_with_bad_chunks


def run(args: list[str], capsys) -> tuple[int, str, str]:
    code = detect.main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and "internal error" not in err and "Traceback" not in err
    return lines[0]


def test_an_output_path_that_is_a_file_is_one_error_line(images, tmp_path, tiny_checkpoint, capsys):
    blocker = tmp_path / "taken.png"
    blocker.write_bytes(b"not a folder")
    for out in (blocker, blocker / "sub"):
        code, stdout, err = run([str(images[0]), str(images[1]), "-o", str(out), "-m", str(tiny_checkpoint)],
                                capsys)
        assert code == 1 and stdout == ""
        line = one_error_line(err)
        assert "taken.png" in line and "is a file, not a folder" in line
    assert blocker.read_bytes() == b"not a folder"


def test_an_unwritable_output_folder_is_one_error_line(images, tmp_path, tiny_checkpoint, capsys):
    locked = unwritable_folder(tmp_path)
    try:
        code, _, err = run([str(images[0]), str(images[1]), "-o", str(locked / "out"),
                            "-m", str(tiny_checkpoint)], capsys)
        assert code == 1 and "cannot write" in one_error_line(err)
        code, _, err = run(["--ref-dir", str(images[0].parent), "--cmp-dir", str(images[0].parent),
                            "-o", str(locked / "batch"), "-m", str(tiny_checkpoint)], capsys)
        assert code == 1 and "cannot write" in one_error_line(err)
    finally:
        (tmp_path / "locked").chmod(0o755)


def test_a_pair_folder_that_is_a_file_fails_that_pair_cleanly(images, tmp_path, tiny_checkpoint, capsys):
    pairs = tmp_path / "pairs.csv"
    pairs.write_text(f"{images[0]},{images[1]},first\n{images[0]},{images[1]},second\n")
    (tmp_path / "batch").mkdir()
    (tmp_path / "batch" / "first").write_text("a file where the pair's folder goes")
    code, out, err = run(["--pairs", str(pairs), "-o", str(tmp_path / "batch"), "-m", str(tiny_checkpoint)],
                         capsys)
    assert code == 1 and "1 done" in out and "1 failed" in out
    assert "error: pair first: cannot write to" in err and "internal error" not in err


def test_reusing_an_output_folder_leaves_no_stale_outputs(images, tmp_path, tiny_checkpoint, capsys):
    out = tmp_path / "out"
    base = [str(images[0]), str(images[1]), "-o", str(out), "-m", str(tiny_checkpoint), "--precision", "fp32"]
    assert run([*base, "--save-probability", "--save-branches"], capsys)[0] == 0
    assert (out / "probability.png").is_file() and (out / "branches" / "level1_a.png").is_file()
    (out / "unknown.png").write_bytes(b"from an --align run")  # what an earlier aligned run leaves
    (out / "my-notes.txt").write_text("mine")
    assert run(base, capsys)[0] == 0
    left = sorted(p.name for p in out.iterdir())
    assert left == ["mask.png", "my-notes.txt", "overlay.png", "regions.json"]
    assert "unknown_pixels" not in json.loads((out / "regions.json").read_text())


def test_decoder_warnings_do_not_reach_the_terminal(tmp_path, tiny_checkpoint):
    noisy = png_with_bad_chunks(tmp_path / "noisy.png")  # libpng warns about two chunks
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run_ = subprocess.run([sys.executable, "-m", "changeseg.cli.main", "detect", str(noisy), str(noisy),
                           "-o", str(tmp_path / "out"), "-m", str(tiny_checkpoint), "--precision", "fp32"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert run_.returncode == 0, run_.stderr
    assert "libpng" not in run_.stderr and "WARN" not in run_.stderr
    assert run_.stderr.strip() == "", run_.stderr
    assert "pixels changed" in run_.stdout


def test_save_branches_writes_every_level_and_branch(images, tmp_path, tiny_checkpoint, capsys):
    out = tmp_path / "out"
    code, stdout, err = run([str(images[0]), str(images[1]), "-o", str(out), "-m", str(tiny_checkpoint),
                             "--save-branches"], capsys)
    assert code == 0, err
    assert "branch maps in branches/" in stdout
    names = sorted(p.name for p in (out / "branches").iterdir())
    assert names == ["branches.json", *sorted(f"level{k}_{b}.png" for k in range(1, 5) for b in "iade")]
    described = json.loads((out / "branches" / "branches.json").read_text())
    assert [level["stride"] for level in described["levels"]] == [4, 8, 16, 32]


@pytest.mark.parametrize("extra, message", [
    (["--backend", "onnx"], "--save-branches needs --backend torch"),
    (["--tile-size", "32"], "--save-branches runs one pass over the whole pair"),
])
def test_save_branches_refusals_are_one_line(extra, message, images, tmp_path, tiny_checkpoint, capsys):
    code, _, err = run([str(images[0]), str(images[1]), "-o", str(tmp_path / "o"), "-m", str(tiny_checkpoint),
                        "--save-branches", *extra], capsys)
    assert code != 0 and message in one_error_line(err)
    assert not (tmp_path / "o").exists()
