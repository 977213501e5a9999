"""Checkpoint folders: round trip, fp16 storage, and clear errors for broken folders."""

from __future__ import annotations

import json

import pytest
import torch

from changeseg.errors import CheckpointError
from changeseg.io.checkpoints import (
    CheckpointConfig,
    check_state_dict,
    load_checkpoint,
    model_folder,
    packaged_models,
    save_checkpoint,
)
from changeseg.models import build_model


@pytest.fixture
def saved(tmp_path):
    torch.manual_seed(0)
    model = build_model(fpn_channels=16)
    config = CheckpointConfig(model=model.config.to_dict(), class_names=["none", "change"],
                              metadata={"epochs": 3})
    folder = save_checkpoint(tmp_path / "ckpt", model.state_dict(), config)
    return folder, model


def test_round_trip_restores_every_tensor_and_field(saved):
    folder, model = saved
    config, state = load_checkpoint(folder)
    assert config.class_names == ["none", "change"] and config.metadata == {"epochs": 3}
    assert config.model == model.config.to_dict()
    for name, tensor in model.state_dict().items():
        assert torch.equal(state[name], tensor), name


def test_float16_storage_halves_the_file_and_loads_as_float32(saved, tmp_path):
    folder, model = saved
    half = save_checkpoint(tmp_path / "half", model.state_dict(), load_checkpoint(folder)[0], "float16")
    assert (half / "model.safetensors").stat().st_size < 0.6 * (folder / "model.safetensors").stat().st_size
    _, state = load_checkpoint(half)
    weight = state["head.4.weight"]
    assert weight.dtype == torch.float32
    assert torch.allclose(weight, model.state_dict()["head.4.weight"], atol=1e-3)


def test_missing_files_are_named(saved):
    folder, _ = saved
    (folder / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="missing model.safetensors"):
        load_checkpoint(folder)
    (folder / "config.json").unlink()
    with pytest.raises(CheckpointError, match="missing config.json"):
        load_checkpoint(folder)
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(folder / "nope")


def test_unknown_format_version_is_rejected(saved):
    folder, _ = saved
    document = json.loads((folder / "config.json").read_text())
    document["format_version"] = 99
    (folder / "config.json").write_text(json.dumps(document))
    with pytest.raises(CheckpointError, match="format version 99"):
        load_checkpoint(folder)


def test_garbage_files_are_rejected(saved):
    folder, _ = saved
    (folder / "model.safetensors").write_bytes(b"not tensors")
    with pytest.raises(CheckpointError, match="not a valid safetensors"):
        load_checkpoint(folder)
    (folder / "config.json").write_text("{")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_checkpoint(folder)


def test_shape_mismatch_is_reported():
    expected = {"a": torch.zeros(2, 3), "b": torch.zeros(1)}
    with pytest.raises(CheckpointError, match=r"wrongly shaped.*a \(3, 2\) != \(2, 3\)"):
        check_state_dict(expected, {"a": torch.zeros(3, 2), "b": torch.zeros(1)}, "x")
    with pytest.raises(CheckpointError, match="1 missing tensor"):
        check_state_dict(expected, {"a": torch.zeros(2, 3)}, "x")


def test_model_folder_is_a_folder_as_given_or_a_packaged_model_by_name(tmp_path):
    assert model_folder(tmp_path) == tmp_path
    assert model_folder("aerial") == packaged_models()["aerial"]
    assert (model_folder("aerial") / "config.json").is_file()
    assert model_folder(tmp_path / "missing") is None
    assert model_folder("c3po-mobilenetv2-fcn") is None  # a preset has no folder
