"""Losses for change segmentation: class-weighted cross-entropy (DESIGN.md §1), Dice, focal.

The C-3PO loss is a cross-entropy whose class weights balance the unchanged and changed
pixel counts of the training masks. The official code weights each class by the *other*
class's frequency: with `f_b` and `f_c` the unchanged and changed pixel fractions, the
unchanged class gets `f_c` and the changed class `f_b`. That is inverse-frequency
weighting normalised to sum to one (`w_k ∝ 1 / f_k`), which is how it generalises to more
classes here. Pixels labelled `ignore_index` (255) never count, neither in the weights nor
in the loss.

Partial labels: a typed (appear / disappear / exchange) model can also learn from sets that
only say *whether* a pixel changed. Such pixels carry `UNTYPED_CHANGE` (254); their
likelihood is that of "some change", `1 − p(class 0)` = the summed probability of every
change class, so they teach change against no change without saying which type. Their class
weight is the mean weight of the change classes.

Reductions: `"weighted_mean"` (the official code and PyTorch's `CrossEntropyLoss(weight)`:
the sum of weighted per-pixel losses divided by the sum of the weights of the pixels) or
`"mean"` (DESIGN.md's per-pixel formula `−w·y·log p − (1−w)·(1−y)·log(1−p)` averaged over
the valid pixels).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from changeseg.errors import ConfigError
from changeseg.labels import IGNORE_INDEX, UNTYPED_CHANGE

LOSS_TERMS = ("ce", "dice", "focal")
REDUCTIONS = ("weighted_mean", "mean")


def class_pixel_counts(masks: Iterable[np.ndarray | Tensor], num_classes: int,
                       ignore_index: int = IGNORE_INDEX) -> np.ndarray:
    """Count the pixels of each class in label masks, skipping `ignore_index`.

    Pixels of `UNTYPED_CHANGE` (multi-class models only) are shared out among the change
    classes in proportion to their typed counts (evenly when there are none), so the change
    classes together get the weight of all changed pixels.

    Raises ConfigError when a mask holds a label that is neither a class nor ignored (for
    example 0/255 masks read for a model with two classes but never converted to 0/1).
    """
    counts = np.zeros(num_classes, dtype=np.int64)
    untyped = 0
    for mask in masks:
        values = mask.detach().cpu().numpy() if isinstance(mask, Tensor) else np.asarray(mask)
        flat = values.reshape(-1).astype(np.int64)
        flat = flat[flat != ignore_index]
        if num_classes > 2:
            is_untyped = flat == UNTYPED_CHANGE
            untyped += int(is_untyped.sum())
            flat = flat[~is_untyped]
        if flat.size == 0:
            continue
        if flat.min() < 0 or flat.max() >= num_classes:
            bad = sorted(set(np.unique(flat[(flat < 0) | (flat >= num_classes)]).tolist()))
            raise ConfigError(f"mask holds label(s) {bad[:5]} outside 0..{num_classes - 1} "
                              f"(and not the ignore value {ignore_index})")
        counts += np.bincount(flat, minlength=num_classes)
    if untyped:
        typed = counts[1:].astype(np.float64)
        share = typed / typed.sum() if typed.sum() > 0 else np.full(typed.size, 1.0 / typed.size)
        exact = share * untyped
        extra = np.floor(exact).astype(np.int64)
        leftover = untyped - int(extra.sum())  # largest remainders first
        extra[np.argsort(-(exact - extra), kind="stable")[:leftover]] += 1
        counts[1:] += extra
    return counts


def target_log_likelihood(logits: Tensor, target: Tensor, ignore_index: int = IGNORE_INDEX
                          ) -> tuple[Tensor, Tensor, Tensor]:
    """Per-pixel ``log p(label)`` of N×K×H×W logits, with `UNTYPED_CHANGE` as "any change".

    Returns ``(log_p, valid, safe)``: the N×H×W log-likelihoods (0 where ignored), the mask
    of pixels that count, and the target for indexing per-class weights (ignored pixels set
    to class 0, untyped changes to -1; see `pixel_class_weight`).
    """
    target = target.long()
    valid = target != ignore_index
    untyped = (target == UNTYPED_CHANGE) & valid if logits.shape[1] > 2 else torch.zeros_like(valid)
    safe = torch.where(valid & ~untyped, target, torch.zeros_like(target))
    log_probs = F.log_softmax(logits.float(), dim=1)
    log_p = log_probs.gather(1, safe.unsqueeze(1)).squeeze(1)
    if bool(untyped.any()):
        any_change = torch.logsumexp(log_probs[:, 1:], dim=1)
        log_p = torch.where(untyped, any_change, log_p)
    return torch.where(valid, log_p, torch.zeros_like(log_p)), valid, torch.where(untyped, -1, safe)


def pixel_class_weight(weight: Tensor, safe: Tensor) -> Tensor:
    """Each pixel's class weight; -1 in `safe` (an untyped change) takes the change classes' mean."""
    weight = weight.float()
    table = torch.cat([weight, weight[1:].mean().reshape(1)])
    return table[torch.where(safe < 0, torch.full_like(safe, weight.numel()), safe)]


def class_weights_from_counts(counts: Sequence[int] | np.ndarray) -> list[float]:
    """Inverse-frequency class weights normalised to sum to one.

    For two classes this is exactly the official C-3PO weighting: each class weighted by the
    other class's frequency. A class with no pixels at all gets the largest weight of the
    classes that have some (it cannot contribute to the loss anyway, but it keeps a sane
    weight if it appears in a later crop). All zero counts give uniform weights.
    """
    values = np.asarray(counts, dtype=np.float64)
    if values.ndim != 1 or values.size < 1:
        raise ConfigError(f"class counts must be a non-empty list, got {counts!r}")
    if np.any(values < 0):
        raise ConfigError(f"class counts must be non-negative, got {list(values)}")
    total = values.sum()
    present = values > 0
    if total <= 0 or present.sum() == 0:
        return [1.0 / values.size] * values.size
    inverse = np.zeros_like(values)
    inverse[present] = total / values[present]
    if not present.all():
        inverse[~present] = inverse[present].max()
    weights = inverse / inverse.sum()
    return [float(w) for w in weights]


def binary_class_weights_from_counts(counts: Sequence[int] | np.ndarray) -> list[float]:
    """Change-vs-no-change weights for a multi-class (typed) model.

    The C-3PO weighting of the two-class problem (no change against *any* change), with every
    change class given the change weight: the classes of change are not balanced against each
    other. Four-way inverse frequency would weight each rare change type several times over
    and push the network to predict change everywhere.
    """
    values = np.asarray(counts, dtype=np.float64)
    if values.ndim != 1 or values.size < 2:
        raise ConfigError(f"class counts must list at least two classes, got {counts!r}")
    unchanged, changed = class_weights_from_counts([values[0], values[1:].sum()])
    scale = unchanged + changed * (values.size - 1)
    return [unchanged / scale] + [changed / scale] * (values.size - 1)


def weighted_cross_entropy(logits: Tensor, target: Tensor, weight: Tensor | None = None,
                           ignore_index: int = IGNORE_INDEX,
                           reduction: str = "weighted_mean") -> Tensor:
    """Class-weighted cross-entropy of N×K×H×W logits against N×H×W class indices.

    See the module docstring for the two reductions. Returns 0 (with a gradient path) when
    every pixel is ignored.
    """
    if reduction not in REDUCTIONS:
        raise ConfigError(f"unknown reduction {reduction!r}; choose one of {', '.join(REDUCTIONS)}")
    log_p, valid, safe = target_log_likelihood(logits, target, ignore_index)
    per_pixel = -log_p
    if weight is None:
        pixel_weight = valid.to(per_pixel.dtype)
    else:
        pixel_weight = pixel_class_weight(weight.to(per_pixel), safe) * valid
    total = (per_pixel * pixel_weight).sum()
    denominator = pixel_weight.sum() if reduction == "weighted_mean" else valid.sum().to(per_pixel.dtype)
    # With no valid pixel both sums are zero and the loss is 0 (still differentiable).
    return total / denominator.clamp_min(1e-12)


def dice_loss(logits: Tensor, target: Tensor, ignore_index: int = IGNORE_INDEX,
              smooth: float = 1.0, changed_only: bool = True) -> Tensor:
    """Soft Dice loss over the batch.

    With `changed_only` (the default, like the official code's Dice), the foreground is
    "any change": the probability mass of every class but 0 against target > 0. Otherwise
    the Dice loss is averaged over all classes (one-vs-rest), which needs typed labels.
    """
    target = target.long()
    if not changed_only and logits.shape[1] > 2 and bool((target == UNTYPED_CHANGE).any()):
        raise ConfigError("per-class Dice needs typed labels; set loss.dice_changed_only=true "
                          "when some sets only say whether a pixel changed")
    valid = (target != ignore_index).unsqueeze(1).float()
    probs = logits.float().softmax(dim=1) * valid
    safe = torch.where(target == ignore_index, torch.zeros_like(target), target)
    if changed_only:
        pred = (1.0 - probs[:, 0:1]) * valid
        truth = (safe > 0).unsqueeze(1).float() * valid
    else:
        pred = probs
        truth = F.one_hot(safe, logits.shape[1]).permute(0, 3, 1, 2).float() * valid
    dims = (0, 2, 3)
    intersection = (pred * truth).sum(dims)
    cardinality = pred.sum(dims) + truth.sum(dims)
    score = (2.0 * intersection + smooth) / (cardinality + smooth)
    return 1.0 - score.mean()


def focal_loss(logits: Tensor, target: Tensor, weight: Tensor | None = None, gamma: float = 2.0,
               ignore_index: int = IGNORE_INDEX) -> Tensor:
    """Multi-class focal loss `−α_y (1 − p_y)^γ log p_y`, averaged over valid pixels.

    `weight` plays the part of α (per class); with `gamma = 0` and no weight it equals the
    plain cross-entropy.
    """
    log_p, valid, safe = target_log_likelihood(logits, target, ignore_index)
    loss = -((1.0 - log_p.exp()).clamp_min(0.0) ** gamma) * log_p
    if weight is not None:
        loss = loss * pixel_class_weight(weight.to(loss), safe)
    count = valid.sum()
    if count == 0:
        return (loss * 0.0).sum()
    return (loss * valid).sum() / count


@dataclass
class LossConfig:
    """Which loss terms to combine and how.

    `name` is one term or several joined by "+": `ce`, `dice`, `focal`, e.g. `ce+dice`.
    `class_weights`: "auto" (inverse frequency of every class in the training masks),
    "binary" (no change against any change, every change class with the change weight; for
    typed models), "none", or an explicit list with one weight per class. It weights `ce` and (as α) `focal`.
    """

    name: str = "ce"
    class_weights: str | list[float] = "auto"
    reduction: str = "weighted_mean"
    dice_weight: float = 1.0
    focal_weight: float = 1.0
    focal_gamma: float = 2.0
    dice_changed_only: bool = True
    ignore_index: int = IGNORE_INDEX

    def terms(self) -> list[str]:
        """The loss terms named by `name`, validated."""
        parts = [p.strip().lower() for p in str(self.name).split("+") if p.strip()]
        unknown = [p for p in parts if p not in LOSS_TERMS]
        if not parts or unknown:
            raise ConfigError(f"unknown loss {self.name!r}; combine {', '.join(LOSS_TERMS)} with '+' "
                              f"(e.g. ce+dice)")
        return parts

    def to_dict(self) -> dict[str, Any]:
        """The config as a plain dict."""
        return asdict(self)


class ChangeLoss(nn.Module):
    """A weighted sum of cross-entropy, Dice and focal terms (see `LossConfig`).

    Class weights live in a buffer so they move with the module and are saved with it.
    """

    def __init__(self, config: LossConfig, num_classes: int,
                 class_weights: Sequence[float] | None = None) -> None:
        super().__init__()
        self.config = config
        self.term_names = config.terms()
        if config.reduction not in REDUCTIONS:
            raise ConfigError(f"unknown loss reduction {config.reduction!r}; choose one of "
                              f"{', '.join(REDUCTIONS)}")
        self.num_classes = num_classes
        if class_weights is not None and len(class_weights) != num_classes:
            raise ConfigError(f"{len(class_weights)} class weights given for {num_classes} classes")
        weights = torch.tensor(list(class_weights) if class_weights is not None else [],
                               dtype=torch.float32)
        self.register_buffer("class_weights", weights, persistent=True)

    @property
    def weight(self) -> Tensor | None:
        """The class-weight tensor, or None when the loss is unweighted."""
        return self.class_weights if self.class_weights.numel() else None

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        """The combined loss of N×K×H×W logits against N×H×W targets (255 = ignore)."""
        cfg = self.config
        total = logits.new_zeros((), dtype=torch.float32)
        for name in self.term_names:
            if name == "ce":
                total = total + weighted_cross_entropy(logits, target, self.weight, cfg.ignore_index,
                                                       cfg.reduction)
            elif name == "dice":
                total = total + cfg.dice_weight * dice_loss(logits, target, cfg.ignore_index,
                                                            changed_only=cfg.dice_changed_only)
            else:
                total = total + cfg.focal_weight * focal_loss(logits, target, self.weight,
                                                              cfg.focal_gamma, cfg.ignore_index)
        return total


def resolve_class_weights(config: LossConfig, num_classes: int,
                          counts: Sequence[int] | np.ndarray | None) -> list[float] | None:
    """Turn `config.class_weights` into a concrete list (or None for an unweighted loss).

    "auto" and "binary" need `counts` (pixels per class of the training masks).
    """
    spec = config.class_weights
    if isinstance(spec, str):
        key = spec.strip().lower()
        if key in ("none", "off", ""):
            return None
        if key not in ("auto", "binary"):
            raise ConfigError(f"loss.class_weights must be 'auto', 'binary', 'none' or a list, "
                              f"got {spec!r}")
        if counts is None:
            raise ConfigError(f"loss.class_weights='{key}' needs the training masks' pixel counts")
        if key == "binary":
            return binary_class_weights_from_counts(counts)
        return class_weights_from_counts(counts)
    weights = [float(w) for w in spec]
    if len(weights) != num_classes:
        raise ConfigError(f"loss.class_weights has {len(weights)} values for {num_classes} classes")
    return weights
