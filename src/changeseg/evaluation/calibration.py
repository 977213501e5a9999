"""Calibrated change probabilities: a temperature and a no-change bias, folded into the network.

A trained change model's probabilities are far from calibrated: the class-weighted loss pushes
them towards "changed", so they sit near 1 wherever anything changed and the best-F1
threshold ends up at 0.97 or 0.99. The fix here works for every backend with no runtime code:

1. Sample validation pixels (`PixelSampler`: seeded, uniform over pixels, bounded memory)
   with the network's raw logits and a change / no-change target (labels 1..253 and 254,
   the untyped change of partly labelled typed sets, are change; 255 is ignored).
2. Fit a temperature ``T`` and optionally a bias ``b`` on the no-change logit by minimising
   the binary negative log-likelihood of the change probability (`fit_temperature`).
   Calibrated logits are ``z / T`` with ``b`` added to class 0 (`apply_to_logits`); the change
   probability is ``1 − softmax(...)[0]``, so ``b`` shifts the change log-odds by exactly
   ``−b`` for any number of classes, and ``T`` keeps the order of the change classes.
3. `calibrate` applies the rule (see its docstring) that also puts the best-F1 threshold
   inside a target range, and reports the expected calibration error before and after.
4. `fold_into_model` divides the final 1×1 classifier conv's weights and bias by ``T`` and
   adds ``b`` to its class-0 bias. The network ends with that conv and a bilinear upsampling
   (weights summing to 1), so the folded network's logits *are* the calibrated logits, and
   the torch predictor, the exported ONNX graph and the service all give calibrated
   probabilities unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from changeseg.errors import InputError
from changeseg.labels import IGNORE_INDEX

DEFAULT_MAX_PIXELS = 2_000_000
DEFAULT_BINS = 15
DEFAULT_THRESHOLD_RANGE = (0.3, 0.7)
DEFAULT_MARGIN = 0.02


def _grid(low: int, high: int) -> np.ndarray:
    """Thresholds low/100 .. high/100 in steps of 0.01, exact in decimal (0.35 is 0.35)."""
    return np.arange(low, high + 1) / 100.0


DECISION_THRESHOLDS = _grid(5, 95)
"""Where a calibrated model's decision threshold is chosen: 0.05 .. 0.95, step 0.01."""

REPORT_THRESHOLDS = _grid(1, 99)
"""A wider grid (0.01 .. 0.99) to report where an uncalibrated model's best threshold lies."""


@dataclass(frozen=True)
class Calibration:
    """Calibrated logits: divide all logits by `temperature`, then add `no_change_bias` to class 0."""

    temperature: float = 1.0
    no_change_bias: float = 0.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.temperature) and self.temperature > 0):
            raise InputError(f"temperature must be a positive finite number, got {self.temperature}")
        if not math.isfinite(self.no_change_bias):
            raise InputError(f"no_change_bias must be finite, got {self.no_change_bias}")

    def shifted(self, threshold: float, to: float) -> Calibration:
        """The same calibration with the bias moved so that change probability `threshold` becomes `to`.

        Adding ``d`` to the no-change logit lowers the change log-odds by exactly ``d``, so
        ``d = logit(threshold) − logit(to)`` maps every probability ``p`` to
        ``sigmoid(logit(p) − d)`` — a monotone relabelling that moves a best-F1 threshold
        from `threshold` to `to` and leaves every F1 value unchanged.
        """
        return Calibration(self.temperature, self.no_change_bias + _logit(threshold) - _logit(to))

    def inverted(self) -> Calibration:
        """The calibration that undoes this one: folding it after this one restores the raw logits.

        ``(z/T + b·e₀)·T − b·T·e₀ = z``, so the inverse has temperature ``1/T`` and no-change
        bias ``−b·T``. Used to take a packaged (calibrated) model back to its training logits,
        e.g. before averaging it with uncalibrated checkpoints.
        """
        return Calibration(1.0 / self.temperature, -self.no_change_bias * self.temperature)

    def to_dict(self) -> dict[str, float]:
        """``{"temperature": T, "no_change_bias": b}``."""
        return asdict(self)


