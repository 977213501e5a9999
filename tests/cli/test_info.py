"""`changeseg info` lists presets and backbones with their sizes and costs."""

from __future__ import annotations

import json

import pytest

from changeseg.cli import info


def test_json_lists_presets_backbones_and_costs(capsys):
    assert info.main(["--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    presets = {row["name"]: row for row in report["presets"]}
    assert {"c3po-resnet18-deeplabv3", "c3po-vgg16bn-deeplabv3", "c3po-mobilenetv2-fcn"} <= set(presets)
    assert presets["c3po-resnet18-deeplabv3"]["params_m"] == pytest.approx(44.7, abs=0.1)
    assert presets["c3po-mobilenetv2-fcn"]["gmacs_512"] < presets["c3po-resnet18-fcn"]["gmacs_512"]
    backbones = {row["name"]: row for row in report["backbones"]}
    assert backbones["mobilenet_v2"]["channels"] == [24, 32, 96, 320]
    assert backbones["mobilenet_v2"]["imagenet_offline"] is True
    assert backbones["efficientnet_lite0"]["imagenet_offline"] is True  # make install's PyPI package
    assert backbones["resnet18"]["imagenet_offline"] is False
    assert len(backbones) == 11


def test_table_output(capsys):
    assert info.main([]) == 0
    out = capsys.readouterr().out
    assert "c3po-mobilenetv2-fcn" in out and "GMACs" in out


def test_lists_each_packaged_models_threshold_and_domains(capsys):
    assert info.main(["--json"]) == 0
    settings = json.loads(capsys.readouterr().out)["model_settings"]
    assert {"default", "pcb", "aerial"} <= set(settings)
    assert settings["default"]["domains"] == ["fixed-camera"]
    assert settings["pcb"]["domains"] == [] and settings["pcb"]["threshold"] == pytest.approx(0.68)
    assert settings["default"]["networks"] == 1
    assert info.main([]) == 0
    assert "default: threshold 0.39, domain calibrations (--domain): fixed-camera" in capsys.readouterr().out


def test_an_ensemble_says_how_many_networks_it_runs(tmp_path, monkeypatch, capsys):
    from changeseg.io import checkpoints
    from changeseg.io.checkpoints import CheckpointConfig, write_json

    folder = tmp_path / "boards"
    write_json(folder / "config.json", CheckpointConfig(model={"fpn_channels": 8, "ensemble": 2},
                                                        threshold=0.6).to_json("float16"))
    monkeypatch.setattr(checkpoints, "packaged_models", lambda: {"boards": folder})
    assert info.main(["--json"]) == 0
    assert json.loads(capsys.readouterr().out)["model_settings"]["boards"]["networks"] == 2
    assert info.main([]) == 0
    assert "boards: an ensemble of 2 networks, threshold 0.6" in capsys.readouterr().out
