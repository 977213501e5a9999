"""Narrowing the MSF width keeps the channels that matter: exact where the rest contribute nothing."""

from __future__ import annotations

import pytest
import torch

from changeseg.errors import ConfigError
from changeseg.models.model import ChangeSegModel, ModelConfig, build_model
from changeseg.models.narrowing import narrow_msf_state
from changeseg.training.module import load_matching_weights

WIDE, NARROW = 16, 8


def _silence_half(model: ChangeSegModel, seed: int) -> None:
    """Make a random half of each MSF / head channel group contribute nothing downstream.

    Weights are made random and non-trivial first (BatchNorm statistics included), then the
    channels that should be dropped are cut off at the weights that *read* them.
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.normal_(0, 0.1, generator=generator)
                module.running_var.uniform_(0.5, 1.5, generator=generator)
                module.weight.uniform_(0.5, 1.5, generator=generator)
                module.bias.normal_(0, 0.1, generator=generator)

        def dropped(count: int) -> torch.Tensor:
            return torch.randperm(count, generator=generator)[: count // 2]

        pyramid, head = model.pyramid, model.head
        shared = dropped(WIDE)
        for smooth in pyramid.smooth:  # the pyramid width: nothing reads these merged channels
            smooth.weight[:, shared] = 0
        first = pyramid.fuse[0]
        fuse_reader = first[-1] if isinstance(first, torch.nn.Sequential) else first
        for level in range(pyramid.levels):  # each smoothing conv's outputs: the fusion ignores them
            fuse_reader.weight[:, level * WIDE + dropped(WIDE)] = 0
        head[0].weight[:, dropped(WIDE)] = 0  # the fusion's outputs: the head ignores them
        head[4].weight[:, dropped(WIDE // 4)] = 0  # the head's inner channels


@pytest.mark.parametrize("fuse", ["conv3x3", "conv1x1", "dwsep"])
def test_narrowing_keeps_exactly_what_the_network_computes_when_the_dropped_channels_are_unread(fuse):
    torch.manual_seed(0)
    options = {"fpn_channels": WIDE, "num_classes": 4, "share_ad": False, "msf_fuse": fuse}
    wide = build_model(**options).eval()
    _silence_half(wide, seed=1)
    state, model = narrow_msf_state(wide.state_dict(), wide.config.to_dict(), NARROW)
    assert model["fpn_channels"] == NARROW and model.get("msf_fuse", "conv3x3") == fuse
    narrow = ChangeSegModel(ModelConfig.from_dict(model)).eval()
    loaded, skipped = load_matching_weights(narrow, state)
    assert skipped == [] and len(loaded) == len(narrow.state_dict())
    generator = torch.Generator().manual_seed(2)
    reference, comparison = torch.rand(2, 1, 3, 64, 96, generator=generator)
    with torch.no_grad():
        expected, got = wide(reference, comparison), narrow(reference, comparison)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


def test_narrowing_a_network_whose_every_channel_matters_changes_its_output_but_keeps_the_rest():
    torch.manual_seed(0)
    wide = build_model(fpn_channels=WIDE, num_classes=2).eval()
    state, model = narrow_msf_state(wide.state_dict(), wide.config.to_dict(), NARROW)
    narrow = ChangeSegModel(ModelConfig.from_dict(model)).eval()
    load_matching_weights(narrow, state)
    for name, tensor in wide.state_dict().items():  # outside the MSF and the head: untouched
        if not name.startswith(("pyramid.", "head.")):
            assert torch.equal(state[name], tensor), name
    reference, comparison = torch.rand(2, 1, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert not torch.allclose(narrow(reference, comparison), wide(reference, comparison))


@pytest.mark.parametrize("width", [16, 32, 6, 0])
def test_a_width_that_is_not_smaller_or_not_a_multiple_of_four_is_refused(width):
    wide = build_model(fpn_channels=WIDE)
    with pytest.raises(ConfigError, match="multiple of 4 below 16"):
        narrow_msf_state(wide.state_dict(), wide.config.to_dict(), width)


def test_a_deeplab_head_is_refused():
    wide = build_model(fpn_channels=WIDE, head="deeplabv3")
    with pytest.raises(ConfigError, match="FCN head"):
        narrow_msf_state(wide.state_dict(), wide.config.to_dict(), NARROW)


def test_the_narrow_model_tool_writes_a_narrower_checkpoint_with_a_fresh_classifier(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    from changeseg.io.checkpoints import CheckpointConfig, load_checkpoint, save_checkpoint

    torch.manual_seed(0)
    wide = build_model(fpn_channels=WIDE, num_classes=4, share_ad=False, msf_fuse="dwsep")
    config = CheckpointConfig(model=wide.config.to_dict(), threshold=0.4, metadata={"note": "kept",
                                                                              "domains": {"x": {}}})
    save_checkpoint(tmp_path / "wide", wide.state_dict(), config)
    tool = Path(__file__).resolve().parents[2] / "tools" / "narrow_model.py"
    done = subprocess.run([sys.executable, str(tool), str(tmp_path / "wide"), str(tmp_path / "narrow"),
                           "--width", str(NARROW), "--fresh-classifier"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    narrow_config, state = load_checkpoint(tmp_path / "narrow")
    assert narrow_config.model["fpn_channels"] == NARROW and narrow_config.threshold == 0.4
    assert narrow_config.metadata["note"] == "kept" and "domains" not in narrow_config.metadata
    assert narrow_config.metadata["narrowed_from"]["fpn_channels"] == WIDE
    assert not any(name.startswith("head.4.") for name in state)  # the classifier starts afresh
    narrow = ChangeSegModel(ModelConfig.from_dict(narrow_config.model))
    loaded, skipped = load_matching_weights(narrow, state)
    assert skipped == [] and len(loaded) == len(narrow.state_dict()) - 2  # all but head.4 weight, bias
