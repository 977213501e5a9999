"""The stride-2 detail refinement: an exact no-op at init, trainable, optional and exportable."""

from __future__ import annotations

import pytest
import torch

from changeseg.errors import ConfigError
from changeseg.models.model import ModelConfig, build_model, count_macs
from changeseg.training.module import load_matching_weights

TINY = {"fpn_channels": 16, "num_classes": 4, "share_ad": False}


def seeded_pair(height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return (torch.rand(1, 3, height, width, generator=generator),
            torch.rand(1, 3, height, width, generator=generator))


def test_a_refined_model_started_from_unrefined_weights_predicts_the_same():
    torch.manual_seed(0)
    base = build_model(**TINY).eval()
    refined = build_model(**TINY, refine="stride2").eval()
    loaded, skipped = load_matching_weights(refined, base.state_dict())
    assert skipped == [] and len(loaded) == len(base.state_dict())
    reference, comparison = seeded_pair(70, 90)  # not a multiple of 32: padded and cropped back
    with torch.no_grad():
        expected, got = base(reference, comparison), refined(reference, comparison)
    assert got.shape == (1, 4, 70, 90)
    assert torch.equal(got, expected)


def test_the_refinement_changes_the_logits_once_trained_and_receives_gradients():
    torch.manual_seed(0)
    refined = build_model(**TINY, refine="stride2")
    assert refined.refine is not None
    torch.nn.init.normal_(refined.refine.out.weight, std=0.1)
    reference, comparison = seeded_pair(64, 64)
    logits = refined(reference, comparison)
    logits.square().mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in refined.refine.parameters())
    refined.eval()
    with torch.no_grad():
        nonzero = refined(reference, comparison)
        torch.nn.init.zeros_(refined.refine.out.weight)
        torch.nn.init.zeros_(refined.refine.out.bias)
        zero = refined(reference, comparison)
    # The residual is added at stride 2: it changes the logits at the input's resolution.
    assert (nonzero - zero).abs().max() > 1e-3


def test_the_option_round_trips_and_is_left_out_when_off():
    refined = build_model(**TINY, refine="stride2")
    assert refined.config.to_dict()["refine"] == "stride2"
    assert ModelConfig.from_dict(refined.config.to_dict()) == refined.config
    assert "refine" not in build_model(**TINY).config.to_dict()  # older configs stay as they were
    shape = (1, 3, 128, 128)
    extra = count_macs(refined, shape, shape) - count_macs(build_model(**TINY), shape, shape)
    assert 0 < extra < 0.1 * count_macs(build_model(**TINY), shape, shape) + 5e7


def test_bad_refine_options_are_config_errors():
    with pytest.raises(ConfigError, match="refine must be one of"):
        build_model(**TINY, refine="stride1")
    with pytest.raises(ConfigError, match="stride-2 features"):
        build_model(backbone="resnet18", fpn_channels=16, refine="stride2")


def test_its_cost_on_the_default_architecture():
    """The figures docs/models.md and docs/training.md quote: 8.1 k parameters, +0.53 GMAC at 512²."""
    from changeseg.models.model import count_parameters

    default = {"num_classes": 4, "share_ad": False, "msf_fuse": "dwsep"}
    base, refined = build_model(**default), build_model(**default, refine="stride2")
    assert count_parameters(refined) - count_parameters(base) == 8100
    shape = (1, 3, 512, 512)
    extra = count_macs(refined, shape, shape) - count_macs(base, shape, shape)
    assert round(extra / 1e9, 2) == 0.53
