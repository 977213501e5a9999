"""changeseg.models.ensemble: several networks of one architecture as one, logits averaged."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from changeseg.errors import ConfigError
from changeseg.models.ensemble import EnsembleModel, build_network, member_networks
from changeseg.models.model import ChangeSegModel, ModelConfig
from changeseg.swap_symmetry import network_is_swap_symmetric

TINY = ModelConfig(fpn_channels=8)


def pair(height: int = 48, width: int = 80, seed: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(1, 3, height, width, generator=generator), torch.randn(1, 3, height, width,
                                                                             generator=generator)


def test_the_ensemble_returns_the_mean_of_its_members_logits():
    torch.manual_seed(0)
    ensemble = build_network(replace(TINY, ensemble=3)).eval()
    assert isinstance(ensemble, EnsembleModel) and len(member_networks(ensemble)) == 3
    reference, comparison = pair()
    with torch.no_grad():
        members = [m(reference, comparison) for m in ensemble.members]
        logits = ensemble(reference, comparison)
    assert not torch.allclose(members[0], members[1], atol=1e-3)  # independently initialised
    assert logits.shape == (1, 2, 48, 80)
    assert torch.allclose(logits, sum(members) / 3, atol=1e-6)


def test_its_branches_are_the_members_side_by_side():
    torch.manual_seed(1)
    ensemble = build_network(replace(TINY, ensemble=2)).eval()
    reference, comparison = pair(64, 64)
    with torch.no_grad():
        logits, levels = ensemble(reference, comparison, return_branches=True)
        first = ensemble.members[0](reference, comparison, return_branches=True)[1]
        second = ensemble.members[1](reference, comparison, return_branches=True)[1]
    assert torch.allclose(logits, ensemble(reference, comparison))
    assert ensemble.branch_reductions == ensemble.members[0].branch_reductions
    for level, ours in enumerate(levels):
        for branch, activation in ours.items():
            assert torch.equal(activation, torch.cat([first[level][branch], second[level][branch]], 1))


def test_one_network_is_a_plain_model_and_a_plain_model_refuses_several():
    single = build_network(TINY)
    assert isinstance(single, ChangeSegModel) and member_networks(single) == [single]
    with pytest.raises(ConfigError, match="build_network"):
        ChangeSegModel(replace(TINY, ensemble=2))


@pytest.mark.parametrize("bad", [0, -1, 1.5, "2", True])
def test_a_bad_member_count_is_refused(bad):
    with pytest.raises(ConfigError, match="ensemble must be"):
        ModelConfig.from_dict({"ensemble": bad})


def test_the_count_is_recorded_only_when_there_are_several():
    assert "ensemble" not in TINY.to_dict()
    assert ModelConfig.from_dict({**TINY.to_dict(), "ensemble": 2}).to_dict()["ensemble"] == 2


def test_an_ensemble_of_swap_symmetric_networks_is_swap_symmetric():
    config = replace(TINY, ensemble=2)
    assert network_is_swap_symmetric(config.to_dict())
    torch.manual_seed(2)
    ensemble = build_network(config).eval()
    reference, comparison = pair(32, 64)
    with torch.no_grad():
        assert torch.allclose(ensemble(reference, comparison), ensemble(comparison, reference), atol=1e-5)
