"""The OpenVINO session: compiled per input shape (static shapes), the same numbers as the dynamic
model, a bounded number of compiles, one Core per process (freeing sessions never breaks signal
delivery), and one-line errors for a model it cannot read."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from changeseg.errors import CheckpointError
from tests.inference.onnx_helpers import changed_pair

pytest.importorskip("openvino")

from changeseg.inference.openvino_runtime import (  # noqa: E402
    OpenVinoChangeDetector,
    compile_onnx,
    shared_core,
)

SRC = str(Path(__file__).resolve().parents[2] / "src")

# Two sessions, each run once (so each compiles), freed in the order they were made, then a signal
# with a Python handler. With a Core per session, each had its own CPU plugin; the plugin points the
# signal stack of the thread that made it at a mapping it unmaps when it goes, so the second one
# restored the first one's (already unmapped) stack and the kernel killed the process with SIGSEGV
# when it delivered SIGCHLD (the full test suite died so, with PyTorch's data-loader handler).
SCRIPT = textwrap.dedent("""
    import gc, signal, subprocess, sys
    import numpy as np
    sys.path.insert(0, sys.argv[2])
    from changeseg.inference.openvino_runtime import compile_onnx
    feeds = {name: np.zeros((1, 3, 32, 32), np.float32) for name in ("reference", "comparison")}
    first = compile_onnx(sys.argv[1], "fp32", threads=1)
    first.run(None, feeds)
    second = compile_onnx(sys.argv[1], "fp32", threads=1)
    second.run(None, feeds)
    del first
    gc.collect()
    del second
    gc.collect()
    signal.signal(signal.SIGCHLD, lambda *_: None)
    subprocess.run(["true"], check=True)
    print("survived")
""")


def feeds(rng: np.random.Generator, height: int, width: int, batch: int = 1) -> dict[str, np.ndarray]:
    """Random normalised inputs of one shape for both of the model's inputs."""
    shape = (batch, 3, height, width)
    return {"reference": rng.standard_normal(shape).astype(np.float32),
            "comparison": rng.standard_normal(shape).astype(np.float32)}


def test_static_shapes_give_the_dynamic_models_numbers(onnx_folder, rng, monkeypatch):
    static = compile_onnx(onnx_folder / "model.onnx", "fp32")
    dynamic = compile_onnx(onnx_folder / "model.onnx", "fp32")
    monkeypatch.setattr(dynamic, "STATIC_SHAPES", 0)
    for height, width, batch in [(64, 64, 1), (48, 80, 2), (64, 64, 1)]:
        inputs = feeds(rng, height, width, batch)
        (got,) = static.run(None, inputs)
        (expected,) = dynamic.run(None, inputs)
        assert got.shape == (batch, expected.shape[1], height, width) and expected.shape[1] >= 2
        np.testing.assert_allclose(got, expected, atol=1e-5)
    assert static.compiled_shapes() == [((1, 3, 64, 64),) * 2, ((2, 3, 48, 80),) * 2]
    assert dynamic.compiled_shapes() == [None]


def test_shapes_past_the_limit_share_one_dynamic_model(onnx_folder, rng):
    session = compile_onnx(onnx_folder / "model.onnx", "fp32")
    sizes = [32 + 8 * i for i in range(session.STATIC_SHAPES + 3)]
    outputs = {size: session.run(None, feeds(rng, size, size))[0] for size in sizes}
    compiled = session.compiled_shapes()
    assert compiled[:-1] == [((1, 3, size, size),) * 2 for size in sizes[:session.STATIC_SHAPES]]
    assert compiled[-1] is None and len(compiled) == session.STATIC_SHAPES + 1
    assert all(outputs[size].shape[2:] == (size, size) for size in sizes)
    session.run(None, feeds(rng, sizes[0], sizes[0]))  # a shape seen before: nothing compiled again
    assert len(session.compiled_shapes()) == session.STATIC_SHAPES + 1


def test_the_detector_compiles_the_pair_shape_it_meets(onnx_folder, rng):
    detector = OpenVinoChangeDetector.from_pretrained(onnx_folder, precision="fp32")
    assert detector.session.compiled_shapes() == []  # loading reads the model, compiles nothing
    reference, comparison = changed_pair(rng, 72, 96)
    result = detector.predict(reference, comparison)
    assert result.mask.shape == (72, 96)
    assert detector.session.compiled_shapes() == [((1, 3, 72, 96),) * 2]


def test_a_model_openvino_cannot_read_is_one_clear_error(tmp_path):
    broken = tmp_path / "model.onnx"
    broken.write_bytes(b"not an onnx model")
    with pytest.raises(CheckpointError, match="OpenVINO cannot read the model") as caught:
        compile_onnx(broken, "fp32")
    assert "\n" not in str(caught.value)


def test_every_session_compiles_with_the_one_core(onnx_folder, rng):
    first = compile_onnx(onnx_folder / "model.onnx", "fp32", threads=1)
    second = compile_onnx(onnx_folder / "model.onnx", "fp32", threads=1)
    for session in (first, second):
        session.run(None, feeds(rng, 32, 32))
    assert shared_core() is shared_core()
    assert first.compiled_shapes() == second.compiled_shapes() == [((1, 3, 32, 32),) * 2]


def test_freeing_sessions_in_creation_order_keeps_signals_deliverable(onnx_folder):
    run = subprocess.run([sys.executable, "-c", SCRIPT, str(onnx_folder / "model.onnx"), SRC],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, f"exit {run.returncode}: {run.stderr[-400:]}"
    assert run.stdout.strip() == "survived"
