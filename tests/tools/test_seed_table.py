"""bench/seed_table.py: per-run scores, each recipe's mean and spread; bad input is one error line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.tools.scripts import ROOT, load_script

seed_table = load_script("bench/seed_table.py")
SETS = ("oscd", "airchange")


def write_run(folder: Path, scores: dict[str, float]) -> Path:
    for name, f1 in scores.items():
        report = folder / f"aerial-{name}" / "metrics.json"
        report.parent.mkdir(parents=True)
        report.write_text(json.dumps({"protocols": {"global": {"f1": f1}}}))
    return folder


def test_the_table_gives_each_run_and_each_recipes_mean_and_spread(tmp_path: Path) -> None:
    a = write_run(tmp_path / "a", {"oscd": 0.5, "airchange": 0.2})
    b = write_run(tmp_path / "b", {"oscd": 0.6, "airchange": 0.4})
    c = write_run(tmp_path / "c", {"oscd": 0.7, "airchange": 0.1})
    table = seed_table.seed_table([("old", [a, b]), ("new", [c])], "aerial", SETS).splitlines()
    assert table[0] == "| recipe | run | oscd | airchange | mean over sets |"
    assert table[2] == "| old | a | 0.500 | 0.200 | 0.350 |"
    # mean 0.55 ± sd 0.0707 on OSCD, 0.3 ± 0.1414 on AirChange; 0.4 over both sets
    assert table[4] == "| old | mean ± sd of 2 | **0.550** ± 0.071 | **0.300** ± 0.141 | **0.425** |"
    assert table[6] == "| new | mean ± sd of 1 | **0.700** ± 0.000 | **0.100** ± 0.000 | **0.400** |"


def test_a_missing_report_or_a_bad_recipe_is_one_error_line(tmp_path: Path) -> None:
    write_run(tmp_path / "a", {"oscd": 0.5})
    script = str(ROOT / "bench" / "seed_table.py")
    for args in ([f"x={tmp_path / 'a'}", "--sets", "oscd,airchange"], ["no-equals-sign"]):
        done = subprocess.run([sys.executable, script, *args], capture_output=True, text=True,
                              timeout=60)
        assert done.returncode == 1 and done.stdout == ""
        assert done.stderr.startswith("error: ") and len(done.stderr.strip().splitlines()) == 1
    with pytest.raises(ValueError, match="NAME=DIR"):
        seed_table.parse_group("name=")
