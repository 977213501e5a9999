"""OnnxChangeDetector: the same ChangeResult as PyTorch, clear errors, and truly no torch import."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from changeseg.errors import CheckpointError, InputError
from changeseg.inference.onnx_runtime import (
    SPINNING_ENTRY,
    OnnxChangeDetector,
    physical_cores,
    session_options,
)
from changeseg.inference.predictor import ChangeDetector
from changeseg.io.images import write_png
from tests.conftest import PROJECT_ROOT
from tests.inference.onnx_helpers import changed_pair


@pytest.fixture
def runtime(onnx_folder):
    return OnnxChangeDetector.from_pretrained(onnx_folder)


@pytest.mark.parametrize("height,width", [(48, 72), (70, 101)])
def test_predict_matches_change_detector(runtime, tiny_checkpoint, rng, height, width):
    reference, comparison = changed_pair(rng, height, width)
    expected = ChangeDetector.from_pretrained(tiny_checkpoint, precision="fp32").predict(
        reference, comparison, min_area=4)
    got = runtime.predict(reference, comparison, min_area=4)
    assert type(got) is type(expected)
    assert 0.05 < expected.changed_fraction < 0.95
    assert np.abs(got.probability - expected.probability).max() < 1e-4
    assert (got.mask == expected.mask).mean() > 0.999
    assert len(got.regions) == len(expected.regions)
    assert (got.threshold, got.class_names, got.trained) == (expected.threshold, expected.class_names, True)
    assert set(got.timings_ms) == {"read", "inference", "postprocess", "total"}
    assert got.summary().keys() == expected.summary().keys()
    assert got.overlay().shape == (height, width, 3)


def test_tiling_goes_through_the_shared_pipeline(runtime, tiny_checkpoint, rng):
    reference, comparison = changed_pair(rng, 96, 160)
    torch_tiled = ChangeDetector.from_pretrained(tiny_checkpoint, precision="fp32").predict(
        reference, comparison, tile_size=64, tile_overlap=16)
    onnx_tiled = runtime.predict(reference, comparison, tile_size=64, tile_overlap=16)
    onnx_whole = runtime.predict(reference, comparison)
    assert np.abs(onnx_tiled.probability - torch_tiled.probability).max() < 1e-4
    assert not np.array_equal(onnx_tiled.probability, onnx_whole.probability)  # it really tiled


def test_threshold_resize_and_paths_behave_like_pytorch(runtime, tmp_path, rng):
    reference, comparison = changed_pair(rng, 48, 64)
    write_png(tmp_path / "r.png", reference)
    write_png(tmp_path / "c.png", comparison)
    from_paths = runtime.predict(tmp_path / "r.png", str(tmp_path / "c.png"))
    assert np.array_equal(from_paths.probability, runtime.predict(reference, comparison).probability)
    assert runtime.predict(reference, comparison, threshold=1.0).mask.sum() == 0
    with pytest.raises(InputError, match="use resize=True"):
        runtime.predict(reference, comparison[:40])
    assert runtime.predict(reference, comparison[:40], resize=True).mask.shape == (48, 64)
    grey = runtime.predict(reference[:, :, 0], comparison[:, :, 0])
    assert grey.probability.shape == (48, 64)


def test_batch_prediction_equals_one_by_one(runtime, rng):
    pairs = [changed_pair(rng, 40, 56) for _ in range(3)]
    batch = runtime.predict_proba_batch(np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs]))
    single = np.stack([runtime.predict_proba(*p) for p in pairs])
    assert batch.shape == (3, 2, 40, 56)
    assert np.abs(batch - single).max() < 1e-5


def test_session_uses_physical_cores_and_full_optimisation(runtime):
    import onnxruntime as ort

    options = runtime.session.get_session_options()
    assert options.intra_op_num_threads == physical_cores()
    assert 1 <= physical_cores() <= (os.cpu_count() or 1)
    assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # idle workers sleep instead of spinning (bench/onnx_spinning.py), unless asked
    assert options.get_session_config_entry(SPINNING_ENTRY) == "0"
    assert session_options(spinning=True).get_session_config_entry(SPINNING_ENTRY) == "1"


def test_loading_errors_are_one_clear_line(tmp_path, tiny_checkpoint):
    with pytest.raises(CheckpointError, match="ONNX model not found"):
        OnnxChangeDetector.from_pretrained(tmp_path / "missing")
    with pytest.raises(CheckpointError, match="export it first"):
        OnnxChangeDetector.from_pretrained(tiny_checkpoint)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text((tiny_checkpoint / "config.json").read_text())
    (broken / "model.onnx").write_bytes(b"not a protobuf")
    with pytest.raises(CheckpointError, match="not a loadable ONNX model") as info:
        OnnxChangeDetector.from_pretrained(broken)
    assert "\n" not in str(info.value)
    (broken / "config.json").unlink()
    with pytest.raises(CheckpointError, match="missing config.json"):
        OnnxChangeDetector.from_pretrained(broken)


def test_a_single_onnx_file_with_its_config_beside_it_loads(onnx_folder, runtime, rng):
    same = OnnxChangeDetector.from_pretrained(onnx_folder / "model.onnx")
    reference, comparison = changed_pair(rng, 32, 40)
    assert np.array_equal(same.predict_proba(reference, comparison),
                          runtime.predict_proba(reference, comparison))


def test_the_onnx_path_never_imports_torch(onnx_folder, tmp_path):
    script = textwrap.dedent(f"""
        import sys
        import numpy as np
        from changeseg.inference.onnx_runtime import OnnxChangeDetector
        from changeseg.io.images import write_png

        rng = np.random.default_rng(0)
        reference = rng.integers(0, 256, (50, 70, 3), dtype=np.uint8)
        comparison = reference.copy()
        comparison[10:30, 20:50] = 255 - comparison[10:30, 20:50]
        write_png({str(tmp_path / "r.png")!r}, reference)
        detector = OnnxChangeDetector.from_pretrained({str(onnx_folder)!r})
        result = detector.predict({str(tmp_path / "r.png")!r}, comparison, min_area=2)
        result.save({str(tmp_path / "out")!r}, save_probability=True)
        assert result.changed_fraction > 0
        loaded = sorted(m for m in sys.modules if m == "torch" or m.startswith("torch."))
        print("torch modules:", loaded)
        assert "torch" not in sys.modules, loaded
        print("OK", len(result.regions))
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PROJECT_ROOT / "src"),
                                                          os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr + done.stdout
    assert "torch modules: []" in done.stdout and "OK" in done.stdout
    assert (tmp_path / "out" / "mask.png").is_file()


def test_a_missing_runtime_names_the_extra_that_installs_it():
    from changeseg.errors import CheckpointError
    from changeseg.inference.onnx_runtime import import_runtime

    assert import_runtime("json", "JSON codec", "none").__name__ == "json"
    with pytest.raises(CheckpointError, match=r"^the OpenVINO runtime is not installed .*"
                                              r"pip install 'changeseg\[openvino\]'$"):
        import_runtime("changeseg_no_such_runtime", "OpenVINO runtime", "openvino")
