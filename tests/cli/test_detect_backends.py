"""`changeseg detect` / `serve` backends: auto names its choice, every backend runs a model by name,
contradictions are one `error:` line, ignored precisions one `note:` line."""

from __future__ import annotations

import numpy as np
import pytest

from changeseg.cli import detect
from changeseg.io.images import read_image, write_png
from tests.conftest import PROJECT_ROOT
from tests.inference.onnx_helpers import changed_pair, export_tiny

pytest.importorskip("onnxruntime")
pytest.importorskip("openvino")

COFFEE = PROJECT_ROOT / "examples" / "coffee"


@pytest.fixture
def pair(tmp_path, rng):
    reference, comparison = changed_pair(rng, 72, 96)
    return str(write_png(tmp_path / "r.png", reference)), str(write_png(tmp_path / "c.png", comparison))


def test_auto_is_the_default_and_says_which_backend_ran(pair, tmp_path, tiny_checkpoint, capsys):
    code = detect.main([*pair, "-o", str(tmp_path / "o"), "-m", str(tiny_checkpoint)])
    out = capsys.readouterr().out
    assert code == 0
    assert "; model " in out and ", openvino (auto), " in out
    (tmp_path / "pairs.csv").write_text(f"{pair[0]},{pair[1]},p1\n")
    code = detect.main(["--pairs", str(tmp_path / "pairs.csv"), "-o", str(tmp_path / "b"), "-m",
                        str(tiny_checkpoint), "--backend", "openvino", "--precision", "fp32"])
    out = capsys.readouterr().out
    assert code == 0 and "1 done" in out and "; openvino, fp32 →" in out


@pytest.mark.parametrize("backend", ["onnx", "openvino"])
def test_every_backend_runs_the_default_model_by_name(backend, tmp_path, capsys):
    ref, cmp = str(COFFEE / "reference.png"), str(COFFEE / "comparison.png")
    torch_args = ["--backend", "torch", "--precision", "fp32"]
    assert detect.main([ref, cmp, "-o", str(tmp_path / "torch"), *torch_args]) == 0
    assert detect.main([ref, cmp, "-o", str(tmp_path / backend), "--backend", backend, "-m", "default"]) == 0
    out = capsys.readouterr().out
    assert f"model default, {backend}, " in out
    torch_mask = read_image(tmp_path / "torch" / "mask.png") > 0
    mask = read_image(tmp_path / backend / "mask.png") > 0
    assert 0.01 < torch_mask.mean() < 0.5
    assert (mask == torch_mask).mean() >= 0.99


def error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    return lines[0]


def test_contradictions_are_one_error_line(pair, tmp_path, tiny_checkpoint, capsys):
    onnx_folder = export_tiny(tiny_checkpoint, tmp_path / "onnx").folder
    out = tmp_path / "out"
    cases = [
        (["-m", str(onnx_folder), "--backend", "torch"], "--backend onnx or --backend openvino"),
        (["-m", str(tiny_checkpoint), "--backend", "torch", "--precision", "int8"], "int8 runs on the onnx"),
        (["-m", str(tiny_checkpoint), "--backend", "openvino", "--device", "cuda"], "runs on the CPU"),
        (["-m", str(tiny_checkpoint), "--backend", "onnx", "--precision", "int8"], "no validation pairs"),
        (["-m", str(tiny_checkpoint), "--backend", "tensorrt"], "tensorrt"),
    ]
    for args, message in cases:
        assert detect.main([*pair, "-o", str(out), *args]) != 0
        line = error_line(capsys)
        assert line.startswith("error:") and message in line, (args, line)
        assert not out.exists()


def test_an_ignored_precision_is_one_note(pair, tmp_path, tiny_checkpoint, capsys):
    code = detect.main([*pair, "-o", str(tmp_path / "o"), "-m", str(tiny_checkpoint), "--backend", "onnx",
                        "--precision", "bf16"])
    captured = capsys.readouterr()
    assert code == 0
    notes = [line for line in captured.err.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and "bf16 is ignored by the onnx backend" in notes[0]
    assert ", onnx, fp32, " in captured.out


def test_serve_loads_the_auto_choice(tiny_checkpoint):
    from changeseg.cli.serve import load_predictor

    predictor = load_predictor(str(tiny_checkpoint), "auto")
    assert predictor.backend_name == "openvino"
    probs = predictor.predict_proba(np.zeros((32, 32, 3), np.uint8), np.zeros((32, 32, 3), np.uint8))
    assert probs.shape == (2, 32, 32)
