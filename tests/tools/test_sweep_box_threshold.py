"""tools/sweep_box_threshold.py on real DeepPCB boards with the packaged `pcb` model."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.conftest import require_real_data
from tests.tools.scripts import load_script


def sweep(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str) -> dict:
    """Run the tool with `args`; its closing JSON line."""
    monkeypatch.setattr(sys, "argv", ["sweep_box_threshold.py", *args])
    load_script("tools/sweep_box_threshold.py").main()
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_tta_averages_the_views_the_plain_sweep_does_not(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    root = require_real_data("deeppcb")
    names = tmp_path / "names.txt"
    names.write_text("20085000\n00041000\n", encoding="utf-8")  # two trainval boards
    common = ("pcb", f"deeppcb:{root}", "--names", str(names), "--thresholds", "0.3,0.68",
              "--min-areas", "0,200")
    plain = sweep(monkeypatch, capsys, *common)
    averaged = sweep(monkeypatch, capsys, *common, "--tta")
    dihedral = sweep(monkeypatch, capsys, *common, "--tta-views", "dihedral")
    assert plain["pairs"] == averaged["pairs"] == dihedral["pairs"] == 2
    assert plain["tta"] is None and averaged["tta"] == "flip-swap" and dihedral["tta"] == "dihedral"
    assert plain["best"]["ground_truth"] == averaged["best"]["ground_truth"] > 0
    # the averaged probabilities are not the plain ones: the pixel F1 at a threshold moves
    assert averaged["best"]["pixel_f1"] != plain["best"]["pixel_f1"]
    assert dihedral["best"]["pixel_f1"] not in (plain["best"]["pixel_f1"], averaged["best"]["pixel_f1"])
