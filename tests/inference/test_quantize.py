"""int8: quantisation into the cache, the verdict's arithmetic, and the gate `auto` obeys."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from changeseg.errors import InputError
from changeseg.inference.loading import BackendSpec, load_backend
from changeseg.inference.quantize import (
    DEFAULT_SCOPE,
    VERDICT_FILE,
    assess_int8,
    gate_passes,
    int8_approved,
    int8_folder,
    int8_runtime,
    measure_speedup,
    pays_off,
    quantize_onnx,
    read_verdicts,
    write_verdict,
)
from changeseg.io.checkpoints import CheckpointConfig
from tests.inference.onnx_helpers import changed_pair

pytest.importorskip("onnxruntime")
pytest.importorskip("openvino")


@pytest.fixture
def private_cache(tmp_path, monkeypatch):
    """A cache of this test's own, so verdicts written here never reach other tests."""
    monkeypatch.setenv("CHANGESEG_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def calibration(seed: int = 7, count: int = 6) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [changed_pair(rng, 64, 96) for _ in range(count)]


@pytest.fixture
def quantized(tiny_checkpoint, private_cache):
    """The tiny model quantised through the loader, as `--precision int8` does; (folder, log)."""
    logged: list[str] = []
    detector = load_backend(BackendSpec(str(tiny_checkpoint), "onnx", precision="int8"), log=logged.append,
                            calibration=calibration)
    return detector, logged


def test_int8_is_quantised_once_and_agrees_with_fp32(quantized, tiny_checkpoint, private_cache, rng):
    from changeseg.inference.predictor import ChangeDetector

    detector, logged = quantized
    assert detector.precision == "int8"
    assert sum("quantising" in line for line in logged) == 1
    again: list[str] = []
    on_openvino = load_backend(BackendSpec(str(tiny_checkpoint), "openvino", precision="int8"),
                               log=again.append, calibration=lambda: pytest.fail("quantised again"))
    assert on_openvino.precision == "int8" and not again
    reference, comparison = changed_pair(rng, 80, 112)
    torch_fp32 = ChangeDetector.from_pretrained(tiny_checkpoint, precision="fp32")
    expected = torch_fp32.predict(reference, comparison)
    assert 0.05 < expected.mask.mean() < 0.95
    for int8 in (detector, on_openvino):
        assert (int8.predict(reference, comparison).mask == expected.mask).mean() >= 0.97
    settings = detector.config.metadata["quantization"]
    assert settings["calibration_pairs"] == 6 and settings["format"] == "QDQ"
    # only the scope's convs read dequantised int8 weights: the backbone (whose features are
    # differenced) and the classifier stay float
    import onnx

    graph = onnx.load(str(int8_folder(next((private_cache / "onnx").glob("tiny-*")))
                          / "model.onnx")).graph
    dequantised = {o for n in graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    int8_convs = {n.name for n in graph.node if n.op_type == "Conv" and set(n.input) & dequantised}
    assert int8_convs and len(int8_convs) == settings["quantized_nodes"]
    assert all(name.startswith(DEFAULT_SCOPE) for name in int8_convs)
    assert any("/model/pyramid/fuse/" in name for name in int8_convs)


@pytest.mark.parametrize(("numbers", "passes"), [
    ({"pixel_agreement": 0.995, "f1_fp32": 0.80, "f1_int8": 0.795}, True),  # exactly on the bar
    ({"pixel_agreement": 0.999, "f1_fp32": 0.80, "f1_int8": 0.81}, True),  # int8 better
    ({"pixel_agreement": 0.9949, "f1_fp32": 0.80, "f1_int8": 0.80}, False),  # agreement too low
    ({"pixel_agreement": 0.999, "f1_fp32": 0.80, "f1_int8": 0.7949}, False),  # F1 drops 0.51 points
    ({"pixel_agreement": 0.999, "f1_fp32": 0.80}, False),  # incomplete
    ({"pixel_agreement": "many", "f1_fp32": 0.80, "f1_int8": 0.80}, False),
    ({}, False),
    (None, False),
])
def test_the_gate(numbers, passes):
    assert gate_passes(numbers) is passes


@pytest.mark.parametrize(("speedup", "pays"), [(None, True), (1.1, True), (1.6, True), (1.05, False),
                                               (0.9, False), ("fast", False)])
def test_int8_must_pay_off(speedup, pays):
    numbers = {"pixel_agreement": 0.999, "f1_fp32": 0.80, "f1_int8": 0.80}
    if speedup is not None:
        numbers["int8_speedup"] = speedup
    assert pays_off(numbers) is pays
    assert gate_passes(numbers)  # accuracy alone is judged apart from speed


def test_measure_speedup_times_both_backends_alike():
    slow, fast = _Stub(np.zeros((8, 8))), _Stub(np.zeros((8, 8)))
    calls = {"slow": 0, "fast": 0}

    def timed(stub, name, seconds):
        def predict_proba(reference, comparison):
            calls[name] += 1
            time.sleep(seconds)
            return np.stack([np.ones(reference.shape[:2]), np.zeros(reference.shape[:2])])
        stub.predict_proba = predict_proba

    timed(slow, "slow", 0.02)
    timed(fast, "fast", 0.005)
    numbers = measure_speedup(slow, fast, side=16, rounds=4)
    assert calls == {"slow": 5, "fast": 5}  # one warm-up each, then 4 timed rounds
    assert numbers["int8_speedup"] > 2 and numbers["float_ms"] > numbers["int8_ms"]


def test_auto_uses_int8_only_with_a_passing_verdict(quantized, tiny_checkpoint, private_cache):
    folder = int8_folder(next((private_cache / "onnx").glob("tiny-*")))
    assert read_verdicts(folder) == {}

    def auto(backend: str) -> str:
        return load_backend(BackendSpec(str(tiny_checkpoint), backend, precision="auto")).precision

    assert auto("onnx") == "fp32"  # no verdict yet
    below = {"pixel_agreement": 0.990, "f1_fp32": 0.80, "f1_int8": 0.79, "pairs": 10}
    write_verdict(folder, "onnx", below)
    assert json.loads((folder / VERDICT_FILE).read_text())["backends"]["onnx"]["passes"] is False
    assert auto("onnx") == "fp32"
    # a file that claims to pass is judged by its numbers
    record = json.loads((folder / VERDICT_FILE).read_text())
    record["backends"]["onnx"]["passes"] = True
    (folder / VERDICT_FILE).write_text(json.dumps(record))
    assert not int8_approved(folder, "onnx") and auto("onnx") == "fp32"
    passing = {"pixel_agreement": 0.998, "f1_fp32": 0.80, "f1_int8": 0.799}
    other = "openvino/fp32" if int8_runtime("openvino") == "openvino/bf16" else "openvino/bf16"
    write_verdict(folder, "openvino", {**passing, "int8_runtime": other})
    assert auto("openvino") != "int8"  # measured with another precision for the float parts
    write_verdict(folder, "openvino", {**passing, "int8_runtime": int8_runtime("openvino")})
    assert auto("openvino") == "int8"
    assert auto("onnx") == "fp32"  # a verdict is per backend
    assert set(read_verdicts(folder)) == {"onnx", "openvino"}
    write_verdict(folder, "onnx", passing)  # onnxruntime runs int8 one way only
    assert auto("onnx") == "int8"
    write_verdict(folder, "onnx", {**passing, "int8_speedup": 1.02})  # accurate, but no faster
    assert not int8_approved(folder, "onnx") and auto("onnx") == "fp32"


class _Stub:
    """A backend whose change probability is a fixed map (prepare passes images through)."""

    def __init__(self, change: np.ndarray, threshold: float = 0.5) -> None:
        self.change = change.astype(np.float32)
        self.config = CheckpointConfig(model={}, threshold=threshold)

    def prepare(self, image, name):
        return image

    def predict_proba(self, reference, comparison):
        return np.stack([1 - self.change, self.change])


def test_the_verdicts_arithmetic():
    truth = np.zeros((4, 5), np.uint8)
    truth[:2, :2] = 1  # 4 changed pixels
    truth[3, 4] = 255  # ignored
    fp32 = np.zeros((4, 5))
    fp32[:2, :2] = 0.9  # perfect: F1 1
    int8 = fp32.copy()
    int8[0, 0] = 0.1  # one miss
    int8[2, 2] = 0.9  # one false alarm
    int8[3, 4] = 0.9  # on an ignored pixel: not counted
    image = np.zeros((4, 5, 3), np.uint8)
    samples = [{"reference": image, "comparison": image, "mask": truth, "name": "a", "source": "s"}]
    numbers = assess_int8(_Stub(fp32), _Stub(int8), samples)
    assert numbers["pixels"] == 19 and numbers["pairs"] == 1
    assert numbers["pixel_agreement"] == pytest.approx(17 / 19)
    assert numbers["f1_fp32"] == 1.0
    assert numbers["f1_int8"] == pytest.approx(2 * 3 / (2 * 3 + 1 + 1))
    assert numbers["f1_drop_points"] == pytest.approx(100 * (1 - 0.75))
    assert numbers["sources"]["s"]["pairs"] == 1
    assert not gate_passes(numbers)
    same = assess_int8(_Stub(fp32), _Stub(fp32), samples)
    assert same["pixel_agreement"] == 1.0 and gate_passes(same)
    with pytest.raises(InputError, match="labelled validation pairs"):
        assess_int8(_Stub(fp32), _Stub(fp32), [])


def test_quantising_needs_pairs(tiny_checkpoint, private_cache, tmp_path):
    from changeseg.inference.export_cache import cached_onnx

    folder = cached_onnx(str(tiny_checkpoint))
    with pytest.raises(InputError, match="calibration pairs"):
        quantize_onnx(folder, tmp_path / "int8", [])
    assert not (tmp_path / "int8").exists()


def test_the_scope_reaches_every_member_of_an_ensemble(tmp_path):
    import torch

    from changeseg.inference.export import export_onnx
    from changeseg.inference.quantize import _scoped_convs
    from changeseg.io.checkpoints import save_checkpoint
    from changeseg.models.ensemble import build_network
    from changeseg.models.model import ModelConfig

    torch.manual_seed(0)
    single, ensemble = (build_network(ModelConfig(fpn_channels=8, ensemble=n)).eval() for n in (1, 2))
    scoped = {}
    for name, network in (("single", single), ("ensemble", ensemble)):
        folder = save_checkpoint(tmp_path / name, network.state_dict(),
                                 CheckpointConfig(model=network.config.to_dict()))
        export_onnx(folder, tmp_path / f"{name}-onnx")
        scoped[name] = _scoped_convs(tmp_path / f"{name}-onnx" / "model.onnx", DEFAULT_SCOPE)
    assert scoped["single"] and all(n.startswith(DEFAULT_SCOPE) for n in scoped["single"])
    # the same convs in each member, and nothing else (not every conv, as an unmatched scope would)
    assert sorted(scoped["ensemble"]) == sorted(n.replace("/model/", f"/model/members.{i}/", 1)
                                                for i in (0, 1) for n in scoped["single"])
