"""bench/full_predict.py: a path that cannot be loaded is reported and skipped, the rest timed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.tools.scripts import ROOT


def run_bench(tmp_path: Path, checkpoint: Path, only: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, "CHANGESEG_CACHE": str(tmp_path / "cache")}  # no int8 model cached yet
    command = [sys.executable, "bench/full_predict.py", "--models", str(checkpoint), "--only", only,
               "--size", "64", "--rounds", "1"]
    return subprocess.run(command, cwd=ROOT, env=environment, capture_output=True, text=True, timeout=300)


def test_an_int8_path_without_a_quantised_model_is_skipped_and_the_others_timed(
        tmp_path: Path, tiny_checkpoint: Path) -> None:
    result = run_bench(tmp_path, tiny_checkpoint, "PyTorch fp32,OpenVINO int8")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert "skipped" in result.stdout and "OpenVINO int8" in result.stdout
    assert "tools/quantize_model.py" in result.stdout
    timed = [line for line in result.stdout.splitlines() if " ms (best " in line]
    assert any(line.startswith(f"{tiny_checkpoint}, PyTorch fp32") for line in timed)
    assert not any("int8" in line for line in timed)


def test_nothing_loadable_is_one_error_line(tmp_path: Path, tiny_checkpoint: Path) -> None:
    result = run_bench(tmp_path, tiny_checkpoint, "OpenVINO int8")
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        "error: no path could be loaded (see the skipped lines above)"]
