"""tools/average_weights.py: a soup averages raw logits, undoing an ingredient's folded calibration."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch

from changeseg.evaluation.calibration import Calibration, fold_into_model
from changeseg.io.checkpoints import CheckpointConfig, load_checkpoint, save_checkpoint
from changeseg.models.model import build_model
from tests.tools.scripts import ROOT, load_script

average_weights = load_script("tools/average_weights.py")


def tiny(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model(fpn_channels=8, num_classes=2).eval()


def run_tool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(ROOT / "tools" / "average_weights.py"), *args],
                          capture_output=True, text=True, timeout=300)


def plain_soup(out: Path, *folders: Path) -> Path:
    """The soup of uncalibrated checkpoints, which the tool averages as they are."""
    result = run_tool(str(out), *map(str, folders))
    assert result.returncode == 0, result.stderr
    assert "calibration undone" not in result.stdout
    return out


def test_a_calibrated_ingredient_is_averaged_in_its_training_logits(tmp_path: Path) -> None:
    raw, other = tiny(0), tiny(1)
    config = CheckpointConfig(model=raw.config.to_dict())
    raw_folder = save_checkpoint(tmp_path / "raw", raw.state_dict(), config)
    other_folder = save_checkpoint(tmp_path / "other", other.state_dict(), config)
    calibration = Calibration(temperature=1.6, no_change_bias=1.2)
    calibrated = fold_into_model(tiny(0), calibration)
    calibrated_folder = save_checkpoint(
        tmp_path / "calibrated", calibrated.state_dict(),
        CheckpointConfig(model=raw.config.to_dict(), threshold=0.32,
                         metadata={"calibration": {**calibration.to_dict(), "previous_threshold": 0.5},
                                   "domains": {"fixed-camera": {"no_change_bias": -1.0}}}))

    result = run_tool(str(tmp_path / "soup"), str(calibrated_folder), str(other_folder))
    assert result.returncode == 0, result.stderr
    assert "calibration undone" in result.stdout
    soup_config, soup = load_checkpoint(tmp_path / "soup")
    _, expected = load_checkpoint(plain_soup(tmp_path / "plain-soup", raw_folder, other_folder))
    for name, tensor in expected.items():
        assert torch.allclose(soup[name].float(), tensor.float(), atol=1e-5), name
    assert "calibration" not in soup_config.metadata and soup_config.threshold == 0.5
    assert "domains" not in soup_config.metadata  # fitted on top of the undone calibration


def test_uncalibrated_state_leaves_a_raw_checkpoint_alone() -> None:
    model = tiny(2)
    state = model.state_dict()
    same, undone = average_weights.uncalibrated_state(CheckpointConfig(model=model.config.to_dict()), state)
    assert same is state and undone is None


def test_a_packaged_model_name_is_read_and_a_missing_folder_is_one_error_line(tmp_path: Path) -> None:
    result = run_tool(str(tmp_path / "soup"), "aerial", str(tmp_path / "missing"))
    assert result.returncode != 0
    assert result.stderr.strip().count("\n") == 0 and "not found" in result.stderr
    assert not (tmp_path / "soup").exists()
