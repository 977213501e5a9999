"""Segmentation heads, taken from torchvision: FCN and DeepLabv3 (ASPP)."""

from __future__ import annotations

from torch import nn
from torchvision.models.segmentation.deeplabv3 import DeepLabHead
from torchvision.models.segmentation.fcn import FCNHead

from changeseg.errors import ConfigError

HEADS = ("fcn", "deeplabv3")


def build_head(name: str, in_channels: int, num_classes: int) -> nn.Module:
    """A head mapping N×in_channels features to N×num_classes logits at the same stride.

    fcn: 3×3 conv reducing channels 4×, BN, ReLU, dropout, 1×1 conv (torchvision FCNHead).
    deeplabv3: ASPP (rates 12, 24, 36) + 3×3 conv + 1×1 conv (torchvision DeepLabHead);
    its image-pooling branch needs a batch of 2 or more in training mode.
    """
    if num_classes < 2:
        raise ConfigError(f"num_classes must be at least 2, got {num_classes}")
    if name == "fcn":
        return FCNHead(in_channels, num_classes)
    if name == "deeplabv3":
        return DeepLabHead(in_channels, num_classes)
    raise ConfigError(f"unknown head {name!r}; choose one of: {', '.join(HEADS)}")
