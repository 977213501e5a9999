"""The MSF fusion options: cheaper fusions build and run; the paper presets stay exactly as they were."""

from __future__ import annotations

import hashlib

import pytest
import torch

from changeseg.errors import ConfigError
from changeseg.models.model import ChangeSegModel, ModelConfig, build_model, count_macs, count_parameters
from changeseg.models.presets import PRESETS, preset_config
from changeseg.models.pyramid import seed_fuse_from_conv3x3

# Parameter counts and a digest of every state-dict key and shape, recorded from the code as it
# was before `msf_fuse` existed (the same numbers; checkpoints load into these layouts).
PRESET_LAYOUTS = {
    "c3po-efficientnetb0-fcn": (8040526, "3e5a1822bf91ca70"),
    "c3po-efficientnetlite0-fcn": (7403986, "52ad8cf1704e4d78"),  # added 2026-12-06, after msf_fuse
    "c3po-mobilenetv2-fcn": (6148298, "f4d20f4681294ef5"),
    "c3po-resnet18-deeplabv3": (44673410, "ef771affed3c2871"),
    "c3po-resnet18-fcn": (25694338, "794a732ffb33f6f3"),
    "c3po-resnet18-id-deeplabv3": (41539010, "18e1b150df996037"),
    "c3po-swint-fcn": (53910364, "ff87d56bf9b1c300"),
    "c3po-vgg16bn-deeplabv3": (55418050, "11ba4cc64203ba4c"),
}


def layout_digest(model: torch.nn.Module) -> str:
    lines = "\n".join(f"{key}:{tuple(value.shape)}" for key, value in model.state_dict().items())
    return hashlib.sha256(lines.encode()).hexdigest()[:16]


def test_every_preset_is_covered():
    assert set(PRESET_LAYOUTS) == set(PRESETS)


@pytest.mark.parametrize("name", sorted(PRESET_LAYOUTS))
def test_paper_presets_keep_their_exact_layout_and_config(name):
    model = ChangeSegModel(ModelConfig.from_dict(preset_config(name)))
    assert (count_parameters(model), layout_digest(model)) == PRESET_LAYOUTS[name]
    assert model.config.msf_fuse == "conv3x3"
    assert "msf_fuse" not in model.config.to_dict()  # configs written as before the option existed
    fuse = model.pyramid.fuse[0]
    assert isinstance(fuse, torch.nn.Conv2d) and fuse.kernel_size == (3, 3)


@pytest.mark.parametrize("fuse", ["conv1x1", "dwsep"])
def test_cheaper_fusions_cost_less_and_round_trip(fuse):
    base = build_model(fpn_channels=32)
    cheap = build_model(fpn_channels=32, msf_fuse=fuse).eval()
    assert cheap.config.to_dict()["msf_fuse"] == fuse
    assert ModelConfig.from_dict(cheap.config.to_dict()) == cheap.config
    shape = (1, 3, 128, 128)
    assert count_macs(cheap, shape, shape) < count_macs(base, shape, shape)
    with torch.no_grad():
        logits = cheap(torch.rand(shape), torch.rand(shape))
    assert logits.shape == (1, 2, 128, 128)
    assert {type(m).__name__ for m in cheap.pyramid.fuse.modules()} >= {"Conv2d", "BatchNorm2d"}


def test_an_unknown_fusion_is_a_config_error():
    with pytest.raises(ConfigError, match="msf fuse must be one of"):
        build_model(msf_fuse="conv5x5")


@pytest.mark.parametrize("fuse", ["conv1x1", "dwsep"])
def test_a_trained_3x3_fusion_seeds_a_cheaper_one(fuse):
    """On a flat feature map the seeded cheaper fusion computes exactly what the 3×3 one did."""
    torch.manual_seed(0)
    base = build_model(fpn_channels=16).eval()
    cheap = build_model(fpn_channels=16, msf_fuse=fuse).eval()
    seeded = seed_fuse_from_conv3x3(base.state_dict(), cheap.state_dict())
    assert "pyramid.fuse.0.weight" not in seeded
    cheap.load_state_dict(seeded)
    flat = torch.rand(1, 16 * 4, 1, 1).expand(1, 16 * 4, 9, 9).contiguous()
    with torch.no_grad():
        expected, got = base.pyramid.fuse(flat), cheap.pyramid.fuse(flat)
    inner = (slice(None), slice(None), slice(1, -1), slice(1, -1))  # zero padding differs at borders
    assert torch.allclose(got[inner], expected[inner], atol=1e-5)


def test_training_init_from_a_3x3_checkpoint_loads_every_other_tensor():
    from changeseg.training.module import load_matching_weights

    base = build_model(fpn_channels=16)
    cheap = build_model(fpn_channels=16, msf_fuse="dwsep")
    loaded, skipped = load_matching_weights(cheap, base.state_dict())
    assert skipped == []
    assert "pyramid.fuse.0.1.weight" in loaded
    assert torch.equal(cheap.state_dict()["pyramid.fuse.1.running_mean"],
                       base.state_dict()["pyramid.fuse.1.running_mean"])
