"""`changeseg detect` in-process: outputs on success, one line and no files on bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from changeseg.cli import detect
from changeseg.cli.main import main as changeseg_main
from changeseg.io.images import write_png
from tests.conftest import require_real_data
from tests.inference.conftest import tiny_checkpoint  # noqa: F401  (shared fixture)


@pytest.fixture
def images(tmp_path, rng):
    reference = rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)
    comparison = reference.copy()
    comparison[5:25, 10:40] = 255 - comparison[5:25, 10:40]
    return write_png(tmp_path / "ref.png", reference), write_png(tmp_path / "cmp.png", comparison)


def test_writes_all_outputs_and_a_summary_line(images, tmp_path, tiny_checkpoint, capsys):  # noqa: F811
    out = tmp_path / "out"
    code = detect.main([str(images[0]), str(images[1]), "-o", str(out), "--model", str(tiny_checkpoint),
                        "--save-probability", "--min-area", "3", "--precision", "fp32"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert sorted(p.name for p in out.iterdir()) == ["mask.png", "overlay.png", "probability.png",
                                                     "regions.json"]
    summary = json.loads((out / "regions.json").read_text())
    assert summary["width"] == 56 and summary["height"] == 40
    assert f"in {summary['region_count']} region(s)" in captured.out
    assert all(r["area"] >= 3 for r in summary["regions"])
    assert captured.out.count("\n") == 1


def test_through_the_group_on_a_real_pair(tmp_path, tiny_checkpoint, capsys):  # noqa: F811
    root = require_real_data("tsunami")
    code = changeseg_main(["detect", str(root / "t0" / "00000001.jpg"), str(root / "t1" / "00000001.jpg"),
                           "-o", str(tmp_path / "o"), "-m", str(tiny_checkpoint)])
    assert code == 0, capsys.readouterr().err
    assert (tmp_path / "o" / "mask.png").is_file()


def test_untrained_models_say_so(images, tmp_path, capsys):
    code = detect.main([str(images[0]), str(images[1]), "-o", str(tmp_path / "o")])
    assert code == 0
    assert "UNTRAINED" in capsys.readouterr().err


def bad_cases(tmp_path, images, rng):
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    truncated = tmp_path / "broken.png"
    truncated.write_bytes(images[0].read_bytes()[:40])
    small = write_png(tmp_path / "small.png", rng.integers(0, 256, (20, 20, 3), dtype=np.uint8))
    ref, cmp = str(images[0]), str(images[1])
    return {
        "missing file": ([str(tmp_path / "nope.png"), cmp], "file not found"),
        "unreadable file": ([ref, str(truncated)], "not a readable image"),
        "non-image": ([str(text), cmp], "not a readable image"),
        "mismatched sizes": ([ref, str(small)], "56×40 but comparison is 20×20"),
        "unknown model": ([ref, cmp, "--model", "no-such-model"], "unknown model"),
        "bad threshold": ([ref, cmp, "--threshold", "2"], "threshold"),
        "bad device": ([ref, cmp, "--device", "tpu"], "device"),
    }


@pytest.mark.parametrize("case", ["missing file", "unreadable file", "non-image", "mismatched sizes",
                                  "unknown model", "bad threshold", "bad device"])
def test_bad_input_gives_one_line_nonzero_exit_and_no_output(case, images, tmp_path, rng, capsys):
    args, message = bad_cases(tmp_path, images, rng)[case]
    out = tmp_path / "out"
    code = detect.main([*args, "-o", str(out)])
    captured = capsys.readouterr()
    assert code != 0
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("error:") and message in lines[0]
    assert "Traceback" not in captured.err
    assert not out.exists()


def test_every_verb_has_help(capsys):
    from changeseg.cli.main import VERBS

    for verb in VERBS:
        assert changeseg_main([verb, "--help"]) == 0
        assert "Usage: changeseg" in capsys.readouterr().out
    assert changeseg_main(["--help"]) == 0
    assert "detect" in capsys.readouterr().out
