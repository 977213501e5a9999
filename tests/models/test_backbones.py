"""Backbones: four levels at strides 4–32, reported channels, pretrained weights, band adaptation."""

from __future__ import annotations

import pytest
import torch
import torchvision

from changeseg.errors import ConfigError, WeightsNotFoundError
from changeseg.models import backbones
from changeseg.models.backbones import BACKBONES, Backbone, find_local_weights, load_pretrained_state


@pytest.mark.parametrize("name", list(BACKBONES))
def test_four_levels_with_reported_channels_and_strides(name):
    torch.manual_seed(0)
    backbone = Backbone(name).eval()
    with torch.no_grad():
        features = backbone(torch.randn(1, 3, 64, 96))
    assert len(features) == 4
    for feature, channels, reduction in zip(features, backbone.out_channels, backbone.reductions):
        assert feature.shape == (1, channels, 64 // reduction, 96 // reduction)


def test_mobilenet_v2_imagenet_weights_load_offline_from_the_pip_package():
    path = find_local_weights("mobilenet_v2")
    assert path is not None and path.name == "mobilenet_v2-b0353104.pth"
    backbone = Backbone("mobilenet_v2", pretrained="imagenet")
    reference = torchvision.models.mobilenet_v2()
    reference.load_state_dict(torch.load(path, weights_only=True))
    assert torch.equal(backbone.stages[0][0][0].weight, reference.features[0][0].weight)
    assert torch.equal(backbone.stages[3][-1].conv[-1].weight, reference.features[17].conv[-1].weight)


def test_missing_weights_raise_a_clear_error_not_random_init(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def no_network(self, *args, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr(torchvision.models.WeightsEnum, "get_state_dict", no_network)
    with pytest.raises(WeightsNotFoundError, match="resnet18-f37072fd.pth.*pretrained=PATH"):
        Backbone("resnet18", pretrained="imagenet")


def test_weights_from_an_explicit_path(tmp_path):
    source = torchvision.models.resnet18()
    path = tmp_path / "r18.pth"
    torch.save(source.state_dict(), path)
    backbone = Backbone("resnet18", pretrained=str(path))
    assert torch.equal(backbone.stages[0][0].weight, source.conv1.weight)
    with pytest.raises(WeightsNotFoundError, match="not found"):
        load_pretrained_state("resnet18", str(tmp_path / "missing.pth"))


def test_hub_cache_is_used_before_download(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    cached = tmp_path / "hub" / "checkpoints" / backbones.weights_filename("resnet18")
    cached.parent.mkdir(parents=True)
    torch.save(torchvision.models.resnet18().state_dict(), cached)
    assert find_local_weights("resnet18") == cached


def test_extra_input_bands_adapt_the_first_conv():
    rgb = Backbone("mobilenet_v2", pretrained="imagenet")
    bands = Backbone("mobilenet_v2", pretrained="imagenet", in_channels=13)
    weight = bands.stages[0][0][0].weight
    assert weight.shape[1] == 13
    # band k reuses RGB filter k % 3, scaled by 3/13 to keep activations' magnitude
    assert torch.allclose(weight[:, 4], rgb.stages[0][0][0].weight[:, 1] * 3 / 13)
    out = bands(torch.randn(1, 13, 64, 64))
    assert out[0].shape == (1, 24, 16, 16)


def test_unknown_backbone():
    with pytest.raises(ConfigError, match="unknown backbone"):
        Backbone("alexnet")
