"""The int8 recipe packaged beside a model: the same ranges rebuild the same int8 model, and
`auto` uses it (with the recorded verdicts) without validation data — only for the weights and
the graph the verdicts were measured on."""

from __future__ import annotations

import json
import logging
import shutil

import numpy as np
import pytest

from changeseg.errors import CheckpointError
from changeseg.inference.export_cache import cached_onnx
from changeseg.inference.loading import BackendSpec, load_backend
from changeseg.inference.packaged_int8 import (
    RECIPE_FILE,
    build_from_recipe,
    graph_fingerprint,
    read_recipe,
    write_recipe,
)
from changeseg.inference.quantize import (
    RANGES_FILE,
    int8_folder,
    int8_runtime,
    quantize_onnx,
    read_verdicts,
)
from changeseg.io.checkpoints import read_config
from tests.inference.onnx_helpers import changed_pair

pytest.importorskip("onnxruntime")
pytest.importorskip("openvino")

PASSING = {"pixel_agreement": 0.998, "f1_fp32": 0.80, "f1_int8": 0.799, "pairs": 6}


def calibration(seed: int = 7, count: int = 6) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [changed_pair(rng, 64, 96) for _ in range(count)]


@pytest.fixture
def packaged(tiny_checkpoint, tmp_path, monkeypatch):
    """A copy of the tiny checkpoint with an int8 recipe written beside its weights (measured in
    a cache of its own), and a fresh, empty cache for the "user" to start from."""
    package = tmp_path / "tiny-packaged"
    shutil.copytree(tiny_checkpoint, package)
    monkeypatch.setenv("CHANGESEG_CACHE", str(tmp_path / "packager-cache"))
    fp32 = cached_onnx(str(package))
    int8 = quantize_onnx(fp32, int8_folder(fp32), calibration())
    threshold = read_config(package).threshold
    verdicts = {backend: {**PASSING, "threshold": threshold, "int8_runtime": int8_runtime(backend)}
                for backend in ("onnx", "openvino")}
    write_recipe(package, int8, verdicts, machine="the test machine")
    monkeypatch.setenv("CHANGESEG_CACHE", str(tmp_path / "user-cache"))
    return package, int8


def test_given_ranges_rebuild_the_same_int8_model(packaged, tmp_path, caplog):
    _, int8 = packaged
    fp32 = int8.parent
    again = quantize_onnx(fp32, tmp_path / "again", [], ranges=int8 / RANGES_FILE)
    assert "pre-processing" not in caplog.text  # the quantiser's advice is not for our users
    assert logging.root.manager.disable == logging.NOTSET  # and logging is back as it was
    assert graph_fingerprint(again / "model.onnx") == graph_fingerprint(int8 / "model.onnx")
    assert json.loads((again / "config.json").read_text())["metadata"]["quantization"]["ranges"] == "given"
    # the fingerprint is not blind: other calibration pairs give other ranges, another graph
    other = quantize_onnx(fp32, tmp_path / "other", calibration(seed=8))
    assert graph_fingerprint(other / "model.onnx") != graph_fingerprint(int8 / "model.onnx")


def test_auto_uses_the_packaged_recipe_without_data(packaged, rng):
    package, _ = packaged
    logged: list[str] = []
    no_data = lambda: pytest.fail("the packaged recipe needs no calibration pairs")  # noqa: E731
    onnx = load_backend(BackendSpec(str(package), "onnx", precision="auto"), log=logged.append,
                        calibration=no_data)
    assert onnx.precision == "int8"
    assert sum("ranges packaged with the model" in line for line in logged) == 1
    openvino = load_backend(BackendSpec(str(package), "openvino", precision="auto"), calibration=no_data)
    assert openvino.precision == "int8"
    verdicts = read_verdicts(int8_folder(cached_onnx(str(package))))
    assert set(verdicts) == {"onnx", "openvino"}
    assert verdicts["onnx"]["source"] == "packaged (the test machine)"
    fp32 = load_backend(BackendSpec(str(package), "onnx", precision="fp32"))
    reference, comparison = changed_pair(rng, 80, 112)
    expected = fp32.predict(reference, comparison).mask
    assert (onnx.predict(reference, comparison).mask == expected).mean() >= 0.97


def test_a_recipe_for_other_weights_is_ignored(packaged):
    package, _ = packaged
    recipe = json.loads((package / RECIPE_FILE).read_text())
    recipe["weights_sha256"] = "0" * 64  # as if the model had been retrained after packaging
    (package / RECIPE_FILE).write_text(json.dumps(recipe))
    assert read_recipe(package) is None
    assert load_backend(BackendSpec(str(package), "onnx", precision="auto")).precision == "fp32"
    with pytest.raises(CheckpointError, match="no int8 model"):
        load_backend(BackendSpec(str(package), "onnx", precision="int8"))


def test_a_different_graph_gets_no_verdict(packaged):
    package, _ = packaged
    recipe = json.loads((package / RECIPE_FILE).read_text())
    recipe["int8_graph_sha256"] = "f" * 64  # as if this machine's exporter built another graph
    (package / RECIPE_FILE).write_text(json.dumps(recipe))
    logged: list[str] = []
    detector = load_backend(BackendSpec(str(package), "onnx", precision="auto"), log=logged.append)
    assert detector.precision == "fp32"
    assert any("differs from the one the packaged verdict was measured on" in line for line in logged)
    folder = int8_folder(cached_onnx(str(package)))
    assert read_verdicts(folder) == {}
    # asked for explicitly, the int8 model built from the ranges runs (the user's choice)
    assert load_backend(BackendSpec(str(package), "onnx", precision="int8")).precision == "int8"
    assert build_from_recipe(package, folder.parent, folder) == folder and read_verdicts(folder) == {}


def test_a_verdict_at_another_threshold_is_not_copied(packaged):
    package, _ = packaged
    config = json.loads((package / "config.json").read_text())
    config["threshold"] = 0.42  # the model's threshold was re-chosen after the verdict was measured
    (package / "config.json").write_text(json.dumps(config))
    assert read_recipe(package) is not None  # the weights, and so the ranges, still fit
    assert load_backend(BackendSpec(str(package), "onnx", precision="auto")).precision == "fp32"
    assert read_verdicts(int8_folder(cached_onnx(str(package)))) == {}


def test_auto_builds_nothing_where_the_packaged_verdict_says_int8_does_not_pay(packaged):
    package, _ = packaged
    recipe = json.loads((package / RECIPE_FILE).read_text())
    recipe["verdicts"]["onnx"]["int8_speedup"] = 0.97  # accurate, but no faster than fp32
    (package / RECIPE_FILE).write_text(json.dumps(recipe))
    logged: list[str] = []
    detector = load_backend(BackendSpec(str(package), "onnx", precision="auto"), log=logged.append)
    assert detector.precision == "fp32"
    assert not any("quantising" in line for line in logged)
    assert not int8_folder(cached_onnx(str(package))).exists()
    # asked for explicitly, int8 is still built from the packaged ranges, without data
    assert load_backend(BackendSpec(str(package), "onnx", precision="int8")).precision == "int8"