def _logit(p: float) -> float:
    if not 0.0 < p < 1.0:
        raise InputError(f"a probability strictly between 0 and 1 is needed, got {p}")
    return math.log(p) - math.log1p(-p)


def _as_tensor(values: Any, dtype: torch.dtype = torch.float64) -> Tensor:
    if isinstance(values, Tensor):
        return values.detach().to("cpu", dtype)
    return torch.as_tensor(np.asarray(values), dtype=dtype)


def change_target(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(valid, changed) boolean masks from class-index labels.

    255 is ignored; 0 is no change; every other value (1..3 for typed labels, 1 for binary
    ones, 254 for a change of unknown type) is change.
    """
    mask = np.asarray(mask)
    valid = mask != IGNORE_INDEX
    return valid, valid & (mask != 0)


def apply_to_logits(logits: Any, calibration: Calibration, dim: int = 1) -> Any:
    """Calibrated logits: ``logits / T`` with ``no_change_bias`` added to class 0 along `dim`.

    Takes a tensor or a numpy array (class axis `dim`, 1 for N×K×H×W, 0 for K×H×W, -1 for
    N×K sampled pixels) and returns the same type.
    """
    ndim = logits.dim() if isinstance(logits, Tensor) else np.ndim(logits)
    classes = logits.shape[dim]
    shape = [1] * ndim
    shape[dim] = classes
    offset = np.zeros(classes)
    offset[0] = calibration.no_change_bias
    if isinstance(logits, Tensor):
        return logits / calibration.temperature + torch.as_tensor(offset, dtype=logits.dtype,
                                                                  device=logits.device).view(shape)
    array = np.asarray(logits)
    return array / calibration.temperature + offset.reshape(shape).astype(array.dtype)


def change_log_odds(logits: Any, calibration: Calibration | None = None) -> Tensor:
    """Log-odds of change, ``log Σ_{k≥1} e^{z_k} − z_0``, of N×K pixel logits (float64 tensor, N).

    With `calibration`, of the calibrated logits. For two classes it is ``z_1 − z_0``.
    """
    z = _as_tensor(logits)
    if z.dim() != 2 or z.shape[1] < 2:
        raise InputError(f"expected N×K pixel logits with K ≥ 2, got shape {tuple(z.shape)}")
    if calibration is not None:
        z = apply_to_logits(z, calibration, dim=1)
    if z.shape[1] == 2:
        return z[:, 1] - z[:, 0]
    return torch.logsumexp(z[:, 1:], dim=1) - z[:, 0]


def change_probability(logits: Any, calibration: Calibration | None = None) -> np.ndarray:
    """Change probability ``1 − p(no change)`` of N×K pixel logits (float64 array, N)."""
    return torch.sigmoid(change_log_odds(logits, calibration)).numpy()


def reliability(prob: Any, target: Any, bins: int = DEFAULT_BINS) -> dict[str, list[float]]:
    """Reliability table over `bins` equal-width bins of the change probability.

    Returns per bin its lower edge, pixel count, mean predicted probability and observed
    change frequency (None-free: empty bins have count 0 and mean values 0).
    """
    p = np.asarray(prob, np.float64).ravel()
    y = np.asarray(target).ravel().astype(np.float64)
    if p.shape != y.shape:
        raise InputError(f"prob and target must have the same number of values, got {p.size} and {y.size}")
    if bins < 1:
        raise InputError(f"bins must be at least 1, got {bins}")
    index = np.clip((p * bins).astype(np.int64), 0, bins - 1)  # p = 1 falls in the last bin
    count = np.bincount(index, minlength=bins).astype(np.float64)
    sum_p = np.bincount(index, weights=p, minlength=bins)
    sum_y = np.bincount(index, weights=y, minlength=bins)
    nonzero = np.maximum(count, 1)
    return {"lower": (np.arange(bins) / bins).tolist(), "count": count.tolist(),
            "mean_probability": (sum_p / nonzero).tolist(), "frequency": (sum_y / nonzero).tolist()}


def expected_calibration_error(prob: Any, target: Any, bins: int = DEFAULT_BINS) -> float:
    """Expected calibration error of change probabilities against 0/1 targets.

    `bins` equal-width bins over the change probability in [0, 1]; each bin contributes
    ``|mean probability − observed change frequency|`` weighted by its share of the pixels.
    """
    table = reliability(prob, target, bins)
    count = np.asarray(table["count"])
    total = count.sum()
    if total == 0:
        raise InputError("expected_calibration_error needs at least one pixel")
    gap = np.abs(np.asarray(table["mean_probability"]) - np.asarray(table["frequency"]))
    return float((count * gap).sum() / total)


def f1_curve(prob: Any, target: Any, thresholds: Sequence[float] | np.ndarray = DECISION_THRESHOLDS
             ) -> np.ndarray:
    """Pixel F1 of the prediction ``prob >= t`` at every threshold `t` (pooled counts)."""
    p = np.asarray(prob, np.float64).ravel()
    y = np.asarray(target).ravel().astype(bool)
    grid = np.asarray(thresholds, np.float64)
    positives = np.sort(p[y])
    negatives = np.sort(p[~y])
    tp = positives.size - np.searchsorted(positives, grid, side="left")
    fp = negatives.size - np.searchsorted(negatives, grid, side="left")
    fn = positives.size - tp
    denom = 2 * tp + fp + fn
    return np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 0.0)


def best_f1_threshold(prob: Any, target: Any,
                      thresholds: Sequence[float] | np.ndarray = DECISION_THRESHOLDS,
                      prefer: float = 0.5) -> tuple[float, float]:
    """(threshold, F1) of the threshold on `thresholds` whose prediction ``prob >= t`` has the best F1.

    F1 is computed from pixel counts pooled over all of `prob` (the ``global`` protocol).
    Among thresholds that tie for the best F1 the one nearest `prefer` is taken.
    """
    grid = np.asarray(thresholds, np.float64)
    if grid.size == 0:
        raise InputError("best_f1_threshold needs at least one threshold")
    f1 = f1_curve(prob, target, grid)
    ties = np.flatnonzero(np.isclose(f1, f1.max(), rtol=0, atol=1e-12))
    best = int(ties[np.argmin(np.abs(grid[ties] - prefer))])
    return float(grid[best]), float(f1[best])


def binary_nll(logits: Any, target: Any, calibration: Calibration | None = None) -> float:
    """Mean binary negative log-likelihood of the change probability (nats per pixel)."""
    odds = change_log_odds(logits, calibration)
    y = _as_tensor(target)
    return float(nn.functional.binary_cross_entropy_with_logits(odds, y))


def fit_temperature(logits: Any, targets: Any, fit_bias: bool = False, max_iter: int = 200,
                    initial: Calibration | None = None) -> Calibration:
    """Fit a temperature (and, with `fit_bias`, a no-change bias) by binary NLL on sampled pixels.

    `logits` are N×K raw network logits of N pixels (class 0 = no change), `targets` N
    booleans (change or not). Minimises the mean binary cross-entropy of the calibrated
    change probability over ``log T`` (and ``b``) with L-BFGS in float64. The fit needs
    both changed and unchanged pixels.
    """
    z = _as_tensor(logits)
    y = _as_tensor(targets).reshape(-1)
    if z.dim() != 2 or z.shape[0] != y.shape[0] or z.shape[1] < 2:
        raise InputError(f"fit_temperature needs N×K logits and N targets, got {tuple(z.shape)} "
                         f"and {tuple(y.shape)}")
    positives = int(y.sum())
    if positives == 0 or positives == y.numel():
        raise InputError("fit_temperature needs both changed and unchanged pixels")
    start = initial or Calibration()
    log_t = torch.tensor(math.log(start.temperature), dtype=torch.float64, requires_grad=True)
    bias = torch.tensor(start.no_change_bias, dtype=torch.float64, requires_grad=fit_bias)
    params = [log_t, bias] if fit_bias else [log_t]
    optimizer = torch.optim.LBFGS(params, lr=1.0, max_iter=max_iter, tolerance_grad=1e-9,
                                  tolerance_change=1e-12, line_search_fn="strong_wolfe")

    def odds() -> Tensor:
        scaled = z / torch.exp(log_t)
        change = scaled[:, 1] if z.shape[1] == 2 else torch.logsumexp(scaled[:, 1:], dim=1)
        return change - scaled[:, 0] - bias

    def closure() -> Tensor:
        optimizer.zero_grad()
        loss = nn.functional.binary_cross_entropy_with_logits(odds(), y)
        loss.backward()
        return loss

    optimizer.step(closure)
    temperature, shift = float(torch.exp(log_t.detach())), float(bias.detach())
    if not (math.isfinite(temperature) and math.isfinite(shift)):
        raise InputError("fit_temperature did not converge (non-finite result)")
    return Calibration(temperature, shift)


def calibration_scores(logits: Any, targets: Any, calibration: Calibration | None = None,
                       thresholds: Sequence[float] | np.ndarray = DECISION_THRESHOLDS,
                       bins: int = DEFAULT_BINS) -> dict[str, float]:
    """ECE, NLL, best-F1 threshold and its F1 of (calibrated) pixel logits."""
    prob = change_probability(logits, calibration)
    y = np.asarray(_as_tensor(targets).numpy()).astype(bool)
    threshold, f1 = best_f1_threshold(prob, y, thresholds)
    return {"ece": expected_calibration_error(prob, y, bins), "nll": binary_nll(logits, y, calibration),
            "best_f1_threshold": threshold, "f1": f1}


def map_threshold(threshold: float, calibration: Calibration) -> float:
    """The calibrated change probability of a pixel whose raw change probability is `threshold`.

    Exact for two-class models (calibrated log-odds are ``raw log-odds / T − b``), so
    ``prob >= threshold`` before and ``calibrated prob >= map_threshold(...)`` after select
    the same pixels. For typed models it is exact for ``T = 1`` and close otherwise.
    """
    odds = _logit(threshold) / calibration.temperature - calibration.no_change_bias
    return 1.0 / (1.0 + math.exp(-odds))


def calibrate(logits: Any, targets: Any, threshold_range: tuple[float, float] = DEFAULT_THRESHOLD_RANGE,
              fit_bias: bool = True, margin: float = DEFAULT_MARGIN, bins: int = DEFAULT_BINS,
              keep_threshold: float | None = None) -> tuple[Calibration, dict[str, Any]]:
    """The calibration rule: fit by NLL, then make sure the decision threshold is in `threshold_range`.

    1. Fit ``T`` (and ``b`` when `fit_bias`, the default: Platt scaling of the change
       log-odds) by binary NLL on the sampled validation pixels.
    2. The decision threshold: the best-F1 threshold of the calibrated probabilities on
       0.05 .. 0.95 or, with `keep_threshold` (a raw-probability threshold chosen for another
       protocol, e.g. box F-score), that threshold mapped through the calibration
       (`map_threshold`), which keeps the model's decisions.
    3. If it lies outside `threshold_range`, shift ``b`` so that it moves to the nearer end
       of the range, `margin` inside it (`Calibration.shifted`, an exact monotone relabelling
       of the change probability: every F1 value is kept). The smallest shift keeps the
       probabilities as close to the NLL fit as the range allows (a calibrated model's
       best-F1 threshold is about half its best F1, so a weak model's sits below 0.3); the
       margin keeps the threshold inside the range when it is re-chosen on other pixels of
       the same pairs. The best-F1 threshold is then re-taken on the grid.

    Returns the calibration and a report: ``before`` (raw logits; best threshold on
    0.01 .. 0.99), ``fit`` (after step 1) and ``after`` (final) scores, each with ``ece``,
    ``nll``, ``best_f1_threshold`` and ``f1``; ``threshold`` (the decision threshold to
    store: ``after["best_f1_threshold"]``, or the mapped `keep_threshold`); ``shifted``
    (whether step 3 moved ``b``); and the reliability tables before and after.
    """
    low, high = threshold_range
    if not 0.0 < low <= high < 1.0:
        raise InputError(f"threshold range must satisfy 0 < low <= high < 1, got {threshold_range}")
    margin = min(max(margin, 0.0), (high - low) / 2)
    y = np.asarray(_as_tensor(targets).numpy()).astype(bool)
    before = calibration_scores(logits, y, None, REPORT_THRESHOLDS, bins)
    fitted = fit_temperature(logits, y, fit_bias=fit_bias)
    fit_scores = calibration_scores(logits, y, fitted, DECISION_THRESHOLDS, bins)
    chosen, shifted = fitted, False
    threshold = (fit_scores["best_f1_threshold"] if keep_threshold is None
                 else map_threshold(keep_threshold, fitted))
    if not low <= threshold <= high:
        chosen = fitted.shifted(threshold, min(max(threshold, low + margin), high - margin))
        shifted = True
    after = calibration_scores(logits, y, chosen, DECISION_THRESHOLDS, bins)
    decision = (after["best_f1_threshold"] if keep_threshold is None
                else round(map_threshold(keep_threshold, chosen), 6))
    report = {
        "before": before, "fit": {**fitted.to_dict(), **fit_scores}, "after": after,
        "threshold": decision, "kept_threshold": keep_threshold,
        "shifted": shifted, "threshold_range": [low, high], "margin": margin, "fit_bias": fit_bias,
        "bins": bins,
        "reliability_before": reliability(change_probability(logits), y, bins),
        "reliability_after": reliability(change_probability(logits, chosen), y, bins),
    }
    return chosen, report


def fit_domain(logits: Any, targets: Any, threshold: float, bins: int = DEFAULT_BINS
               ) -> tuple[Calibration, dict[str, Any]]:
    """A domain calibration: ``T`` and a no-change bias fitted by binary NLL on one domain's pixels.

    `logits` are the model's own (already calibrated) logits of that domain's validation
    pixels; the result goes on top of them (`changeseg.inference.domains`). Unlike `calibrate`
    nothing is moved into a range: the model keeps its decision `threshold` for every domain,
    and a calibrated probability's best-F1 threshold lies near half the best F1, so the fit
    alone brings the domain's best threshold to the model's when the two F1s are alike.
    Returns the calibration and a report: ``before`` and ``after`` scores (``ece``, ``nll``,
    ``best_f1_threshold``, ``f1`` and ``f1_at_threshold``, the F1 of ``prob >= threshold``),
    ``threshold`` and the reliability tables before and after.
    """
    y = np.asarray(_as_tensor(targets).numpy()).astype(bool)
    fitted = fit_temperature(logits, y, fit_bias=True)
    report: dict[str, Any] = {"threshold": threshold, "bins": bins}
    for key, calibration in (("before", None), ("after", fitted)):
        scores = calibration_scores(logits, y, calibration, REPORT_THRESHOLDS, bins)
        prob = change_probability(logits, calibration)
        scores["f1_at_threshold"] = float(f1_curve(prob, y, [threshold])[0])
        report[key] = scores
        report[f"reliability_{key}"] = reliability(prob, y, bins)
    return fitted, report


class PixelSampler:
    """A seeded, uniform, bounded sample of validation pixels: their logits and change targets.

    Every valid pixel added is kept with the same probability (`rate`), so the sample is
    pixel-weighted over all pairs however their sizes differ. When the sample grows past
    `max_pixels` it is thinned uniformly and the rate lowered for the pixels still to come.
    """

    def __init__(self, max_pixels: int = DEFAULT_MAX_PIXELS, seed: int = 0) -> None:
        if max_pixels < 1:
            raise InputError(f"max_pixels must be at least 1, got {max_pixels}")
        self.max_pixels = int(max_pixels)
        self.rng = np.random.default_rng(seed)
        self.rate = 1.0
        self.seen = 0
        self.pairs = 0
        self._logits: list[np.ndarray] = []
        self._targets: list[np.ndarray] = []

    def __len__(self) -> int:
        return sum(t.size for t in self._targets)

    def add(self, logits: Any, mask: np.ndarray) -> None:
        """Add one pair: K×H×W raw logits (array or tensor) and its H×W label mask."""
        if isinstance(logits, Tensor):
            logits = logits.detach().float().cpu().numpy()
        logits = np.asarray(logits, np.float32)
        mask = np.asarray(mask)
        if logits.ndim != 3 or logits.shape[1:] != mask.shape:
            raise InputError(f"logits {logits.shape} do not match the mask {mask.shape} (K×H×W and H×W)")
        valid, changed = change_target(mask)
        flat = valid.ravel()
        z = logits.reshape(logits.shape[0], -1)[:, flat].T
        y = changed.ravel()[flat]
        self.seen += int(y.size)
        self.pairs += 1
        if self.rate < 1.0:
            keep = self.rng.random(y.size) < self.rate
            z, y = z[keep], y[keep]
        self._logits.append(np.ascontiguousarray(z))
        self._targets.append(y)
        size = len(self)
        if size > self.max_pixels:
            factor = self.max_pixels / size
            for i, (chunk_z, chunk_y) in enumerate(zip(self._logits, self._targets)):
                keep = self.rng.random(chunk_y.size) < factor
                self._logits[i], self._targets[i] = chunk_z[keep], chunk_y[keep]
            self.rate *= factor

    @property
    def logits(self) -> np.ndarray:
        """N×K float32 logits of the sampled pixels."""
        if not self._logits:
            raise InputError("no pixels sampled yet")
        return np.concatenate(self._logits)

    @property
    def targets(self) -> np.ndarray:
        """N booleans: whether each sampled pixel changed."""
        if not self._targets:
            raise InputError("no pixels sampled yet")
        return np.concatenate(self._targets)


def balanced_sample(samplers: Sequence[PixelSampler], per_source: int, seed: int = 0
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Logits and targets with the same number of pixels (`per_source`) from each sampler.

    For a calibration that weighs every validation source alike instead of by pixel count:
    a source with fewer sampled pixels is drawn with replacement, one with more without.
    Samplers that saw no pixels are left out.
    """
    if per_source < 1:
        raise InputError(f"per_source must be at least 1, got {per_source}")
    rng = np.random.default_rng(seed)
    logits, targets = [], []
    for sampler in samplers:
        if len(sampler) == 0:
            continue
        z, y = sampler.logits, sampler.targets
        index = rng.choice(y.size, per_source, replace=y.size < per_source)
        logits.append(z[index])
        targets.append(y[index])
    if not targets:
        raise InputError("no pixels sampled yet")
    return np.concatenate(logits), np.concatenate(targets)


def classifier_conv(model: nn.Module) -> nn.Conv2d:
    """The network's final classifier: the last module of `model.head`, a 1×1 conv to the classes.

    Both torchvision heads (FCN, DeepLabv3) are `nn.Sequential`s ending with it; after it the
    network only upsamples bilinearly, which is why folding a calibration into it is exact.
    """
    head = getattr(model, "head", None)
    if not isinstance(head, nn.Sequential) or len(head) == 0:
        raise InputError("model has no nn.Sequential `head` whose last module is the classifier")
    conv = head[-1]
    if not isinstance(conv, nn.Conv2d) or conv.kernel_size != (1, 1) or conv.groups != 1:
        raise InputError(f"the head's last module is {type(conv).__name__}, not a 1×1 Conv2d classifier")
    return conv


def fold_into_model(model: nn.Module, calibration: Calibration) -> nn.Module:
    """Fold `calibration` into the classifier conv in place; returns `model`.

    Weights and bias are divided by the temperature and the no-change bias is added to the
    class-0 bias, so ``model(x)`` afterwards equals ``apply_to_logits(old_model(x))``. An
    ensemble's calibration goes into each member's classifier.

    A detail refinement (`model.refine`, changeseg.models.refine) adds its residual to the
    logits and reads the coarse logits: its output conv is divided by the temperature too, and
    its first conv is given back what it read before (weights on the logit channels times the
    temperature; the no-change bias, a constant there, taken out again by its BatchNorm's mean).
    """
    members = getattr(model, "members", None)
    # An ensemble (changeseg.models.ensemble) averages its members' logits, so folding the same
    # calibration into every member calibrates the mean exactly.
    for network in (members if isinstance(members, nn.ModuleList) else [model]):
        conv = classifier_conv(network)
        if conv.bias is None:
            raise InputError("the classifier conv has no bias to take the no-change bias")
        temperature, bias = calibration.temperature, calibration.no_change_bias
        with torch.no_grad():
            conv.weight.div_(temperature)
            conv.bias.div_(temperature)
            conv.bias[0] += bias
        refine = getattr(network, "refine", None)
        if refine is not None:
            refine.fold_calibration(temperature, bias)
    return model
