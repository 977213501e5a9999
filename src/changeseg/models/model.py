"""The C-3PO change-segmentation network: Siamese backbone → MTF per level → MSF → head."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from changeseg.errors import ConfigError
from changeseg.models.backbones import Backbone
from changeseg.models.heads import build_head
from changeseg.models.merge import MergeTemporal, parse_branches
from changeseg.models.pyramid import MergeSpatial
from changeseg.models.refine import REFINE_KINDS, DetailRefine

PAD_MULTIPLE = 32  # the coarsest stride: inputs are padded to a multiple of it and cropped back
# Options added after checkpoints were first written: left out of `ModelConfig.to_dict` at their defaults.
OMITTED_AT_DEFAULT = ("msf_fuse", "refine", "ensemble")


@dataclass(frozen=True)
class ModelConfig:
    """Everything that defines the architecture (saved in every checkpoint's config.json)."""

    backbone: str = "mobilenet_v2"
    branches: str = "iade"
    fusion: str = "sum"
    share_ad: bool = True
    siamese: bool = True
    msf_levels: int = 4
    fpn_channels: int = 128
    head: str = "fcn"
    num_classes: int = 2
    in_channels: int = 3
    double_single_change: bool = True
    msf_fuse: str = "conv3x3"  # MSF fusion conv: conv3x3 (paper, official code), conv1x1, dwsep
    refine: str = "none"  # "stride2": correct the logits at stride 2 (changeseg.models.refine)
    ensemble: int = 1  # >1: that many such networks, logits averaged (changeseg.models.ensemble)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ModelConfig:
        """Build a config from a dict, rejecting unknown keys with a message naming them."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown model option(s): {', '.join(unknown)}; known: "
                              f"{', '.join(sorted(known))}")
        config = cls(**values)
        parse_branches(config.branches)
        if config.refine not in REFINE_KINDS:
            raise ConfigError(f"refine must be one of {', '.join(REFINE_KINDS)}, got {config.refine!r}")
        if not isinstance(config.ensemble, int) or isinstance(config.ensemble, bool) or config.ensemble < 1:
            raise ConfigError(f"ensemble must be a whole number of networks >= 1, got {config.ensemble!r}")
        return config

    def to_dict(self) -> dict[str, Any]:
        """The config as a JSON-ready dict.

        `msf_fuse`, `refine` and `ensemble` are left out while they are the defaults, so configs (and
        checkpoints) of the networks without them stay exactly as they were before the options
        existed.
        """
        values = asdict(self)
        for name in OMITTED_AT_DEFAULT:
            if values[name] == getattr(ModelConfig, name):
                del values[name]
        return values


class ChangeSegModel(nn.Module):
    """C-3PO: change detection as semantic segmentation of a merged feature pyramid.

    `forward(reference, comparison)` takes two N×C×H×W batches of the same size (any H, W)
    and returns N×num_classes×H×W logits.
    """

    def __init__(self, config: ModelConfig, pretrained: str | None = None) -> None:
        super().__init__()
        if config.ensemble != 1:
            raise ConfigError(f"a config with ensemble: {config.ensemble} describes several networks: "
                              "build it with changeseg.models.ensemble.build_network")
        self.config = config
        self.backbone = Backbone(config.backbone, pretrained, config.in_channels)
        # Unshared (pseudo-Siamese) weights: a second copy of the same backbone for the comparison.
        self.backbone_comparison = (
            None if config.siamese else Backbone(config.backbone, pretrained, config.in_channels)
        )
        channels = self.backbone.out_channels[-config.msf_levels:]
        self.merge = nn.ModuleList(
            MergeTemporal(c, config.branches, config.fusion, config.share_ad,
                          config.double_single_change)
            for c in channels
        )
        self.pyramid = MergeSpatial(self.backbone.out_channels, config.fpn_channels,
                                    config.msf_levels, fuse=config.msf_fuse)
        self.head = build_head(config.head, self.pyramid.out_channels, config.num_classes)
        self.branch_reductions: list[int] = self.backbone.reductions[-config.msf_levels:]
        self.refine: DetailRefine | None = None
        if config.refine == "stride2":
            if self.backbone.fine_split is None:
                raise ConfigError(f"refine: stride2 needs a backbone with stride-2 features "
                                  f"(mobilenet_v2), not {config.backbone!r}")
            self.refine = DetailRefine(self.backbone.fine_channels, config.num_classes)

    def forward(self, reference: Tensor, comparison: Tensor, return_branches: bool = False
                ) -> Tensor | tuple[Tensor, list[dict[str, Tensor]]]:
        """Per-pixel class logits; with `return_branches`, also each MTF branch per used level.

        The branch list is ordered like `branch_reductions` (finest used level first); each
        entry maps a branch letter to its N×C×h×w activation (for Fig. 12-style plots).
        """
        if reference.shape != comparison.shape:
            raise ValueError(f"reference {tuple(reference.shape)} and comparison "
                             f"{tuple(comparison.shape)} must have the same shape")
        height, width = reference.shape[-2:]
        pad_h = (-height) % PAD_MULTIPLE
        pad_w = (-width) % PAD_MULTIPLE
        if pad_h or pad_w:
            reference = F.pad(reference, (0, pad_w, 0, pad_h), mode="replicate")
            comparison = F.pad(comparison, (0, pad_w, 0, pad_h), mode="replicate")
        second = self.backbone_comparison or self.backbone
        if self.refine is not None:
            fine_ref, features_ref = self.backbone.forward_with_fine(reference)
            fine_cmp, features_cmp = second.forward_with_fine(comparison)
        else:
            features_ref = self.backbone(reference)
            features_cmp = second(comparison)
        used = len(self.merge)
        merged: list[Tensor] = []
        branches: list[dict[str, Tensor]] = []
        for mtf, f0, f1 in zip(self.merge, features_ref[-used:], features_cmp[-used:]):
            if return_branches:
                fused, per_branch = mtf(f0, f1, return_branches=True)
                branches.append(per_branch)
            else:
                fused = mtf(f0, f1)
            merged.append(fused)
        coarse = self.head(self.pyramid(merged))
        logits = F.interpolate(coarse, size=reference.shape[-2:], mode="bilinear",
                               align_corners=False)
        if self.refine is not None:
            residual = self.refine(coarse, fine_ref, fine_cmp)
            logits = logits + F.interpolate(residual, size=reference.shape[-2:], mode="bilinear",
                                            align_corners=False)
        logits = logits[..., :height, :width]
        return (logits, branches) if return_branches else logits


def build_model(pretrained: str | None = None, **config: Any) -> ChangeSegModel:
    """Build a change-segmentation network from keyword options (see `ModelConfig`).

    `pretrained` is None (random init), "imagenet" or a path to backbone weights; it affects
    only initialisation, so it is not part of the saved architecture.
    """
    return ChangeSegModel(ModelConfig.from_dict(config), pretrained=pretrained)


def count_parameters(model: nn.Module) -> int:
    """Number of parameters (trainable or not) in a module."""
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, *inputs_shape: tuple[int, ...]) -> float:
    """Multiply-accumulates of one forward pass, counted on the meta device (no compute).

    `model` is copied to the meta device; pass one shape per forward argument.
    """
    from torch.utils.flop_counter import FlopCounterMode

    meta = _to_meta(model)
    inputs = [torch.empty(shape, device="meta") for shape in inputs_shape]
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        meta(*inputs)
    return counter.get_total_flops() / 2.0


def _to_meta(model: nn.Module) -> nn.Module:
    import copy

    clone = copy.deepcopy(model)
    return clone.to("meta").eval()
