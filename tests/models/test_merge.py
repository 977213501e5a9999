"""MTF: the branches follow the patent's formulas, and reference/comparison swap a <-> d."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from changeseg.errors import ConfigError
from changeseg.models.merge import MergeTemporal, parse_branches


def identity_conv_(conv: nn.Conv2d) -> None:
    """Make a C→C 3×3 conv the identity, so branch outputs equal their inputs."""
    with torch.no_grad():
        conv.weight.zero_()
        for c in range(conv.out_channels):
            conv.weight[c, c, 1, 1] = 1.0
        conv.bias.zero_()


def identity_merge(branches: str, **options) -> MergeTemporal:
    merge = MergeTemporal(2, branches, **options)
    for conv in merge.convs.values():
        identity_conv_(conv)
    return merge


F0 = torch.tensor([[[[1.0, -2.0], [3.0, 0.5]], [[0.0, 4.0], [-1.0, 2.0]]]])
F1 = torch.tensor([[[[2.0, -3.0], [3.0, 1.5]], [[-1.0, 1.0], [2.0, 2.0]]]])


def test_branches_equal_the_patent_formulas():
    merge = identity_merge("iade")
    _, out = merge(F0, F1, return_branches=True)
    assert torch.equal(out["i"], F0 + F1)
    assert torch.equal(out["a"], torch.relu(F1 - F0))
    assert torch.equal(out["d"], torch.relu(F0 - F1))
    assert torch.equal(out["e"], torch.maximum(F0, F1) - torch.minimum(F0, F1))
    assert torch.equal(out["e"], (F0 - F1).abs())


def test_sum_fusion_is_relu_of_the_sum():
    merge = identity_merge("iade")
    fused = merge(F0, F1)
    expected = torch.relu(F0 + F1 + torch.relu(F1 - F0) + torch.relu(F0 - F1) + (F0 - F1).abs())
    assert torch.allclose(fused, expected)


def test_two_branch_spec_doubles_the_change_branch_like_the_official_code():
    fused = identity_merge("id")(F0, F1)
    assert torch.allclose(fused, torch.relu(F0 + F1 + 2 * torch.relu(F0 - F1)))
    plain = identity_merge("id", double_single_change=False)(F0, F1)
    assert torch.allclose(plain, torch.relu(F0 + F1 + torch.relu(F0 - F1)))


def test_swapping_inputs_swaps_appear_and_disappear(rng):
    merge = MergeTemporal(8, "iade")
    f0 = torch.from_numpy(rng.standard_normal((2, 8, 6, 5)).astype("float32"))
    f1 = torch.from_numpy(rng.standard_normal((2, 8, 6, 5)).astype("float32"))
    fused, forward = merge(f0, f1, return_branches=True)
    fused_swapped, swapped = merge(f1, f0, return_branches=True)
    assert torch.allclose(forward["a"], swapped["d"])
    assert torch.allclose(forward["d"], swapped["a"])
    assert torch.allclose(forward["i"], swapped["i"], atol=1e-6)
    assert torch.allclose(forward["e"], swapped["e"])
    assert torch.allclose(fused, fused_swapped, atol=1e-6)  # iade is symmetric overall
    assert not torch.allclose(forward["a"], forward["d"])


def test_separate_ad_convs_are_an_option():
    shared = MergeTemporal(4, "iade")
    separate = MergeTemporal(4, "iade", share_ad=False)
    assert set(shared.convs) == {"i", "ad", "e"}
    assert set(separate.convs) == {"i", "a", "d", "e"}


@pytest.mark.parametrize("fusion", ["sum", "concat", "linear"])
def test_every_fusion_gives_c_channels_and_trains(fusion, rng):
    merge = MergeTemporal(4, "iade", fusion=fusion)
    f0 = torch.randn(1, 4, 5, 5, requires_grad=True)
    out = merge(f0, torch.randn(1, 4, 5, 5))
    assert out.shape == (1, 4, 5, 5)
    assert (out >= 0).all()
    out.sum().backward()
    assert f0.grad is not None and f0.grad.abs().sum() > 0


def test_linear_fusion_uses_learned_branch_weights():
    merge = identity_merge("ie", fusion="linear")
    with torch.no_grad():
        merge.weights.copy_(torch.tensor([0.5, 3.0]))
    assert torch.allclose(merge(F0, F1), torch.relu(0.5 * (F0 + F1) + 3.0 * (F0 - F1).abs()))


@pytest.mark.parametrize("spec", ["", "x", "iia", "iadex"])
def test_bad_branch_specs_are_rejected(spec):
    with pytest.raises(ConfigError):
        parse_branches(spec)


def test_branch_spec_is_canonicalised():
    assert parse_branches("eadi") == "iade"
    with pytest.raises(ConfigError, match="fusion"):
        MergeTemporal(4, "iade", fusion="mean")


def test_which_merges_are_swap_symmetric() -> None:
    from changeseg.models.merge import is_swap_symmetric

    assert is_swap_symmetric("iade", "sum", share_ad=True)  # the paper's default: no a/d tell
    assert not is_swap_symmetric("iade", "sum", share_ad=False)
    assert not is_swap_symmetric("iade", "concat", share_ad=True)
    assert not is_swap_symmetric("id", "sum", share_ad=True)  # a one-sided branch breaks it
    assert is_swap_symmetric("ie", "sum", share_ad=True)


def test_separate_ad_convs_tell_appear_from_disappear() -> None:
    torch.manual_seed(0)
    shared = MergeTemporal(4, "iade", share_ad=True)
    split = MergeTemporal(4, "iade", share_ad=False)
    f0, f1 = torch.randn(1, 4, 6, 6), torch.randn(1, 4, 6, 6)
    assert torch.allclose(shared(f0, f1), shared(f1, f0), atol=1e-5)
    assert not torch.allclose(split(f0, f1), split(f1, f0), atol=1e-3)


def test_split_shared_ad_starts_from_the_same_function() -> None:
    from changeseg.models.merge import split_shared_ad

    torch.manual_seed(1)
    shared = MergeTemporal(4, "iade", share_ad=True)
    split = MergeTemporal(4, "iade", share_ad=False)
    state = {f"merge.0.{k}": v for k, v in shared.state_dict().items()}
    adapted = split_shared_ad(state, [f"merge.0.{k}" for k in split.state_dict()])
    assert "merge.0.convs.ad.weight" not in adapted
    split.load_state_dict({k[len("merge.0."):]: v for k, v in adapted.items()})
    f0, f1 = torch.randn(2, 4, 5, 5), torch.randn(2, 4, 5, 5)
    assert torch.allclose(split(f0, f1), shared(f0, f1), atol=1e-6)
    # a model that keeps the shared conv is left alone
    same = split_shared_ad(state, state.keys())
    assert same.keys() == state.keys()
