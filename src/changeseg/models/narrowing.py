"""Narrow a trained network's MSF width F (`fpn_channels`) by keeping its most important channels.

The MSF convs that run at stride 4 — the 3×3 smoothing convs, the fusion and the head's first
conv — cost about half of the `default` model's MACs and scale with F² (docs/benchmarks.md,
"Cheaper MSF fusions"). Training a narrower network from ImageNet weights would restart the
whole training chain; instead `narrow_msf_state` cuts a trained state dict down to a smaller F
and a short fine-tune recovers what the dropped channels carried (structured pruning).

Which channels stay, per group of channels that must be cut together:

* the pyramid's width: the laterals' outputs are added level into level, so one set of F
  channels is kept for every lateral and for every smoothing conv's input;
* each smoothing conv's outputs (they are concatenated before the fusion, so each level keeps
  its own set);
* the fusion's outputs (the head's input) and the FCN head's inner channels (F/4).

A channel's importance is the norm of the weights that make it times the norm of the weights
that read it (BatchNorm scales included): a channel nothing reads, or nothing writes, scores 0.
The backbone, the MTF convs and everything outside the MSF and the head pass through unchanged.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from changeseg.errors import ConfigError
from changeseg.models.model import ModelConfig

__all__ = ["narrow_msf_state"]


def _norms(weight: Tensor, dim: int) -> Tensor:
    """L2 norm of `weight` over every dimension but `dim` (one value per index of `dim`)."""
    moved = weight.detach().float().movedim(dim, 0)
    return moved.reshape(moved.shape[0], -1).norm(dim=1)


def _top(scores: Tensor, count: int) -> Tensor:
    """Indices of the `count` highest scores, in ascending index order (ties: lower index)."""
    order = torch.argsort(-scores, stable=True)[:count]
    return torch.sort(order).values


def _fuse_layout(state: dict[str, Tensor]) -> str:
    if "pyramid.fuse.0.weight" in state:
        return "conv3x3"
    if "pyramid.fuse.0.1.weight" in state:
        return "dwsep"
    if "pyramid.fuse.0.0.weight" in state:
        return "conv1x1"
    raise ConfigError("no MSF fusion conv (pyramid.fuse.*) in this state dict")


def narrow_msf_state(state: dict[str, Tensor], model: dict[str, Any], width: int
                     ) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """A state dict and model config with the MSF width cut from `model["fpn_channels"]` to `width`.

    `state` is a full `ChangeSegModel` state dict with an FCN head; `model` its config dict (as in
    config.json). Returns new tensors (the input is not modified) and the config with
    `fpn_channels = width`. Raises ConfigError for a head other than FCN or a width that is not
    smaller than the current one or not a multiple of 4 (the FCN head reduces by 4).
    """
    config = ModelConfig.from_dict(model)
    old, levels = config.fpn_channels, config.msf_levels
    if config.head != "fcn":
        raise ConfigError(f"narrowing needs the FCN head, not {config.head!r}")
    if not 4 <= width < old or width % 4:
        raise ConfigError(f"the new width must be a multiple of 4 below {old}, got {width}")
    fuse = _fuse_layout(state)
    out = dict(state)

    def lateral(i: int) -> str:
        return f"pyramid.lateral.{i}"

    def smooth(i: int) -> str:
        return f"pyramid.smooth.{i}"

    # fusion kernels over the concatenated levels: (out, levels·F, k, k) and, for dwsep, the depthwise
    reader = {"conv3x3": "pyramid.fuse.0.weight", "conv1x1": "pyramid.fuse.0.0.weight",
              "dwsep": "pyramid.fuse.0.1.weight"}[fuse]
    fuse_in = state[reader]
    depthwise = state.get("pyramid.fuse.0.0.weight") if fuse == "dwsep" else None

    # 1. the pyramid's width, shared by the laterals (added together) and the smoothing inputs
    width_scores = sum(_norms(state[f"{lateral(i)}.weight"], 0) * _norms(state[f"{smooth(i)}.weight"], 1)
                       for i in range(levels))
    kept = _top(width_scores, width)
    for i in range(levels):
        out[f"{lateral(i)}.weight"] = state[f"{lateral(i)}.weight"][kept].clone()
        out[f"{lateral(i)}.bias"] = state[f"{lateral(i)}.bias"][kept].clone()
        out[f"{smooth(i)}.weight"] = state[f"{smooth(i)}.weight"][:, kept].clone()

    # 2. each smoothing conv's outputs, read by the fusion at channels i·F + c
    read = _norms(fuse_in, 1)
    if depthwise is not None:
        read = read * _norms(depthwise, 0)
    concat = []
    for i in range(levels):
        scores = _norms(state[f"{smooth(i)}.weight"], 0) * read[i * old:(i + 1) * old]
        chosen = _top(scores, width)
        out[f"{smooth(i)}.weight"] = out[f"{smooth(i)}.weight"][chosen].clone()
        out[f"{smooth(i)}.bias"] = state[f"{smooth(i)}.bias"][chosen].clone()
        concat.append(chosen + i * old)
    concat_kept = torch.cat(concat)
    fuse_in = fuse_in[:, concat_kept]
    if depthwise is not None:
        out["pyramid.fuse.0.0.weight"] = depthwise[concat_kept].clone()

    # 3. the fusion's outputs (BatchNorm, then the head's first conv)
    gamma = state["pyramid.fuse.1.weight"].abs()
    fused = _top(_norms(fuse_in, 0) * gamma * _norms(state["head.0.weight"], 1), width)
    out[reader] = fuse_in[fused].clone()
    for name in ("weight", "bias", "running_mean", "running_var"):
        out[f"pyramid.fuse.1.{name}"] = state[f"pyramid.fuse.1.{name}"][fused].clone()
    head_in = state["head.0.weight"][:, fused]

    # 4. the FCN head's inner channels: conv → BatchNorm → ReLU → dropout → 1×1 classifier
    inner = _top(_norms(head_in, 0) * state["head.1.weight"].abs() * _norms(state["head.4.weight"], 1),
                 width // 4)
    out["head.0.weight"] = head_in[inner].clone()
    for name in ("weight", "bias", "running_mean", "running_var"):
        out[f"head.1.{name}"] = state[f"head.1.{name}"][inner].clone()
    out["head.4.weight"] = state["head.4.weight"][:, inner].clone()
    return out, {**model, "fpn_channels": width}
