"""bench/tsunami_loo_rules.py: each threshold rule's threshold and score; bad input is one error line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

from tests.tools.scripts import ROOT, load_script

rules = load_script("bench/tsunami_loo_rules.py")


def pair(seed: int, change_level: float) -> tuple[np.ndarray, np.ndarray]:
    """A seeded mask and a probability map: `change_level` + noise on changed pixels, noise elsewhere."""
    rng = np.random.default_rng(seed)
    mask = np.zeros((20, 30), bool)
    mask[5:12, 8:20] = True
    probability = np.where(mask, change_level, 0.05) + rng.uniform(0, 0.04, mask.shape)
    return probability, mask


def test_counts_and_f1() -> None:
    probability, mask = pair(0, 0.6)
    assert list(rules.counts_at(probability, mask, 0.5)) == [84, 0, 0]
    assert list(rules.counts_at(probability, mask, 0.7)) == [0, 0, 84]
    assert rules.f1_of(np.array([3, 1, 2])) == 6 / 9
    assert rules.f1_of(np.array([0, 0, 0])) == 0.0


def test_each_rule_chooses_on_its_own_pairs() -> None:
    # pairs 1 and 2 change at 0.3 and 0.8: pooled, only a threshold in (0.09, 0.3] finds both;
    # pair 2 alone is best at the threshold nearest 0.5 that still finds it
    probabilities, masks = zip(pair(0, 0.6), pair(1, 0.3), pair(2, 0.8), strict=True)
    chosen = rules.rule_thresholds(probabilities, masks, held_out=0, validation=2, kept=0.39)
    assert chosen["kept"] == 0.39
    assert 0.09 < chosen["fine-tuning pairs"] <= 0.30
    assert chosen["validation pair"] == 0.5
    assert "validation pair" not in rules.rule_thresholds(probabilities, masks, 0, None, 0.39)
    assert "fine-tuning pairs at 1x" not in chosen


def test_a_scaled_model_also_gets_the_threshold_chosen_at_1x() -> None:
    # at the model's scale the training pairs change at 0.9, at 1x at 0.4: the two rules differ
    at_scale = [pair(0, 0.6), pair(1, 0.9), pair(2, 0.9)]
    at_one = [pair(0, 0.6), pair(1, 0.4), pair(2, 0.4)]
    masks = [mask for _, mask in at_scale]
    chosen = rules.rule_thresholds([p for p, _ in at_scale], masks, held_out=0, validation=None, kept=0.39,
                                   at_one=[p for p, _ in at_one])
    assert 0.09 < chosen["fine-tuning pairs at 1x"] <= 0.40
    assert chosen["fine-tuning pairs"] > 0.40


def test_alphas_mix_the_fine_tuned_weights_alone(tmp_path: Path) -> None:
    run = tmp_path / "run"
    (run / "best").mkdir(parents=True)
    (run / "best" / "config.json").write_text("{}")
    assert rules.tuned_weights(run) == run / "best"
    # a fine-tune that averaged best/ with its start keeps the fine-tuned weights in best-tuned/
    (run / "best-tuned").mkdir()
    (run / "best-tuned" / "config.json").write_text("{}")
    assert rules.tuned_weights(run) == run / "best-tuned"


def test_the_start_is_what_the_fine_tunes_started_from(tmp_path: Path) -> None:
    """`bench/tsunami_loo.sh` with FROM=…: the runs' recipe.yaml names the start, not `default`."""
    run = tmp_path / "run"
    run.mkdir()
    assert rules.started_from(run) == "default"
    (run / "recipe.yaml").write_text("seed: 42\nmodel:\n  init_from: runs/chain/default-7\n")
    assert rules.started_from(run) == "runs/chain/default-7"
    (run / "recipe.yaml").write_text("model:\n  init_from: null\n")
    assert rules.started_from(run) == "default"


def test_bad_alphas_or_a_missing_run_is_one_error_line(tmp_path: Path) -> None:
    script = str(ROOT / "bench" / "tsunami_loo_rules.py")
    unstarted = tmp_path / "unstarted"  # three fine-tunes whose start is not a model folder
    for k in range(3):
        run = unstarted / f"split{k}" / "run"
        (run / "best").mkdir(parents=True)
        (run / "best" / "config.json").write_text("{}")
        (run / "recipe.yaml").write_text(f"model: {{init_from: {tmp_path}/gone}}\n")
    unparsed = tmp_path / "unparsed"  # the first split's recipe.yaml is not YAML
    for k in range(3):
        (unparsed / f"split{k}" / "run" / "best").mkdir(parents=True)
        (unparsed / f"split{k}" / "run" / "best" / "config.json").write_text("{}")
    (unparsed / "split0" / "run" / "recipe.yaml").write_text("model: [unclosed\n")
    for args, words in (([str(tmp_path), "--alphas", "0.5,2"], "--alphas"),
                        ([str(tmp_path)], "no fine-tuned model"),
                        ([str(unstarted)], f"starting model {tmp_path}/gone"),
                        ([str(unparsed)], "is not valid YAML")):
        done = subprocess.run([sys.executable, script, *args], capture_output=True, text=True, timeout=60)
        assert done.returncode == 1 and done.stdout == ""
        assert done.stderr.startswith("error: ") and words in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1
