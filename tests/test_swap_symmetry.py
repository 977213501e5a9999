"""Which networks are swap-symmetric, read from their config (changeseg.swap_symmetry)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from changeseg.models.model import build_model
from changeseg.swap_symmetry import network_is_swap_symmetric

WEIGHTS = Path(__file__).resolve().parents[1] / "src" / "changeseg" / "weights"
SMALL = {"backbone": "mobilenet_v2", "msf_levels": 2, "fpn_channels": 8}


def test_the_shipped_models() -> None:
    configs = {name: json.loads((WEIGHTS / name / "config.json").read_text())["model"]
               for name in ("default", "pcb", "aerial")}
    assert network_is_swap_symmetric(configs["pcb"]) and network_is_swap_symmetric(configs["aerial"])
    assert not network_is_swap_symmetric(configs["default"])  # separate a/d convs: it types changes
    assert network_is_swap_symmetric({})  # the defaults: the paper's network


@pytest.mark.parametrize(("options", "symmetric"), [
    ({}, True),
    ({"share_ad": False}, False),
    ({"fusion": "concat"}, False),
    ({"siamese": False}, False),  # two backbones: each image has its own
    ({"refine": "stride2"}, False),  # reads each image's own fine features
])
def test_the_config_says_what_the_network_does(options: dict, symmetric: bool) -> None:
    torch.manual_seed(0)
    model = build_model(**SMALL, **options).eval()
    with torch.no_grad():  # as after training: twin convs (and a zero-initialised last conv) differ
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.1)
    a, b = torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        same = torch.allclose(model(a, b), model(b, a), atol=1e-5)
    assert network_is_swap_symmetric({**SMALL, **options}) == symmetric == same
