"""Output ensembles: several trained C-3PO networks of one architecture as one network.

Independently trained networks make partly different mistakes; averaging their outputs is the
most reliable way to trade compute for accuracy that does not depend on the data at hand. An
`EnsembleModel` holds `config.ensemble` members built from the same `ModelConfig` and returns
the mean of their logits, so to everything downstream — `ChangeDetector`, the ONNX export and
its runtimes, the web page, calibration — it is one network with one forward pass. Averaging
logits (not probabilities) keeps a calibration folded into every member's classifier exact:
mean(l_i / T + b) = mean(l_i) / T + b (`changeseg.evaluation.calibration.fold_into_model`).

Members are never trained together here: `tools/ensemble_models.py` joins trained checkpoints.
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import Tensor, nn

from changeseg.models.model import ChangeSegModel, ModelConfig

MEMBERS_PREFIX = "members."


class EnsembleModel(nn.Module):
    """`config.ensemble` C-3PO networks of one architecture whose logits are averaged.

    `forward` has `ChangeSegModel.forward`'s contract; with `return_branches`, each branch's
    activation is the members' activations side by side on the channel axis (so a branch map,
    the mean absolute activation over channels, is the mean over all members' channels).
    """

    def __init__(self, config: ModelConfig, pretrained: str | None = None) -> None:
        super().__init__()
        self.config = config
        member = replace(config, ensemble=1)
        self.members = nn.ModuleList(ChangeSegModel(member, pretrained)
                                     for _ in range(config.ensemble))
        self.branch_reductions: list[int] = list(self.members[0].branch_reductions)

    def forward(self, reference: Tensor, comparison: Tensor, return_branches: bool = False
                ) -> Tensor | tuple[Tensor, list[dict[str, Tensor]]]:
        """The mean of the members' logits (and, with `return_branches`, their branches)."""
        if not return_branches:
            return torch.stack([m(reference, comparison) for m in self.members]).mean(dim=0)
        outputs = [m(reference, comparison, return_branches=True) for m in self.members]
        logits = torch.stack([out[0] for out in outputs]).mean(dim=0)
        levels = [{branch: torch.cat([out[1][level][branch] for out in outputs], dim=1)
                   for branch in outputs[0][1][level]}
                  for level in range(len(outputs[0][1]))]
        return logits, levels


def build_network(config: ModelConfig, pretrained: str | None = None) -> nn.Module:
    """The network a config describes: a `ChangeSegModel`, or an `EnsembleModel` when
    `config.ensemble` is above 1. Use it wherever a network is rebuilt from a checkpoint."""
    if config.ensemble > 1:
        return EnsembleModel(config, pretrained)
    return ChangeSegModel(config, pretrained)


def member_networks(model: nn.Module) -> list[nn.Module]:
    """The single networks inside `model`: its members for an ensemble, else `[model]`."""
    if isinstance(model, EnsembleModel):
        return list(model.members)
    return [model]
