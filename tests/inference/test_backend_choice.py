"""Every backend by name: OpenVINO and onnxruntime agree with PyTorch fp32, models are exported into
the cache once and reused, `auto` picks an installed backend, contradictory requests fail clearly."""

from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from changeseg.errors import CheckpointError, InputError
from changeseg.inference import loading
from changeseg.inference.loading import BackendSpec, choose_backend, describe_backend, load_backend
from changeseg.inference.predictor import ChangeDetector
from tests.conftest import PROJECT_ROOT
from tests.inference.onnx_helpers import changed_pair

pytest.importorskip("onnxruntime")
openvino = pytest.importorskip("openvino")

COFFEE = PROJECT_ROOT / "examples" / "coffee"


def agreement(a, b) -> float:
    return float((np.asarray(a) == np.asarray(b)).mean())


@pytest.mark.parametrize(("backend", "precision"), [("openvino", "fp32"), ("openvino", "bf16"),
                                                    ("onnx", "fp32")])
def test_every_backend_agrees_with_pytorch_on_the_tiny_model(backend, precision, tiny_checkpoint, rng):
    reference, comparison = changed_pair(rng, 96, 128)
    torch_fp32 = ChangeDetector.from_pretrained(tiny_checkpoint, precision="fp32")
    expected = torch_fp32.predict(reference, comparison)
    assert 0.05 < expected.mask.mean() < 0.95  # both decisions occur, so agreement can fail
    detector = load_backend(BackendSpec(str(tiny_checkpoint), backend, precision=precision))
    assert detector.backend_name == backend
    got = detector.predict(reference, comparison)
    assert agreement(got.mask, expected.mask) >= 0.99
    assert np.abs(got.probability - expected.probability).max() < (0.05 if precision == "bf16" else 1e-3)


@pytest.fixture(scope="module")
def coffee_torch():
    """The packaged `default` model's PyTorch fp32 result on the coffee example."""
    detector = ChangeDetector.from_pretrained("default", precision="fp32")
    return detector.predict(COFFEE / "reference.png", COFFEE / "comparison.png")


@pytest.mark.parametrize(("backend", "precision"), [("openvino", "fp32"), ("openvino", "auto"),
                                                    ("onnx", "fp32")])
def test_the_default_model_by_name_on_a_real_pair(backend, precision, coffee_torch):
    detector = ChangeDetector.from_pretrained("default", backend=backend, precision=precision)
    assert detector.backend_name == backend and detector.name == "default" and detector.trained
    result = detector.predict(COFFEE / "reference.png", COFFEE / "comparison.png")
    assert 0.01 < coffee_torch.mask.mean() < 0.5
    assert agreement(result.mask, coffee_torch.mask) >= 0.99
    assert len(result.regions) >= 1


def test_backends_are_exported_once_and_reused(tiny_checkpoint, tmp_path, monkeypatch):
    import changeseg.inference.export as export

    monkeypatch.setenv("CHANGESEG_CACHE", str(tmp_path / "cache"))
    checkpoint = shutil.copytree(tiny_checkpoint, tmp_path / "tiny")
    calls = []
    original = export.export_onnx
    monkeypatch.setattr(export, "export_onnx", lambda *a, **k: calls.append(a) or original(*a, **k))
    logged: list[str] = []
    first = load_backend(BackendSpec(str(checkpoint), "openvino"), log=logged.append)
    second = load_backend(BackendSpec(str(checkpoint), "onnx"), log=logged.append)
    assert len(calls) == 1 and sum("exporting" in line for line in logged) == 1
    entries = list((tmp_path / "cache" / "onnx").iterdir())
    assert len(entries) == 1 and entries[0].name.startswith("tiny-")
    assert first.backend_name == "openvino" and second.backend_name == "onnx"

    # changed weights: a new entry, exported again
    detector = ChangeDetector.from_pretrained(checkpoint, precision="fp32")
    with torch.no_grad():
        next(detector.model.parameters()).mul_(1.5)
    detector.save_pretrained(checkpoint)
    load_backend(BackendSpec(str(checkpoint), "openvino"))
    assert len(calls) == 2
    assert len([p for p in (tmp_path / "cache" / "onnx").iterdir() if not p.name.startswith(".")]) == 2


