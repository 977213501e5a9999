"""ONNX export: a self-describing folder, dynamic shapes, parity with PyTorch, and a loud failure."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch

from changeseg.errors import InputError
from changeseg.inference.export import (
    CHECK_SHAPE,
    TRACE_SHAPE,
    ExportCheckError,
    ProbabilityGraph,
    export_onnx,
    seeded_pair,
)
from changeseg.inference.onnx_runtime import OnnxChangeDetector
from changeseg.inference.predictor import ChangeDetector
from changeseg.io.checkpoints import read_config
from changeseg.models.model import ChangeSegModel, ModelConfig
from tests.inference.onnx_helpers import changed_pair


@pytest.fixture
def torch_detector(tiny_checkpoint):
    return ChangeDetector.from_pretrained(tiny_checkpoint, precision="fp32")


def test_export_writes_a_verified_self_describing_folder(tiny_export, tiny_checkpoint):
    assert sorted(p.name for p in tiny_export.folder.iterdir()) == ["config.json", "model.onnx"]
    assert tiny_export.checked and tiny_export.max_abs_diff < 1e-4
    assert tiny_export.check_shape == (CHECK_SHAPE[0], 3, *CHECK_SHAPE[1:])
    assert tiny_export.size_bytes == tiny_export.model_file.stat().st_size > 0
    config = read_config(tiny_export.folder)
    original = read_config(tiny_checkpoint)
    assert (config.model, config.mean, config.std, config.class_names) == (
        original.model, original.mean, original.std, original.class_names)
    assert config.metadata["onnx"]["opset"] == tiny_export.opset == 17
    assert config.metadata["onnx"]["inputs"] == ["reference", "comparison"]
    assert json.loads(tiny_export.config_file.read_text())["format"] == "changeseg-checkpoint"
    assert "max |Δp|" in tiny_export.summary()


def test_graph_has_named_inputs_and_dynamic_batch_height_width(tiny_export):
    model = onnx.load(str(tiny_export.model_file))

    def dims(value):
        return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]

    inputs = {i.name: dims(i) for i in model.graph.input}
    outputs = {o.name: dims(o) for o in model.graph.output}
    assert inputs == {"reference": ["batch", 3, "height", "width"],
                      "comparison": ["batch", 3, "height", "width"]}
    assert outputs == {"probabilities": ["batch", 2, "height", "width"]}
    assert {p.key: p.value for p in model.metadata_props}["class_names"] == "unchanged,changed"


@pytest.mark.parametrize("batch,height,width", [(1, 70, 101), (2, 64, 96), (2, 33, 47), (1, 128, 160)])
def test_probabilities_and_masks_match_pytorch(tiny_export, torch_detector, batch, height, width):
    """Odd and multiple-of-32 sizes, batch 1 and 2: the traced 230×250 / batch 2 is nowhere special."""
    assert (height, width) != TRACE_SHAPE[1:]
    rng = np.random.default_rng(batch * 1000 + height)
    pairs = [changed_pair(rng, height, width) for _ in range(batch)]
    runtime = OnnxChangeDetector.from_pretrained(tiny_export.folder)
    got = runtime.predict_proba_batch(np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs]))
    expected = np.stack([torch_detector.predict_proba(*p) for p in pairs])
    assert got.shape == expected.shape == (batch, 2, height, width)
    assert np.abs(got - expected).max() < 1e-4
    changed = expected[:, 1] > 0.5
    assert 0.05 < changed.mean() < 0.95  # both classes present: the mask comparison means something
    assert ((got[:, 1] > 0.5) == changed).mean() > 0.999


@pytest.mark.parametrize("shape", [(3, 3, 70, 101), (1, 4, 5, 9), (2, 3, 64, 96)])
def test_the_seeded_check_pair_has_exactly_the_shape_asked_for(shape):
    reference, comparison = seeded_pair(shape, seed=1)
    assert reference.shape == comparison.shape == shape
    assert reference.dtype == np.float32 and reference.min() >= 0 and reference.max() <= 1
    assert np.array_equal(reference, seeded_pair(shape, seed=1)[0])
    assert (reference != comparison).any(axis=1).mean() > 0.05  # every item has a changed box


def test_normalisation_and_softmax_are_inside_the_graph(tiny_export, torch_detector):
    reference, comparison = seeded_pair((1, 3, 40, 56), seed=3)
    runtime = OnnxChangeDetector.from_pretrained(tiny_export.folder)
    (raw,) = runtime.session.run(["probabilities"], {"reference": reference, "comparison": comparison})
    assert np.allclose(raw.sum(axis=1), 1.0, atol=1e-5)
    mean = np.asarray(torch_detector.config.mean, np.float32).reshape(1, 3, 1, 1)
    std = np.asarray(torch_detector.config.std, np.float32).reshape(1, 3, 1, 1)
    with torch.no_grad():
        logits = torch_detector.model(torch.from_numpy((reference - mean) / std),
                                      torch.from_numpy((comparison - mean) / std))
    assert np.abs(torch.softmax(logits, 1).numpy() - raw).max() < 1e-4


class DriftsWhenTraced(ChangeSegModel):
    """A network whose traced graph differs from its eager forward: the check must catch it."""

    def forward(self, reference, comparison, return_branches=False):
        logits = super().forward(reference, comparison)
        if torch.jit.is_tracing():
            logits = logits + torch.tensor([0.0, 0.2]).view(1, 2, 1, 1)
        return logits


def test_a_graph_that_disagrees_with_pytorch_fails_clearly_and_writes_nothing(tmp_path):
    torch.manual_seed(0)
    detector = ChangeDetector.from_model(DriftsWhenTraced(ModelConfig(fpn_channels=8)), precision="fp32")
    target = tmp_path / "out" / "custom.onnx"
    with pytest.raises(ExportCheckError, match=r"disagree on a seeded 3×3×70×101 pair by up to .*nothing "
                                               r"was written"):
        export_onnx(detector, target)
    assert not target.exists() and not (target.parent / "config.json").exists()
    assert not target.parent.exists() or not any(target.parent.iterdir())  # no temporary files left


@pytest.mark.parametrize("options,message", [
    ({"tolerance": 0.0}, "tolerance must be positive"),
    ({"exporter": "tflite"}, "unknown exporter"),
    ({"opset": 9}, "opset 9 is not supported"),
])
def test_bad_options_are_input_errors(tiny_checkpoint, tmp_path, options, message):
    with pytest.raises(InputError, match=message):
        export_onnx(tiny_checkpoint, tmp_path / "o", **options)
    assert not (tmp_path / "o").exists()


def test_probability_graph_refuses_short_normalisation():
    from changeseg.errors import CheckpointError

    model = ChangeSegModel(ModelConfig(fpn_channels=8, in_channels=4))
    with pytest.raises(CheckpointError, match="4 channel"):
        ProbabilityGraph(model, [0.5] * 3, [0.25] * 3)


@pytest.mark.slow
def test_dynamo_exporter_also_passes_its_check(tiny_checkpoint, tmp_path):
    report = export_onnx(tiny_checkpoint, tmp_path / "dynamo", exporter="dynamo")
    assert report.opset == 18 and report.max_abs_diff < 1e-4
    runtime = OnnxChangeDetector.from_pretrained(report.folder)
    reference, comparison = changed_pair(np.random.default_rng(0), 45, 77)
    expected = ChangeDetector.from_pretrained(tiny_checkpoint, precision="fp32").predict_proba(reference,
                                                                                                comparison)
    assert np.abs(runtime.predict_proba(reference, comparison) - expected).max() < 1e-4


def test_a_model_with_the_detail_refinement_exports_and_matches_pytorch(tmp_path):
    """`refine: stride2` (slices of the first backbone stage, a stride-2 residual) survives export."""
    torch.manual_seed(0)
    model = ChangeSegModel(ModelConfig(fpn_channels=8, refine="stride2"))
    torch.nn.init.normal_(model.refine.out.weight, std=0.5)  # a non-zero residual, as once trained
    detector = ChangeDetector.from_model(model.eval(), precision="fp32")
    report = export_onnx(detector, tmp_path / "refined")
    assert read_config(report.folder).model["refine"] == "stride2"
    reference, comparison = changed_pair(np.random.default_rng(3), 70, 101)
    onnx_result = OnnxChangeDetector.from_pretrained(report.folder).predict(reference, comparison)
    torch_result = detector.predict(reference, comparison)
    assert np.abs(onnx_result.probability - torch_result.probability).max() < 1e-3
