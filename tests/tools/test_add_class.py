"""tools/add_class.py: a new output class starts as a copy of an existing one."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch

from changeseg.io.checkpoints import CheckpointConfig, load_checkpoint, save_checkpoint
from changeseg.models.model import build_model
from tests.tools.scripts import ROOT


def run_tool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(ROOT / "tools" / "add_class.py"), *args],
                          capture_output=True, text=True, timeout=300)


def test_new_class_scores_as_the_copied_one(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_model(fpn_channels=8, num_classes=2).eval()
    source = save_checkpoint(tmp_path / "two", model.state_dict(),
                             CheckpointConfig(model=model.config.to_dict(), threshold=0.68,
                                              metadata={"min_area": 200, "domains": {"x": {}}}))
    result = run_tool(str(source), str(tmp_path / "three"), "--name", "core", "--copy", "1")
    assert result.returncode == 0, result.stderr
    config, state = load_checkpoint(tmp_path / "three")
    assert config.model["num_classes"] == 3 and config.class_names == ["unchanged", "changed", "core"]
    assert config.threshold == 0.68 and config.metadata == {"min_area": 200}  # domains dropped
    grown = build_model(**config.model).eval()
    grown.load_state_dict(state)
    pair = torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        before, after = model(*pair), grown(*pair)
    assert torch.allclose(after[:, :2], before, atol=1e-5)  # the old classes are untouched
    assert torch.equal(after[:, 2], after[:, 1])  # the new one starts as class 1


def test_bad_copy_index_or_taken_name_is_one_error_line(tmp_path: Path) -> None:
    model = build_model(fpn_channels=8, num_classes=2)
    source = save_checkpoint(tmp_path / "two", model.state_dict(),
                             CheckpointConfig(model=model.config.to_dict()))
    for args, message in ((["--name", "core", "--copy", "2"], "--copy must name a class 0..1"),
                          (["--name", "changed"], "already has a class named 'changed'")):
        result = run_tool(str(source), str(tmp_path / "out"), *args)
        assert result.returncode != 0
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]
        assert "Traceback" not in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()