def test_auto_picks_an_installed_backend_and_says_so(tiny_checkpoint, onnx_folder, monkeypatch):
    name, why = choose_backend(str(tiny_checkpoint))
    assert name == "openvino" and why
    detector = load_backend(BackendSpec(str(tiny_checkpoint), "auto"))
    assert detector.backend_name == "openvino"
    assert describe_backend(detector, "auto").startswith("openvino (auto), ")
    assert choose_backend(str(onnx_folder))[0] == "openvino"
    # presets (untrained, nothing to export), GPUs and branch maps stay on PyTorch
    assert choose_backend("c3po-mobilenetv2-fcn")[0] == "torch"
    assert choose_backend(str(tiny_checkpoint), device="cuda")[0] == "torch"
    assert choose_backend(str(tiny_checkpoint), needs_torch=True)[0] == "torch"

    # without OpenVINO: PyTorch bf16 where the CPU has it, else onnxruntime
    monkeypatch.setattr(loading, "installed", lambda backend: backend != "openvino")
    monkeypatch.setattr("changeseg.hardware.cpu_supports_bf16", lambda: True)
    assert choose_backend(str(tiny_checkpoint))[0] == "torch"
    assert choose_backend(str(onnx_folder))[0] == "onnx"  # an ONNX model never needs torch
    monkeypatch.setattr("changeseg.hardware.cpu_supports_bf16", lambda: False)
    assert choose_backend(str(tiny_checkpoint))[0] == "onnx"


def test_contradictory_requests_fail_and_ignored_precisions_say_so(tiny_checkpoint, onnx_folder):
    with pytest.raises(CheckpointError, match="--backend onnx or --backend openvino"):
        ChangeDetector.from_pretrained(onnx_folder)
    with pytest.raises(InputError, match="int8 runs on the onnx and openvino backends"):
        load_backend(BackendSpec(str(tiny_checkpoint), "torch", precision="int8"))
    with pytest.raises(InputError, match="runs on the CPU"):
        load_backend(BackendSpec(str(tiny_checkpoint), "openvino", device="cuda"))
    with pytest.raises(InputError, match="unknown backend"):
        BackendSpec("default", "tensorrt")
    with pytest.raises(InputError, match="fp32 ONNX model"):
        load_backend(BackendSpec(str(onnx_folder), "onnx", precision="int8"))
    notes: list[str] = []
    detector = load_backend(BackendSpec(str(onnx_folder), "onnx", precision="bf16"), log=notes.append)
    assert detector.precision == "fp32"
    assert len(notes) == 1 and notes[0].startswith("note: --precision bf16 is ignored by the onnx backend")


def test_a_missing_int8_model_explains_how_to_make_it(tiny_checkpoint):
    with pytest.raises(CheckpointError, match="tools/quantize_model.py"):
        load_backend(BackendSpec(str(tiny_checkpoint), "openvino", precision="int8"))


def test_the_openvino_path_never_imports_torch(onnx_folder, tmp_path, rng):
    reference, comparison = changed_pair(rng, 64, 80)
    np.save(tmp_path / "ref.npy", reference)
    np.save(tmp_path / "cmp.npy", comparison)
    script = (
        "import sys, numpy as np\n"
        "from changeseg.inference.loading import BackendSpec, load_backend\n"
        f"detector = load_backend(BackendSpec({str(onnx_folder)!r}, 'auto'))\n"
        f"result = detector.predict(np.load({str(tmp_path / 'ref.npy')!r}), "
        f"np.load({str(tmp_path / 'cmp.npy')!r}))\n"
        "assert 'torch' not in sys.modules, 'the OpenVINO path imported torch'\n"
        "print(detector.backend_name, result.mask.shape)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=PROJECT_ROOT,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["openvino", "(64,", "80)"]


def test_openvino_serves_concurrent_callers(onnx_folder, rng):
    from concurrent.futures import ThreadPoolExecutor

    detector = load_backend(BackendSpec(str(onnx_folder), "openvino", precision="fp32"))
    pairs = [changed_pair(rng, 64, 64 + 16 * i) for i in range(4)]
    alone = [detector.predict_proba(*pair) for pair in pairs]
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(lambda pair: detector.predict_proba(*pair), pairs))
    for a, b in zip(alone, together):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_auto_falls_back_to_pytorch_when_the_export_fails(tiny_checkpoint, tmp_path, monkeypatch):
    import changeseg.inference.export as export

    monkeypatch.setenv("CHANGESEG_CACHE", str(tmp_path / "cache"))

    def failing(*args, **kwargs):
        raise export.ExportCheckError("ONNX check failed: off by 1e-2")

    monkeypatch.setattr(export, "export_onnx", failing)
    notes: list[str] = []
    detector = load_backend(BackendSpec(str(tiny_checkpoint), "auto"), log=notes.append)
    assert detector.backend_name == "torch"
    assert any(n.startswith("note: ONNX check failed") and "PyTorch instead" in n for n in notes)
    with pytest.raises(export.ExportCheckError):
        load_backend(BackendSpec(str(tiny_checkpoint), "openvino"))
