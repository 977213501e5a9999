"""Detail refinement: correct the head's stride-4 logits at stride 2 from both images' fine features.

The C-3PO head predicts at the finest MSF stride (4), and the logits are upsampled bilinearly to
the input size, so a change a few pixels wide (a person in a small fixed-camera frame, a pin-hole
on a board) is blurred across a 4-pixel grid. This optional module (`ModelConfig.refine =
"stride2"`) reads the backbone's stride-2 features of the reference and the comparison image
(MobileNetV2's first inverted-residual block, 16 channels), their absolute difference and the
coarse logits upsampled to stride 2, and predicts a residual correction of the logits there:

    logits = up(coarse, input size) + up(residual(cat[up2(coarse), f_ref, f_cmp, |f_ref - f_cmp|]))

Its last conv starts at zero, so a model built with it from weights trained without it
(`init_from`) predicts exactly what those weights did until training moves it. Its first conv pads
by replicating the border, so a constant added to the coarse logits (a calibration's no-change
bias) adds a constant to that conv's output everywhere, which its BatchNorm can take back exactly
(`changeseg.evaluation.calibration.fold_into_model`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

REFINE_KINDS = ("none", "stride2")
REFINE_WIDTH = 16  # the refinement conv's width: at stride 2 every channel costs H·W/4 MACs per tap


class DetailRefine(nn.Module):
    """A residual correction of coarse logits at stride 2 from two images' stride-2 features."""

    def __init__(self, feature_channels: int, num_classes: int, width: int = REFINE_WIDTH) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(num_classes + 3 * feature_channels, width, kernel_size=3, padding=1, bias=False,
                      padding_mode="replicate"),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
        )
        self.out = nn.Conv2d(width, num_classes, kernel_size=3, padding=1)
        self.num_classes = num_classes
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    @torch.no_grad()
    def fold_calibration(self, temperature: float, no_change_bias: float) -> None:
        """Keep this module's output calibrated once the coarse logits it reads and adds to have
        become `coarse / temperature + no_change_bias` on class 0: it reads back what it read
        before, and its residual is divided by the temperature like the logits."""
        first, norm = self.body[0], self.body[1]
        first.weight[:, :self.num_classes].mul_(temperature)
        # the constant bias on logit channel 0 now reaches the conv as T·bias·Σ taps everywhere
        # (replicate padding), which the BatchNorm's mean takes back
        norm.running_mean.add_(first.weight[:, 0].sum(dim=(1, 2)) * no_change_bias)
        self.out.weight.div_(temperature)
        self.out.bias.div_(temperature)

    def forward(self, coarse: Tensor, fine_ref: Tensor, fine_cmp: Tensor) -> Tensor:
        """The residual logits at the stride-2 features' size (add them, upsampled, to the coarse)."""
        up = F.interpolate(coarse, size=fine_ref.shape[-2:], mode="bilinear", align_corners=False)
        x = torch.cat([up, fine_ref, fine_cmp, (fine_ref - fine_cmp).abs()], dim=1)
        return self.out(self.body(x))
