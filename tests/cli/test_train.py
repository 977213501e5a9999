"""`changeseg train` and `changeseg finetune`, run in-process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from changeseg.cli.finetune import count_pairs
from changeseg.cli.finetune import main as finetune_main
from changeseg.cli.main import main as changeseg_main
from changeseg.cli.train import main as train_main
from changeseg.io.checkpoints import read_config
from changeseg.training.recipe import DatasetEntry
from tests.conftest import require_real_data
from tests.training.train_helpers import write_pairs

TINY = """
name: cli-tiny
seed: 3
model: {backbone: mobilenet_v2, fpn_channels: 16, pretrained: null}
data:
  train: [{spec: "folder:PAIRS"}]
  crop_size: 32
  batch_size: 2
  num_workers: 0
  val_fraction: 0.25
trainer: {max_epochs: 1, accelerator: cpu, devices: 1, checkpoint_every_n_steps: 2,
          log_every_n_steps: 1}
"""


@pytest.fixture
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def error_lines(capsys: pytest.CaptureFixture[str]) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if line.strip()]


def test_verbs_are_listed(capsys: pytest.CaptureFixture[str]) -> None:
    assert changeseg_main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "train" in out and "finetune" in out
    assert train_main(["--help"]) == 0
    assert "KEY.SUB=VALUE" in capsys.readouterr().out


def test_bad_config_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    recipe = tmp_path / "bad.yaml"
    recipe.write_text("data: {train: [{spec: 'folder:/x'}]}\noptim: {lrr: 0.1}\n")
    assert train_main(["--config", str(recipe)]) == 1
    lines = error_lines(capsys)
    assert len(lines) == 1 and lines[0].startswith("error:") and "optim.lrr" in lines[0]
    assert train_main(["--config", str(tmp_path / "missing.yaml")]) == 1
    assert error_lines(capsys) == [f"error: recipe not found: {tmp_path / 'missing.yaml'}"]
    assert train_main(["--config", str(recipe), "optim.lr"]) == 1
    assert "key.sub=value" in error_lines(capsys)[0]
    assert train_main([]) == 2
    assert "--config" in error_lines(capsys)[0]
    assert train_main(["--resume", "--out", str(tmp_path / "nothing")]) == 2
    assert "--config" in error_lines(capsys)[0]
    assert finetune_main(["--from", str(tmp_path / "no-model"), "--data", "folder:/x"]) == 1
    lines = error_lines(capsys)
    assert len(lines) == 1 and "--from" in lines[0]


def test_train_then_finetune(tmp_path: Path, capsys: pytest.CaptureFixture[str], one_thread: None) -> None:
    pairs = write_pairs(tmp_path / "pairs", count=8, size=48, seed=2)
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(TINY.replace("PAIRS", str(pairs)))
    run = tmp_path / "run"
    assert train_main(["--config", str(recipe), "--out", str(run), "--no-progress", "optim.lr=2e-3"]) == 0
    assert f"best model: {run / 'best'}" in capsys.readouterr().out
    config = read_config(run / "best")
    assert config.metadata["training"]["recipe"]["optim"]["lr"] == pytest.approx(2e-3)
    assert (run / "recipe.yaml").is_file()
    # a second start in the same folder is refused; --resume (recipe read from the run) is not
    assert train_main(["--config", str(recipe), "--out", str(run)]) == 1
    assert "--resume" in error_lines(capsys)[0]
    assert train_main(["--resume", "--out", str(run), "--no-progress", "trainer.max_epochs=2"]) == 0
    assert read_config(run / "last").metadata["training"]["epoch"] == 1
    # --auto-resume: finds the finished run's checkpoint, has nothing left to do, re-exports
    assert train_main(["-c", str(recipe), "--out", str(run), "--auto-resume", "--no-progress",
                       "trainer.max_epochs=2"]) == 0
    capsys.readouterr()

    # 8 pairs are fewer than 10: held back only when asked (data.val_fraction)
    tuned = tmp_path / "tuned"
    code = finetune_main(["--from", str(run / "best"), "--data", f"folder:{pairs}", "--out", str(tuned),
                          "--no-progress", "data.val_fraction=0.25", "data.crop_size=32",
                          "data.num_workers=0",
                          "data.batch_size=2", "data.train.0.samples_per_epoch=4",
                          "trainer.max_epochs=1", "trainer.accelerator=cpu"])
    assert code == 0, capsys.readouterr().err
    tuned_config = read_config(tuned / "best")
    assert tuned_config.model == config.model
    training = tuned_config.metadata["training"]
    assert training["init"]["from"] == str(run / "best") and not training["init"]["skipped"]
    assert training["recipe"]["optim"]["freeze"] == [] and training["recipe"]["optim"]["freeze_bn"]
    # by default the whole backbone learns, its BatchNorm statistics stay the start's
    from changeseg.io.checkpoints import load_checkpoint

    _, start_state = load_checkpoint(run / "best")
    _, tuned_state = load_checkpoint(tuned / "best")
    backbone = [k for k, v in start_state.items() if k.startswith("backbone.") and v.is_floating_point()]
    statistics = [k for k in backbone if k.endswith(("running_mean", "running_var"))]
    weights = [k for k in backbone if k not in statistics]
    assert weights and any(not torch.equal(tuned_state[k], start_state[k]) for k in weights)
    assert statistics and all(torch.equal(tuned_state[k], start_state[k]) for k in statistics)
    # the threshold was re-chosen on the fine-tuning validation pairs: the sweep's best F1 there
    choice = tuned_config.metadata["threshold_choice"]
    assert choice["pairs"] == 2 and choice["previous"] == config.threshold
    printed = [line for line in capsys.readouterr().out.splitlines() if "decision threshold" in line]
    assert printed and f"{tuned_config.threshold:.2f}" in printed[0]
    from changeseg.evaluation.runner import evaluate
    from changeseg.evaluation.selection import probability_function, validation_pairs
    from changeseg.inference.predictor import ChangeDetector

    summary = json.loads((tuned / "summary.json").read_text())
    (val_part,) = validation_pairs(summary["split"]["sources"])
    detector = ChangeDetector.from_pretrained(tuned / "best", precision="fp32")
    scores = {t: evaluate(probability_function(detector, True), val_part, protocols="global",
                          threshold=t, progress=False)["f1_at_threshold"]
              for t in (0.05, 0.3, 0.5, 0.7, 0.95, tuned_config.threshold)}
    assert scores[tuned_config.threshold] >= max(scores.values()) - 1e-9

    # a handful of pairs: all of them trained on, none held out, the threshold chosen on them
    handful = tmp_path / "handful"
    assert finetune_main(["--from", str(run / "best"), "--data", f"folder:{pairs}", "--out", str(handful),
                          "--no-progress", "data.crop_size=32", "data.num_workers=0",
                          "data.batch_size=2", "data.train.0.samples_per_epoch=4",
                          "trainer.max_epochs=1", "trainer.accelerator=cpu"]) == 0
    out = capsys.readouterr().out
    assert "8 pairs (fewer than 10): training on all of them" in out
    assert "on 8 training pairs" in out
    (source,) = json.loads((handful / "summary.json").read_text())["split"]["sources"]
    assert source["val_names"] == [] and len(source["train_names"]) == 8
    handful_config = read_config(handful / "best")
    choice = handful_config.metadata["threshold_choice"]
    assert choice["pairs"] == 8 and choice["rule"] == "best F1 on the run's training pairs"
    from changeseg.evaluation.selection import recorded_pairs

    (train_part,) = recorded_pairs([source], "train_names")
    detector = ChangeDetector.from_pretrained(handful / "best", precision="fp32")
    scores = {t: evaluate(probability_function(detector, True), train_part, protocols="global",
                          threshold=t, progress=False)["f1_at_threshold"]
              for t in (0.05, 0.3, 0.5, 0.7, 0.95, handful_config.threshold)}
    assert scores[handful_config.threshold] >= max(scores.values()) - 1e-9

    kept = tmp_path / "kept"
    assert finetune_main(["--from", str(run / "best"), "--data", f"folder:{pairs}", "--out", str(kept),
                          "--no-progress", "--keep-threshold", "data.crop_size=32",
                          "data.num_workers=0", "data.batch_size=2",
                          "data.train.0.samples_per_epoch=4", "trainer.max_epochs=1",
                          "trainer.accelerator=cpu", "optim.freeze=[backbone]"]) == 0
    assert read_config(kept / "best").threshold == config.threshold
    assert "threshold_choice" not in read_config(kept / "best").metadata
    # optim.freeze keeps the backbone exactly as it was, BatchNorm statistics included; the merge learns
    _, kept_state = load_checkpoint(kept / "best")
    assert all(torch.equal(kept_state[k], start_state[k]) for k in backbone)
    assert any(not torch.equal(kept_state[k], start_state[k]) for k in start_state
               if k.startswith("merge.") and start_state[k].is_floating_point())

    # --interpolate: best/ is the weighted mean of the start and the fine-tuned weights
    averaged = tmp_path / "averaged"
    assert finetune_main(["--from", str(run / "best"), "--data", f"folder:{pairs}", "--out", str(averaged),
                          "--no-progress", "--keep-threshold", "--interpolate", "0.25",
                          "data.crop_size=32", "data.num_workers=0", "data.batch_size=2",
                          "data.train.0.samples_per_epoch=4", "trainer.max_epochs=1",
                          "trainer.accelerator=cpu", "optim.freeze_bn=false"]) == 0
    assert "0.75 ×" in capsys.readouterr().out
    _, tuned_state = load_checkpoint(averaged / "best-tuned")
    mixed_config, mixed_state = load_checkpoint(averaged / "best")
    name = next(k for k, v in tuned_state.items()
                if v.is_floating_point() and not torch.equal(v, start_state[k]))
    assert torch.allclose(mixed_state[name], 0.75 * start_state[name] + 0.25 * tuned_state[name], atol=1e-6)
    assert mixed_config.metadata["interpolation"]["alpha"] == 0.25
    # optim.freeze_bn=false: the backbone's BatchNorm statistics followed the batches, weights learnt
    assert any(not torch.equal(tuned_state[k], start_state[k]) for k in statistics)
    assert any(not torch.equal(tuned_state[k], start_state[k]) for k in weights)
    assert mixed_config.threshold == config.threshold


def test_count_pairs_opens_each_source_with_its_reader_options(tmp_path: Path) -> None:
    pairs = write_pairs(tmp_path / "pairs", count=12, size=16, seed=1)
    (pairs / "list").mkdir()
    names = sorted(p.stem for p in (pairs / "A").iterdir())
    (pairs / "list" / "train.txt").write_text("\n".join(names[:4]) + "\n")
    assert count_pairs([DatasetEntry(spec=f"folder:{pairs}")]) == 12
    assert count_pairs([DatasetEntry(spec=f"folder:{pairs}", options={"split": "train"})]) == 4
    assert count_pairs([DatasetEntry(spec=f"folder:{pairs}"), DatasetEntry(spec="synthetic")]) is None
    # a real reader whose pair count is an option: 3 frame pairs of one fixed-camera scene
    sbi = require_real_data("surveillance", "sbi2015")
    three = DatasetEntry(spec=f"sbi2015:{sbi}", options={"scenes": ["CaVignal"], "pairs_per_scene": 3})
    assert count_pairs([three]) == 3


def test_finetune_interpolate_needs_a_model_to_average_with(capsys: pytest.CaptureFixture[str]) -> None:
    code = finetune_main(["--from", "c3po-mobilenetv2-fcn", "--data", "folder:/nowhere",
                          "--interpolate", "0.5"])
    assert code == 1
    lines = error_lines(capsys)
    assert len(lines) == 1 and "--interpolate" in lines[0] and "preset" in lines[0]


def test_finetune_scale_enlarges_small_frames_and_runs_at_that_scale(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], one_thread: None) -> None:
    """--scale 2 trains on the pairs enlarged and records scales [2], so detect and evaluate run the
    model at 2×; with no pairs held out, the threshold is chosen on the training pairs at 1×."""
    pairs = write_pairs(tmp_path / "pairs", count=6, size=24, seed=4)
    common = ["--data", f"folder:{pairs}", "--no-progress", "data.crop_size=32", "data.num_workers=0",
              "data.batch_size=2", "data.train.0.samples_per_epoch=4", "trainer.max_epochs=1",
              "trainer.accelerator=cpu"]
    plain = tmp_path / "plain"
    assert finetune_main(["--from", "c3po-mobilenetv2-fcn", "--out", str(plain), *common,
                          "model.pretrained=null", "model.fpn_channels=16"]) == 0
    capsys.readouterr()
    assert "scales" not in read_config(plain / "best").metadata

    scaled = tmp_path / "scaled"
    assert finetune_main(["--from", str(plain / "best"), "--out", str(scaled), "--scale", "2", *common]) == 0
    capsys.readouterr()
    config = read_config(scaled / "best")
    assert config.metadata["scales"] == [2.0]
    recipe = config.metadata["training"]["recipe"]["data"]
    assert recipe["train_scale"] == 2.0 and recipe["val_scale"] == 2.0
    # the threshold's F1 is the sweep's best over the training pairs predicted at 1×, not at 2×
    from changeseg.evaluation.runner import evaluate
    from changeseg.evaluation.selection import probability_function, recorded_pairs
    from changeseg.inference.multiscale import with_views
    from changeseg.inference.predictor import ChangeDetector

    (source,) = json.loads((scaled / "summary.json").read_text())["split"]["sources"]
    (train_part,) = recorded_pairs([source], "train_names")
    detector = ChangeDetector.from_pretrained(scaled / "best", precision="fp32")
    swept = {views: evaluate(probability_function(backend, True), train_part, protocols="sweep",
                             threshold=config.threshold, progress=False)
             for views, backend in (("x2", with_views(detector)), ("x1", detector))}
    choice = config.metadata["threshold_choice"]
    assert choice["f1"] == pytest.approx(swept["x1"]["best_f1"])
    assert swept["x2"]["best_f1"] != pytest.approx(swept["x1"]["best_f1"], abs=1e-6)
    assert config.threshold == pytest.approx(swept["x1"]["best_threshold"])
    assert choice["rule"] == "best F1 on the run's training pairs at 1x"
    plain_rule = read_config(plain / "best").metadata["threshold_choice"]["rule"]
    assert plain_rule == "best F1 on the run's training pairs"

    assert finetune_main(["--from", str(plain / "best"), "--scale", "9", *common]) == 1
    lines = error_lines(capsys)
    assert len(lines) == 1 and "--scale 9" in lines[0] and "[0.25, 4]" in lines[0]
