"""tools/average_weights.py: a soup averages raw logits, undoing an ingredient's folded calibration."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
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


def held_out_config(model: torch.nn.Module, names: list[str], **metadata: object) -> CheckpointConfig:
    """A checkpoint config recording `names` as the pairs its training held out."""
    sources = [{"spec": "folder:data/boards", "val_names": names}]
    return CheckpointConfig(model=model.config.to_dict(),
                            metadata={"val_names": names, "training": {"seed": len(names),
                                                                       "data": {"sources": sources}},
                                      **metadata})


def test_an_ensemble_averages_the_members_raw_logits(tmp_path: Path) -> None:
    from changeseg.inference.predictor import ChangeDetector

    first, second = tiny(3), tiny(4)
    names = ["a", "b"]
    calibration = Calibration(temperature=1.4, no_change_bias=0.8)
    calibrated = save_checkpoint(  # a packaged member: its folded calibration is undone first
        tmp_path / "first", fold_into_model(tiny(3), calibration).state_dict(),
        held_out_config(first, names, calibration={**calibration.to_dict(), "previous_threshold": 0.9}))
    raw = save_checkpoint(tmp_path / "second", second.state_dict(), held_out_config(second, names))

    result = run_tool("--ensemble", str(tmp_path / "ensemble"), str(calibrated), str(raw))
    assert result.returncode == 0, result.stderr
    config, _ = load_checkpoint(tmp_path / "ensemble")
    assert config.model["ensemble"] == 2 and config.threshold == 0.9
    assert "calibration" not in config.metadata and config.metadata["val_names"] == names
    assert [m["source"] for m in config.metadata["ensemble_of"]] == [str(calibrated), str(raw)]
    assert [m["calibration_undone"] for m in config.metadata["ensemble_of"]] == [calibration.to_dict(), None]
    detector = ChangeDetector.from_pretrained(tmp_path / "ensemble", precision="fp32")
    generator = torch.Generator().manual_seed(9)
    reference, comparison = (torch.randn(1, 3, 64, 96, generator=generator) for _ in range(2))
    with torch.no_grad():
        expected = (first(reference, comparison) + second(reference, comparison)) / 2
        assert torch.allclose(detector.model(reference, comparison), expected, atol=1e-5)


@pytest.mark.parametrize("problem", ["held-out", "normalisation", "nested"])
def test_members_that_do_not_fit_together_are_one_error_line(tmp_path: Path, problem: str) -> None:
    first, second = tiny(5), tiny(6)
    one = save_checkpoint(tmp_path / "one", first.state_dict(), held_out_config(first, ["a", "b"]))
    other_config = held_out_config(second, ["a", "c"] if problem == "held-out" else ["a", "b"])
    if problem == "normalisation":
        other_config = replace(other_config, mean=[0.5, 0.5, 0.5])
    other = save_checkpoint(tmp_path / "other", second.state_dict(), other_config)
    if problem == "nested":
        assert run_tool("--ensemble", str(tmp_path / "pair"), str(one), str(other)).returncode == 0
        one = other = tmp_path / "pair"
    result = run_tool("--ensemble", str(tmp_path / "ensemble"), str(one), str(other))
    assert result.returncode != 0 and result.stderr.strip().count("\n") == 0
    assert {"held-out": "other validation pairs", "normalisation": "normalisation",
            "nested": "ensembles already"}[problem] in result.stderr
    assert not (tmp_path / "ensemble").exists()
