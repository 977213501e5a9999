"""Domain calibrations: a model's probabilities re-calibrated for one kind of input.

A model's own calibration (folded into its classifier) is fitted on all its validation
sources at once, so that one threshold serves them all. On one domain its probabilities can
still be off in one direction: `default` gives a fixed camera's changes too little probability
(best-F1 threshold 0.11 there against its 0.39). A *domain calibration* is a temperature ``T``
and a no-change bias ``b`` fitted by NLL on that domain's validation pixels alone
(`tools/calibrate_model.py --domain NAME`), stored in the model's
``config.metadata["domains"][NAME]`` and applied on top of the model's probabilities when the
user says where a pair comes from (`--domain NAME`). The decision threshold stays the model's
own: a calibrated probability's best-F1 threshold lies near F1/2 whatever the domain.

``softmax(log p / T + b·e₀)`` equals ``softmax(z / T + b·e₀)`` for the network's logits ``z``
(``log p`` differs from ``z`` by one constant per pixel), so applying it to probabilities is
exact. Torch-free: `DomainCalibrated` wraps every backend and composes with the test-time views
(it applies to their averaged probabilities).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from changeseg.errors import InputError
from changeseg.inference.backend import predict_proba_stacked

__all__ = ["DomainCalibrated", "apply_domain_calibration", "check_model_domain", "domain_calibration",
           "model_domains"]

_FLOOR = np.float32(1e-12)  # keeps log() finite where a class has probability 0


def model_domains(backend: Any) -> dict[str, dict[str, Any]]:
    """The domain calibrations a backend's model records (``config.metadata["domains"]``), by name."""
    metadata = getattr(getattr(backend, "config", None), "metadata", None) or {}
    domains = metadata.get("domains") or {}
    return dict(domains) if isinstance(domains, dict) else {}


def check_model_domain(model: str, name: str) -> None:
    """InputError unless `model` (a packaged name or a model folder) records a calibration for
    domain `name`: checked from its config.json before any loading or exporting is done."""
    from types import SimpleNamespace

    from changeseg.io.checkpoints import CONFIG_FILE, model_folder, read_config

    folder = model_folder(model)
    config = read_config(folder) if folder is not None and (folder / CONFIG_FILE).is_file() else None
    domain_calibration(SimpleNamespace(config=config, name=model), name)


def domain_calibration(backend: Any, name: str) -> tuple[float, float]:
    """(temperature, no-change bias) of the model's calibration for domain `name`.

    InputError naming the domains the model has when it has no calibration for `name`, or when
    the recorded values are not a positive finite temperature and a finite bias.
    """
    domains = model_domains(backend)
    if name not in domains:
        model = getattr(backend, "name", None) or "this model"
        known = ", ".join(sorted(domains)) or "none"
        raise InputError(f"--domain {name}: {model} has no calibration for it (its domains: {known})")
    entry = domains[name]
    try:
        temperature, bias = float(entry["temperature"]), float(entry["no_change_bias"])
    except (KeyError, TypeError, ValueError):
        raise InputError(f"--domain {name}: the model's entry lacks a numeric temperature and "
                         "no_change_bias") from None
    if not (math.isfinite(temperature) and temperature > 0 and math.isfinite(bias)):
        raise InputError(f"--domain {name}: temperature {temperature} / bias {bias} are not usable")
    return temperature, bias


def apply_domain_calibration(probabilities: np.ndarray, temperature: float, no_change_bias: float,
                             axis: int = 0) -> np.ndarray:
    """Class probabilities (classes along `axis`) re-calibrated: ``softmax(log p / T + b·e₀)``, float32."""
    log_p = np.log(np.maximum(np.asarray(probabilities, np.float32), _FLOOR)) / np.float32(temperature)
    index = [slice(None)] * log_p.ndim
    index[axis] = 0
    log_p[tuple(index)] += np.float32(no_change_bias)
    log_p -= log_p.max(axis=axis, keepdims=True)
    exp = np.exp(log_p)
    return exp / exp.sum(axis=axis, keepdims=True)


class DomainCalibrated:
    """A backend whose probabilities carry the model's calibration for domain `domain`."""

    def __init__(self, backend: Any, domain: str) -> None:
        self.backend = backend
        self.domain = domain
        self.temperature, self.no_change_bias = domain_calibration(backend, domain)

    def __getattr__(self, name: str) -> Any:  # prepare, class_names, config, name, precision, ...
        return getattr(self.backend, name)

    def predict_proba(self, reference: np.ndarray, comparison: np.ndarray) -> np.ndarray:
        """Domain-calibrated class probabilities (K×H×W) of one prepared pair."""
        return self.predict_proba_batch(reference[None], comparison[None])[0]

    def predict_proba_batch(self, references: np.ndarray, comparisons: np.ndarray) -> np.ndarray:
        """Domain-calibrated class probabilities (N×K×H×W) of N prepared pairs of one size."""
        probabilities = predict_proba_stacked(self.backend, references, comparisons)
        return apply_domain_calibration(probabilities, self.temperature, self.no_change_bias, axis=1)
