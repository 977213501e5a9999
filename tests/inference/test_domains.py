"""Tests of domain calibrations (changeseg.inference.domains) and their fit (evaluation.calibration)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from changeseg.errors import InputError
from changeseg.evaluation.calibration import Calibration, apply_to_logits, best_f1_threshold, fit_domain
from changeseg.inference.domains import (
    DomainCalibrated,
    apply_domain_calibration,
    domain_calibration,
    model_domains,
)
from changeseg.inference.multiscale import MultiScale, TestViews, views_of, with_views


class FixedLogits:
    """A 4-class backend whose probabilities are the softmax of seeded logits of the pair's size."""

    class_names = ["unchanged", "appear", "disappear", "exchange"]

    def __init__(self, domains: dict | None = None, seed: int = 0) -> None:
        self.config = SimpleNamespace(threshold=0.39, metadata={"domains": domains} if domains else {})
        self.seed = seed
        self.name = "fixed-logits"

    def logits(self, height: int, width: int) -> np.ndarray:
        return np.random.default_rng(self.seed).normal(0, 3, (4, height, width)).astype(np.float32)

    def predict_proba(self, reference: np.ndarray, comparison: np.ndarray) -> np.ndarray:
        return torch.softmax(torch.from_numpy(self.logits(*reference.shape[:2])), 0).numpy()


FIXED = {"fixed-camera": {"temperature": 0.8, "no_change_bias": -1.5}}


def test_applied_to_probabilities_it_equals_the_calibration_of_the_logits() -> None:
    backend = FixedLogits(FIXED)
    image = np.zeros((8, 12, 3), np.uint8)
    calibrated = DomainCalibrated(backend, "fixed-camera").predict_proba(image, image)
    expected = torch.softmax(torch.from_numpy(apply_to_logits(backend.logits(8, 12), Calibration(0.8, -1.5),
                                                              dim=0)), 0).numpy()
    np.testing.assert_allclose(calibrated, expected, atol=1e-5)
    assert calibrated.dtype == np.float32
    np.testing.assert_allclose(calibrated.sum(0), 1.0, atol=1e-5)
    # a negative no-change bias gives change more probability everywhere
    plain = backend.predict_proba(image, image)
    assert (calibrated[0] <= plain[0] + 1e-6).all() and (calibrated[0] < plain[0]).mean() > 0.99


def test_zero_probabilities_stay_finite() -> None:
    probabilities = np.array([[1.0, 0.0], [0.0, 1.0]], np.float32).reshape(2, 1, 2)
    out = apply_domain_calibration(probabilities, 0.5, 2.0)
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out.sum(0), 1.0, atol=1e-6)
    assert out[0, 0, 0] > 0.999 and out[1, 0, 1] > 0.999  # certainties stay certain


def test_unknown_or_broken_domains_are_one_clear_error() -> None:
    assert model_domains(FixedLogits()) == {}
    with pytest.raises(InputError, match=r"fixed-logits has no calibration for it \(its domains: none\)"):
        DomainCalibrated(FixedLogits(), "fixed-camera")
    with pytest.raises(InputError, match=r"its domains: fixed-camera"):
        domain_calibration(FixedLogits(FIXED), "street")
    with pytest.raises(InputError, match="numeric temperature"):
        domain_calibration(FixedLogits({"x": {"temperature": 1.0}}), "x")
    with pytest.raises(InputError, match="not usable"):
        domain_calibration(FixedLogits({"x": {"temperature": 0.0, "no_change_bias": 0.0}}), "x")


def test_views_carry_the_domain_outermost_and_describe_it() -> None:
    backend = FixedLogits(FIXED)
    wrapped = with_views(backend, tta=True, scales=(1, 2), domain="fixed-camera")
    assert isinstance(wrapped, DomainCalibrated) and isinstance(wrapped.backend, MultiScale)
    assert views_of(wrapped) == TestViews(True, (1.0, 2.0), "fixed-camera")
    assert views_of(wrapped).describe() == ", tta, scales 1,2, domain fixed-camera"
    assert wrapped.class_names == backend.class_names and wrapped.config is backend.config
    assert views_of(with_views(backend)) == TestViews(False, (1.0,), None)
    image = np.zeros((8, 8, 3), np.uint8)
    batch = wrapped.predict_proba_batch(np.stack([image, image]), np.stack([image, image]))
    np.testing.assert_allclose(batch[0], wrapped.predict_proba(image, image), atol=1e-6)


def test_fit_domain_brings_an_under_confident_domain_to_the_model_threshold() -> None:
    """Pixels whose change log-odds are 2 too low (a model that under-marks a domain): the fit's
    bias gives them back, so the best-F1 threshold moves up to where F1/2 puts it and the F1 at
    the model's own threshold rises to the best."""
    rng = np.random.default_rng(0)
    true_odds = rng.normal(-3.0, 3.0, 40_000)
    changed = rng.random(true_odds.size) < 1 / (1 + np.exp(-true_odds))  # calibrated by construction
    logits = np.stack([np.zeros_like(true_odds), true_odds - 2.0], 1)  # 2 classes, odds 2 too low
    calibration, report = fit_domain(logits, changed, threshold=0.39)
    assert calibration.no_change_bias == pytest.approx(-2.0, abs=0.2)
    assert calibration.temperature == pytest.approx(1.0, abs=0.1)
    before, after = report["before"], report["after"]
    assert before["best_f1_threshold"] < 0.25 < after["best_f1_threshold"]
    assert after["ece"] < before["ece"] / 3
    assert after["f1_at_threshold"] > before["f1_at_threshold"] + 0.02
    assert after["f1_at_threshold"] == pytest.approx(after["f1"], abs=0.01)
    # the fitted calibration, applied as the inference wrapper applies it, reproduces the report
    probabilities = torch.softmax(torch.from_numpy(logits.T.reshape(2, 1, -1).copy()), 0).numpy()
    applied = apply_domain_calibration(probabilities, calibration.temperature, calibration.no_change_bias)
    _, f1 = best_f1_threshold(applied[1].ravel(), changed)
    assert f1 == pytest.approx(after["f1"], abs=1e-3)


def test_a_models_domains_are_checked_from_its_config_before_loading(tiny_with_domain,
                                                                    tiny_checkpoint) -> None:
    from changeseg.inference.domains import check_model_domain

    check_model_domain(str(tiny_with_domain), "fixed-camera")
    check_model_domain("default", "fixed-camera")  # the packaged default ships one
    with pytest.raises(InputError, match=r"its domains: none"):
        check_model_domain(str(tiny_checkpoint), "fixed-camera")
    with pytest.raises(InputError, match=r"pcb has no calibration"):
        check_model_domain("pcb", "fixed-camera")
    with pytest.raises(InputError, match=r"its domains: none"):
        check_model_domain("c3po-mobilenetv2-fcn", "fixed-camera")  # a preset: no config at all
