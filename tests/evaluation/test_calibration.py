"""Calibration: ECE, temperature / bias fitting, folding into the classifier, best-F1 threshold."""

from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from changeseg.errors import InputError
from changeseg.evaluation.calibration import (
    Calibration,
    PixelSampler,
    apply_to_logits,
    balanced_sample,
    best_f1_threshold,
    calibrate,
    change_probability,
    change_target,
    expected_calibration_error,
    fit_temperature,
    fold_into_model,
    map_threshold,
)
from changeseg.models import build_model

TOOL = Path(__file__).resolve().parents[2] / "tools" / "calibrate_model.py"


def sampled_logits(n: int = 200_000, classes: int = 2, seed: int = 0, bias: float = 0.0
                   ) -> tuple[np.ndarray, np.ndarray]:
    """True logits N×K and targets drawn from their change probability (shifted by -bias)."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0.0, 2.0, size=(n, classes))
    probability = change_probability(logits, Calibration(1.0, bias))
    return logits, rng.random(n) < probability


def test_ece_is_near_zero_for_calibrated_and_large_for_overconfident_probabilities(rng):
    prob = rng.random(500_000)
    target = rng.random(prob.size) < prob
    assert expected_calibration_error(prob, target) < 0.005
    odds = np.log(prob) - np.log1p(-prob)
    overconfident = 1.0 / (1.0 + np.exp(-4.0 * odds))
    assert expected_calibration_error(overconfident, target) > 0.1


def test_ece_of_a_constructed_case_is_exact():
    # bin [0.8, 0.867): mean 0.8, frequency 0.5 → gap 0.3 on half the pixels; bin of 0.1 exact
    prob = np.array([0.8, 0.8, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1])
    target = np.array([1, 0, 0, 0, 0, 0, 0, 0, 0, 0], bool)
    # 8 pixels at 0.1 with frequency 0 → gap 0.1; 2 pixels at 0.8 with frequency 0.5 → gap 0.3
    assert expected_calibration_error(prob, target) == pytest.approx((8 * 0.1 + 2 * 0.3) / 10)


@pytest.mark.parametrize("classes", [2, 4])
def test_fit_temperature_recovers_a_known_temperature(classes):
    logits, target = sampled_logits(classes=classes)
    fitted = fit_temperature(logits * 3.0, target)
    assert fitted.temperature == pytest.approx(3.0, rel=0.1)
    assert fitted.no_change_bias == 0.0


def test_fit_with_bias_recovers_temperature_and_bias():
    logits, target = sampled_logits(classes=4, bias=1.5, seed=1)
    fitted = fit_temperature(logits * 0.5, target, fit_bias=True)
    assert fitted.temperature == pytest.approx(0.5, rel=0.1)
    assert fitted.no_change_bias == pytest.approx(1.5, abs=0.15)


def test_fit_temperature_needs_both_classes():
    logits, _ = sampled_logits(n=100)
    with pytest.raises(InputError):
        fit_temperature(logits, np.ones(100, bool))


def test_bias_shift_moves_the_threshold_exactly():
    logits, _ = sampled_logits(n=1000, classes=4)
    shifted = Calibration(2.0).shifted(0.9, 0.5)
    base = change_probability(logits, Calibration(2.0))
    moved = change_probability(logits, shifted)
    # a pixel at 0.9 before sits at 0.5 after; the order of pixels is kept
    odds = np.log(base) - np.log1p(-base)
    assert np.allclose(moved, 1.0 / (1.0 + np.exp(-(odds - np.log(9.0)))))
    assert (np.argsort(moved) == np.argsort(base)).all()


@pytest.mark.parametrize("head,classes,refine,networks", [
    ("fcn", 4, "none", 1), ("deeplabv3", 2, "none", 1), ("fcn", 4, "stride2", 1),
    ("fcn", 2, "none", 2)])  # an ensemble (changeseg.models.ensemble): into every member
def test_folding_into_the_model_gives_the_calibrated_logits(head, classes, refine, networks):
    from changeseg.models.ensemble import build_network
    from changeseg.models.model import ModelConfig

    torch.manual_seed(0)
    model = build_network(ModelConfig(fpn_channels=16, head=head, num_classes=classes, refine=refine,
                                      ensemble=networks))
    if getattr(model, "refine", None) is not None:  # trained: non-zero residual, moved BatchNorm mean
        torch.nn.init.normal_(model.refine.out.weight, std=0.3)
        model.refine.body[1].running_mean.normal_()
    model.eval()
    generator = torch.Generator().manual_seed(3)
    reference, comparison = (torch.randn(1, 3, 70, 90, generator=generator) for _ in range(2))
    calibration = Calibration(temperature=2.5, no_change_bias=0.7)
    with torch.no_grad():
        expected = apply_to_logits(model(reference, comparison), calibration)
        fold_into_model(model, calibration)
        folded = model(reference, comparison)
    assert torch.allclose(folded, expected, atol=1e-5, rtol=1e-5)
    assert torch.allclose(folded.softmax(1), expected.softmax(1), atol=1e-6)


@pytest.mark.parametrize("refine", ["none", "stride2"])
def test_folding_the_inverted_calibration_restores_the_raw_logits(refine):
    torch.manual_seed(0)
    model = build_model(fpn_channels=16, num_classes=2, refine=refine)
    if model.refine is not None:
        torch.nn.init.normal_(model.refine.out.weight, std=0.3)
        model.refine.body[1].running_mean.normal_()
    model.eval()
    generator = torch.Generator().manual_seed(4)
    reference, comparison = (torch.randn(1, 3, 64, 64, generator=generator) for _ in range(2))
    calibration = Calibration(temperature=1.7, no_change_bias=-0.9)
    with torch.no_grad():
        raw = model(reference, comparison)
        fold_into_model(model, calibration)
        assert not torch.allclose(model(reference, comparison), raw, atol=1e-3)
        fold_into_model(model, calibration.inverted())
        restored = model(reference, comparison)
    assert torch.allclose(restored, raw, atol=1e-5, rtol=1e-5)
    twice = calibration.inverted().inverted()
    assert (twice.temperature, twice.no_change_bias) == pytest.approx((1.7, -0.9))


def test_best_f1_threshold_of_a_constructed_case():
    # 10 changed pixels at 0.62; 10 unchanged at 0.40 and 2 at 0.70:
    # t <= 0.40: F1 20/32; 0.40 < t <= 0.62: F1 20/22; t > 0.62: F1 0
    prob = np.array([0.62] * 10 + [0.40] * 10 + [0.70] * 2)
    target = np.array([True] * 10 + [False] * 12)
    threshold, f1 = best_f1_threshold(prob, target)
    assert f1 == pytest.approx(20 / 22)
    assert threshold == 0.5  # the tie nearest 0.5 within [0.41, 0.62]
    threshold, _ = best_f1_threshold(prob, target, prefer=0.0)
    assert threshold == 0.41
    threshold, f1 = best_f1_threshold(prob, target, thresholds=[0.3, 0.65])
    assert (threshold, f1) == (0.3, pytest.approx(20 / 32))


def test_calibrate_puts_an_overconfident_models_threshold_in_range():
    # a model trained with a heavy change weight: logits scaled ×4 and pushed towards change
    logits, target = sampled_logits(classes=2, bias=2.0, seed=2)
    raw = logits * 4.0
    raw[:, 1] -= 4.0  # calibrated odds d - 2 read as 4 (d - 2) + 4: best threshold near 0.9
    calibration, report = calibrate(raw, target)
    assert report["before"]["best_f1_threshold"] > 0.8
    assert 0.3 <= report["after"]["best_f1_threshold"] <= 0.7
    assert report["after"]["ece"] < report["before"]["ece"] / 3
    assert report["after"]["f1"] == pytest.approx(report["before"]["f1"], abs=0.01)
    assert calibration.temperature == pytest.approx(4.0, rel=0.1)


def test_calibrate_shifts_the_bias_when_the_fit_leaves_the_threshold_outside_the_range():
    logits, target = sampled_logits(classes=2, bias=2.0, seed=2)  # rare change, low best threshold
    calibration, report = calibrate(logits, target, threshold_range=(0.45, 0.7), margin=0.02)
    assert report["fit"]["best_f1_threshold"] < 0.45
    assert report["shifted"]
    assert 0.46 <= report["after"]["best_f1_threshold"] <= 0.48  # the nearer end, 0.02 inside
    assert calibration.no_change_bias < report["fit"]["no_change_bias"]


def test_pixel_sampler_is_seeded_uniform_and_bounded():
    rng = np.random.default_rng(0)
    masks = [rng.integers(0, 2, size=(50, 60)).astype(np.uint8) for _ in range(6)]
    masks[0][:5] = 255  # ignored
    masks[1][:, :3] = 254  # untyped change
    logits = [rng.normal(size=(4, 50, 60)).astype(np.float32) for _ in range(6)]
    samplers = [PixelSampler(max_pixels=4000, seed=5) for _ in range(2)]
    for sampler in samplers:
        for z, m in zip(logits, masks):
            sampler.add(z, m)
    first, second = samplers
    assert len(first) <= 4000 + 100 and len(first) > 3000
    assert first.seen == 6 * 3000 - 5 * 60
    assert np.array_equal(first.logits, second.logits) and np.array_equal(first.targets, second.targets)
    # each pair contributes in proportion to its pixels (uniform over pixels, not over pairs)
    everything = PixelSampler(max_pixels=10**6)
    for z, m in zip(logits, masks):
        everything.add(z, m)
    assert abs(first.targets.mean() - everything.targets.mean()) < 0.03
    valid, changed = change_target(np.array([0, 1, 3, 254, 255]))
    assert valid.tolist() == [True, True, True, True, False]
    assert changed.tolist() == [False, True, True, True, False]


def test_balanced_sample_takes_as_many_pixels_from_every_source():
    rng = np.random.default_rng(1)
    small, large, empty = PixelSampler(seed=0), PixelSampler(seed=1), PixelSampler(seed=2)
    small.add(np.full((2, 10, 10), [[[0.0]], [[1.0]]], np.float32), np.ones((10, 10), np.uint8))
    large.add(rng.normal(size=(2, 100, 100)).astype(np.float32), np.zeros((100, 100), np.uint8))
    logits, targets = balanced_sample([small, large, empty], per_source=500, seed=3)
    assert logits.shape == (1000, 2) and targets.shape == (1000,)
    assert targets[:500].all() and not targets[500:].any()  # 100 pixels drawn with replacement
    assert len({tuple(row) for row in logits[500:]}) == 500  # 10 000 pixels drawn without
    again = balanced_sample([small, large, empty], per_source=500, seed=3)
    assert np.array_equal(again[0], logits)
    with pytest.raises(InputError):
        balanced_sample([empty], per_source=10)


def test_keep_threshold_maps_the_models_threshold_and_keeps_its_decisions():
    logits, target = sampled_logits(classes=2, bias=1.0, seed=4)
    raw = logits * 3.0 + np.array([0.0, 3.0])  # overconfident towards change
    kept = 0.95  # e.g. chosen for another protocol
    calibration, report = calibrate(raw, target, keep_threshold=kept)
    assert 0.3 <= report["threshold"] <= 0.7
    assert report["threshold"] == pytest.approx(map_threshold(kept, calibration), abs=1e-6)
    before = change_probability(raw) >= kept
    after = change_probability(raw, calibration) >= report["threshold"]
    assert (before != after).mean() < 1e-4  # the same pixels, up to the stored rounding


def write_folder_pairs(root: Path, count: int = 3, size: int = 64) -> None:
    """A folder data set (A/, B/, label/) of seeded pairs, each with one changed square."""
    import cv2

    rng = np.random.default_rng(0)
    for sub in ("A", "B", "label"):
        (root / sub).mkdir(parents=True)
    for i in range(count):
        reference = rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)
        comparison = reference.copy()
        label = np.zeros((size, size), np.uint8)
        y, x = rng.integers(0, size - 24, size=2)
        comparison[y:y + 24, x:x + 24] = 255 - comparison[y:y + 24, x:x + 24]
        label[y:y + 24, x:x + 24] = 255
        for sub, image in (("A", reference), ("B", comparison), ("label", label)):
            cv2.imwrite(str(root / sub / f"pair{i}.png"), image)


def tiny_source(folder: Path, **config: float):
    """A briefly trained tiny network saved as a checkpoint folder (config: e.g. threshold); both."""
    from changeseg.inference.predictor import ChangeDetector
    from changeseg.io.checkpoints import CheckpointConfig
    from tests.inference.conftest import trained_tiny_model

    model = trained_tiny_model(steps=8)
    return model, ChangeDetector.from_model(model, CheckpointConfig(model=model.config.to_dict(), **config),
                                            precision="fp32").save_pretrained(folder)


def run_tool(monkeypatch, *args: str) -> None:
    """Run tools/calibrate_model.py with these command-line arguments, in this process."""
    monkeypatch.setattr(sys, "argv", ["calibrate_model.py", *args])
    runpy.run_path(str(TOOL), run_name="__main__")


def test_the_tool_writes_a_calibrated_checkpoint(tmp_path, monkeypatch, capsys):
    from changeseg.inference.predictor import ChangeDetector

    model, source = tiny_source(tmp_path / "model", threshold=0.9)
    write_folder_pairs(tmp_path / "pairs")
    out = tmp_path / "calibrated"
    monkeypatch.setattr(sys, "argv", ["calibrate_model.py", str(source), f"folder:{tmp_path / 'pairs'}",
                                      "--out", str(out), "--max-pixels", "5000"])
    runpy.run_path(str(TOOL), run_name="__main__")
    assert "wrote" in capsys.readouterr().out
    config = json.loads((out / "config.json").read_text())
    calibration = config["metadata"]["calibration"]
    assert 0.3 <= config["threshold"] <= 0.7
    assert calibration["pairs"] == 3 and calibration["pixels"] <= 5000 + 64 * 64
    assert calibration["previous_threshold"] == 0.9
    assert calibration["weighting"] == "by pixel count"
    # the written network's logits are the calibrated logits of the original one
    reference, comparison = torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 64)
    written = ChangeDetector.from_pretrained(out, precision="fp32").model
    fitted = Calibration(calibration["temperature"], calibration["no_change_bias"])
    with torch.no_grad():
        assert torch.allclose(written(reference, comparison),
                              apply_to_logits(model(reference, comparison), fitted), atol=1e-5)

    write_folder_pairs(tmp_path / "more", count=1, size=32)
    monkeypatch.setattr(sys, "argv", ["calibrate_model.py", str(source), f"folder:{tmp_path / 'pairs'}",
                                      f"folder:{tmp_path / 'more'}", "--out", str(out),
                                      "--max-pixels", "2000", "--balance-sources"])
    runpy.run_path(str(TOOL), run_name="__main__")
    assert "1,000 per source" in capsys.readouterr().out
    calibration = json.loads((out / "config.json").read_text())["metadata"]["calibration"]
    assert calibration["weighting"] == "each data source alike" and calibration["pixels"] == 2000


def test_the_tool_records_the_scales_it_calibrated_at(tmp_path, monkeypatch, capsys):

    _, source = tiny_source(tmp_path / "model")
    write_folder_pairs(tmp_path / "pairs", count=2)
    out = tmp_path / "calibrated"
    monkeypatch.setattr(sys, "argv", ["calibrate_model.py", str(source), f"folder:{tmp_path / 'pairs'}",
                                      "--out", str(out), "--max-pixels", "4000", "--scales", "1,2"])
    runpy.run_path(str(TOOL), run_name="__main__")
    assert "runs at scales [1.0, 2.0]" in capsys.readouterr().out
    config = json.loads((out / "config.json").read_text())
    assert config["metadata"]["scales"] == [1.0, 2.0]
    assert config["metadata"]["calibration"]["scales"] == [1.0, 2.0]
    # calibrated again at scale 1, the written model runs at its input size again
    monkeypatch.setattr(sys, "argv", ["calibrate_model.py", str(out), f"folder:{tmp_path / 'pairs'}",
                                      "--out", str(tmp_path / "again"), "--max-pixels", "4000",
                                      "--scales", "1"])
    runpy.run_path(str(TOOL), run_name="__main__")
    assert "scales" not in json.loads((tmp_path / "again" / "config.json").read_text())["metadata"]


def test_the_tool_records_a_domain_without_touching_weights_or_threshold(tmp_path, monkeypatch, capsys):
    import cv2
    from safetensors.torch import load_file

    from changeseg.evaluation.calibration import fit_domain
    from changeseg.inference.predictor import ChangeDetector

    _, source = tiny_source(tmp_path / "model", threshold=0.4)
    write_folder_pairs(tmp_path / "pairs", count=2)
    out = tmp_path / "with-domain"
    run_tool(monkeypatch, str(source), f"folder:{tmp_path / 'pairs'}", "--out", str(out), "--domain", "bench")
    assert "metadata.domains.bench added" in capsys.readouterr().out
    config = json.loads((out / "config.json").read_text())
    assert config["threshold"] == 0.4 and "calibration" not in config["metadata"]
    entry = config["metadata"]["domains"]["bench"]
    assert entry["pairs"] == 2 and entry["pixels"] == 2 * 64 * 64
    before, after = load_file(source / "model.safetensors"), load_file(out / "model.safetensors")
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    # the recorded numbers are fit_domain's on the same pixels
    detector = ChangeDetector.from_pretrained(source, precision="fp32")
    logits, targets = [], []
    for i in range(2):
        pair = [cv2.imread(str(tmp_path / "pairs" / sub / f"pair{i}.png"))[..., ::-1] for sub in ("A", "B")]
        tensors = [torch.from_numpy(((p / 255.0 - np.asarray(detector.config.mean)) / np.asarray(
            detector.config.std)).astype(np.float32).transpose(2, 0, 1).copy())[None] for p in pair]
        with torch.no_grad():
            logits.append(detector.model(*tensors)[0].reshape(2, -1).T.numpy())
        targets.append(cv2.imread(str(tmp_path / "pairs" / "label" / f"pair{i}.png"), 0).ravel() > 0)
    calibration, _ = fit_domain(np.concatenate(logits), np.concatenate(targets), 0.4)
    assert entry["temperature"] == pytest.approx(calibration.temperature, rel=1e-3)
    assert entry["no_change_bias"] == pytest.approx(calibration.no_change_bias, abs=1e-3)
    # --domain fits at the model's own scales and never folds: other modes are refused
    with pytest.raises(SystemExit, match="takes no"):
        run_tool(monkeypatch, str(source), f"folder:{tmp_path / 'pairs'}", "--out", str(tmp_path / "no"),
                 "--domain", "x", "--scales", "1,2")
    assert not (tmp_path / "no").exists()


def test_calibrating_again_drops_the_domains_fitted_on_the_old_calibration(tmp_path, monkeypatch, capsys):
    _, source = tiny_source(tmp_path / "model")
    write_folder_pairs(tmp_path / "pairs", count=2)
    pairs = f"folder:{tmp_path / 'pairs'}"
    run_tool(monkeypatch, str(source), pairs, "--out", str(tmp_path / "domain"), "--domain", "bench")
    run_tool(monkeypatch, str(tmp_path / "domain"), pairs, "--out", str(tmp_path / "again"))
    assert "domain calibrations dropped (fit them again with --domain): bench" in capsys.readouterr().out
    metadata = json.loads((tmp_path / "again" / "config.json").read_text())["metadata"]
    assert "domains" not in metadata and "calibration" in metadata


def test_the_tool_keeps_a_decision_threshold_given_on_the_uncalibrated_scale(tmp_path, monkeypatch, capsys):
    _, source = tiny_source(tmp_path / "model", threshold=0.5)
    write_folder_pairs(tmp_path / "pairs", count=2)
    out = {kept: tmp_path / f"calibrated-{kept}" for kept in (0.5, 0.8)}
    run_tool(monkeypatch, str(source), f"folder:{tmp_path / 'pairs'}", "--out", str(out[0.5]),
             "--max-pixels", "4000", "--keep-threshold")
    run_tool(monkeypatch, str(source), f"folder:{tmp_path / 'pairs'}", "--out", str(out[0.8]),
             "--max-pixels", "4000", "--keep-threshold", "--decision-threshold", "0.8")
    assert "(the model's 0.8 mapped)" in capsys.readouterr().out
    for kept, folder in out.items():
        calibration = json.loads((folder / "config.json").read_text())["metadata"]["calibration"]
        assert calibration["previous_threshold"] == kept
        assert f"the model's own ({kept}) mapped" in calibration["rule"]
    with pytest.raises(SystemExit, match="--decision-threshold"):
        run_tool(monkeypatch, str(source), f"folder:{tmp_path / 'pairs'}", "--out", str(tmp_path / "x"),
                 "--decision-threshold", "0.8")
