"""`changeseg export` in-process: a verified ONNX folder on success, one line on bad input."""

from __future__ import annotations

from changeseg.cli.main import main as changeseg_main
from changeseg.inference.onnx_runtime import OnnxChangeDetector


def test_export_through_the_group_reports_parity_and_size(tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "onnx"
    code = changeseg_main(["export", "--model", str(tiny_checkpoint), "--onnx", str(out), "--opset", "18"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.onnx"]
    line = captured.out.strip()
    assert "\n" not in line and "max |Δp| = " in line and " MB" in line and "opset 18" in line
    assert captured.err == ""  # a trained checkpoint: no UNTRAINED warning
    assert OnnxChangeDetector.from_pretrained(out).class_names == ["unchanged", "changed"]


def test_unknown_model_is_one_error_line(tmp_path, capsys):
    code = changeseg_main(["export", "--model", "no-such-model", "--onnx", str(tmp_path / "o")])
    captured = capsys.readouterr()
    assert code == 1
    assert captured.err.startswith("error: unknown model 'no-such-model'")
    assert captured.err.count("\n") == 1
    assert not (tmp_path / "o").exists()


def test_missing_required_options_are_usage_errors(capsys):
    assert changeseg_main(["export", "--model", "x"]) == 2
    assert "--onnx" in capsys.readouterr().err


def test_help_lists_the_options(capsys):
    assert changeseg_main(["export", "--help"]) == 0
    out = capsys.readouterr().out
    assert all(option in out for option in ("--model", "--onnx", "--opset", "--no-check", "--exporter"))
