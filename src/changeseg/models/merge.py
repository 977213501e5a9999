"""MTF — merge temporal features: the one module C-3PO adds to a segmentation network.

At one pyramid level it turns the reference features f0 and comparison features f1 into
difference features through up to four branches (DESIGN.md §1):

- ``i`` info:      conv_i(f0) + conv_i(f1)      — both images' semantics
- ``a`` appear:    conv_ad(ReLU(f1 − f0))       — only in the comparison
- ``d`` disappear: conv_ad(ReLU(f0 − f1))       — only in the reference
- ``e`` exchange:  conv_e(max(f0,f1) − min(f0,f1)) = conv_e(|f0 − f1|)

fused by sum (default), concatenation + 1×1 conv, or a learned linear combination, then ReLU.

**Shared a/d conv and sum fusion are swap-symmetric.** With one conv for `a` and `d`
(`share_ad`, the paper's default) the two branches sum to conv_ad(ReLU(x)) + conv_ad(ReLU(−x))
= W·|x| + 2b, which is unchanged when f0 and f1 are exchanged; `i` and `e` are symmetric too.
Such a network gives the same output for (A, B) and (B, A): right for change / no change,
but it cannot tell an appearance from a disappearance. A typed model (appear / disappear
classes) needs separate convs (`share_ad=False`) or a non-sum fusion; `split_shared_ad`
starts one from a shared-conv checkpoint.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn

from changeseg.errors import ConfigError
from changeseg.swap_symmetry import is_swap_symmetric

__all__ = ["BRANCH_LETTERS", "FUSIONS", "MergeTemporal", "is_swap_symmetric", "parse_branches",
           "split_shared_ad"]

BRANCH_LETTERS = "iade"
FUSIONS = ("sum", "concat", "linear")


def split_shared_ad(state: dict[str, Tensor], target_keys: Iterable[str]) -> dict[str, Tensor]:
    """A state dict with each shared a/d conv (`….convs.ad.*`) copied into separate `….convs.a.*`
    and `….convs.d.*` tensors where the target model has those instead.

    The split network starts out computing exactly what the shared one did; training then
    lets the two convs differ, which is what tells appear from disappear.
    """
    targets = set(target_keys)
    out = dict(state)
    for name, tensor in state.items():
        if ".convs.ad." not in name or name in targets:
            continue
        for letter in "ad":
            split = name.replace(".convs.ad.", f".convs.{letter}.")
            if split in targets:
                out[split] = tensor.clone()
        out.pop(name)
    return out


def parse_branches(spec: str) -> str:
    """Validate a branch spec such as "iade" or "id" and return it in canonical i-a-d-e order."""
    letters = set(spec)
    if not spec or not letters <= set(BRANCH_LETTERS) or len(letters) != len(spec):
        raise ConfigError(f"branch spec {spec!r} must be distinct letters from {BRANCH_LETTERS!r}")
    return "".join(letter for letter in BRANCH_LETTERS if letter in letters)


def _conv3x3(channels: int) -> nn.Conv2d:
    return nn.Conv2d(channels, channels, kernel_size=3, padding=1)


class MergeTemporal(nn.Module):
    """Merge two images' features at one level into C difference channels."""

    def __init__(self, channels: int, branches: str = "iade", fusion: str = "sum",
                 share_ad: bool = True, double_single_change: bool = True) -> None:
        super().__init__()
        self.branches = parse_branches(branches)
        if fusion not in FUSIONS:
            raise ConfigError(f"unknown fusion {fusion!r}; choose one of: {', '.join(FUSIONS)}")
        self.fusion = fusion
        self.convs = nn.ModuleDict()
        if "i" in self.branches:
            self.convs["i"] = _conv3x3(channels)
        if "a" in self.branches or "d" in self.branches:
            if share_ad:
                self.convs["ad"] = _conv3x3(channels)
            else:
                for letter in "ad":
                    if letter in self.branches:
                        self.convs[letter] = _conv3x3(channels)
        if "e" in self.branches:
            self.convs["e"] = _conv3x3(channels)
        self.share_ad = share_ad
        # The official code doubles the lone change branch of a two-branch spec (id -> i + 2·d).
        self.scale = {b: 1.0 for b in self.branches}
        lone_change = len(self.branches) == 2 and "i" in self.branches
        if double_single_change and fusion == "sum" and lone_change:
            self.scale[self.branches.replace("i", "")] = 2.0
        if fusion == "concat":
            self.project = nn.Conv2d(channels * len(self.branches), channels, kernel_size=1)
        elif fusion == "linear":
            self.weights = nn.Parameter(torch.ones(len(self.branches)))
        self.relu = nn.ReLU(inplace=False)

    def _conv(self, letter: str) -> nn.Module:
        if letter in "ad" and self.share_ad:
            return self.convs["ad"]
        return self.convs[letter]

    def branch_outputs(self, f0: Tensor, f1: Tensor) -> dict[str, Tensor]:
        """Each branch's activation (before fusion), keyed by its letter."""
        out: dict[str, Tensor] = {}
        for letter in self.branches:
            conv = self._conv(letter)
            if letter == "i":
                out[letter] = conv(f0) + conv(f1)
            elif letter == "a":
                out[letter] = conv(self.relu(f1 - f0))
            elif letter == "d":
                out[letter] = conv(self.relu(f0 - f1))
            else:
                out[letter] = conv((f0 - f1).abs())
        return out

    def forward(self, f0: Tensor, f1: Tensor,
                return_branches: bool = False) -> Tensor | tuple[Tensor, dict[str, Tensor]]:
        """Fused difference features; with `return_branches`, also each branch's activation."""
        outputs = self.branch_outputs(f0, f1)
        maps = [outputs[b] for b in self.branches]
        if self.fusion == "sum":
            fused = maps[0] * self.scale[self.branches[0]]
            for letter, m in zip(self.branches[1:], maps[1:]):
                fused = fused + m * self.scale[letter]
        elif self.fusion == "concat":
            fused = self.project(torch.cat(maps, dim=1))
        else:
            fused = sum(w * m for w, m in zip(self.weights, maps))
        fused = self.relu(fused)
        return (fused, outputs) if return_branches else fused
