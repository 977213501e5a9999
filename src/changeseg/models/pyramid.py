"""MSF — merge spatial features: an FPN over the merged levels, fused at the finest one.

Each level → 1×1 conv to F channels; top-down: upsample the coarser result ×2 (bilinear)
and add; a 3×3 conv on each result; upsample all to the finest level used; concatenate;
3×3 conv + BN + ReLU to the head width (the official code's choice, `fuse="conv3x3"`).

The fusion conv runs over levels·F channels at the finest stride and is the network's
single largest cost (about half of the default model's MACs at 512²), so two cheaper fusions
are options (`bench/fusion_cost.py` measures them; they need their own training):
``conv1x1`` (a 1×1 conv, 9× fewer MACs) and ``dwsep`` (a depthwise 3×3 over the concatenation
followed by a 1×1 conv). The paper presets use ``conv3x3``.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from changeseg.errors import ConfigError

FUSE_KINDS = ("conv3x3", "conv1x1", "dwsep")


def fuse_conv(in_channels: int, out_channels: int, kind: str = "conv3x3") -> nn.Sequential:
    """The conv(s) of the MSF fusion (no bias: a BatchNorm follows), by `kind` (see FUSE_KINDS)."""
    if kind == "conv3x3":
        return nn.Sequential(nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False))
    if kind == "conv1x1":
        return nn.Sequential(nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False))
    if kind == "dwsep":
        return nn.Sequential(
            nn.Conv2d(in_channels, in_channels, kernel_size=3, padding=1, groups=in_channels, bias=False),
            nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False))
    raise ConfigError(f"msf fuse must be one of {', '.join(FUSE_KINDS)}, got {kind!r}")


def seed_fuse_from_conv3x3(state: dict[str, Tensor], target: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """A state dict whose 3×3 fusion kernel (`….fuse.0.weight`) seeds the cheaper fusion convs the
    `target` state dict has instead, so a trained checkpoint can start a `conv1x1` / `dwsep` model.

    The 1×1 (or pointwise) kernel is the 3×3 kernel summed over its taps and the depthwise kernel is
    the identity: on a flat feature map the seeded fusion computes what the 3×3 one did; training
    then recovers the rest. Tensors of any other layout pass through unchanged.
    """
    out = dict(state)
    for name, kernel in state.items():
        if not name.endswith(".fuse.0.weight") or kernel.dim() != 4 or kernel.shape[-2:] != (3, 3):
            continue
        stem = name.removesuffix("0.weight")
        first, second = f"{stem}0.0.weight", f"{stem}0.1.weight"
        if name in target or first not in target:
            continue
        pointwise = kernel.sum(dim=(2, 3), keepdim=True)
        if second in target:  # dwsep: depthwise 3×3, then pointwise 1×1
            depthwise = torch.zeros_like(target[first], dtype=kernel.dtype)
            depthwise[:, :, 1, 1] = 1.0
            out[first], out[second] = depthwise, pointwise
        else:  # conv1x1
            out[first] = pointwise
        out.pop(name)
    return out


class MergeSpatial(nn.Module):
    """Fuse the deepest `levels` of a feature pyramid into one map at the finest used stride."""

    def __init__(self, in_channels: list[int], width: int = 128, levels: int = 4,
                 out_channels: int | None = None, fuse: str = "conv3x3") -> None:
        super().__init__()
        if not 1 <= levels <= len(in_channels):
            raise ConfigError(f"msf levels must be between 1 and {len(in_channels)}, got {levels}")
        self.levels = levels
        used = in_channels[-levels:]
        self.lateral = nn.ModuleList(nn.Conv2d(c, width, kernel_size=1) for c in used)
        self.smooth = nn.ModuleList(nn.Conv2d(width, width, kernel_size=3, padding=1) for _ in used)
        self.out_channels = out_channels or width
        convs = fuse_conv(width * levels, self.out_channels, fuse)
        if fuse == "conv3x3":  # the module layout (and state-dict keys) of every checkpoint so far
            self.fuse = nn.Sequential(convs[0], nn.BatchNorm2d(self.out_channels), nn.ReLU(inplace=True))
        else:
            self.fuse = nn.Sequential(convs, nn.BatchNorm2d(self.out_channels), nn.ReLU(inplace=True))

    def forward(self, features: list[Tensor]) -> Tensor:
        """One N×out_channels map at the stride of the finest level used."""
        used = features[-self.levels:]
        laterals = [conv(f) for conv, f in zip(self.lateral, used)]
        merged = [laterals[-1]]
        for lateral in reversed(laterals[:-1]):
            up = F.interpolate(merged[0], size=lateral.shape[-2:], mode="bilinear",
                               align_corners=False)
            merged.insert(0, lateral + up)
        smoothed = [conv(m) for conv, m in zip(self.smooth, merged)]
        size = smoothed[0].shape[-2:]
        upsampled = [smoothed[0]] + [
            F.interpolate(s, size=size, mode="bilinear", align_corners=False) for s in smoothed[1:]
        ]
        return self.fuse(torch.cat(upsampled, dim=1))
