"""End-to-end training: a real-data run that learns, exact resume, two-process DDP."""

from __future__ import annotations

import csv
import json
import logging
import os
import subprocess
import sys
import warnings
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import Callback
from torchmetrics.classification import BinaryF1Score

from changeseg.io.checkpoints import load_checkpoint, read_config
from changeseg.training.datamodule import ChangeDataModule
from changeseg.training.module import ChangeSegTask, changed_probability, changed_target
from changeseg.training.trainer import export_checkpoint, train, training_precision
from tests.conftest import require_real_data
from tests.training.train_helpers import single_thread, tiny_recipe, write_pairs  # noqa: F401

pytestmark = pytest.mark.usefixtures("single_thread")
HERE = Path(__file__).resolve().parent


def epoch_losses(run: Path) -> list[float]:
    with open(run / "logs" / "csv" / "version_0" / "metrics.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    return [float(r["train/loss_epoch"]) for r in rows if r.get("train/loss_epoch")]


def val_f1(model: torch.nn.Module, data: ChangeDataModule) -> float:
    metric = BinaryF1Score(ignore_index=255)
    model.eval()
    with torch.no_grad():
        for batch in data.val_dataloader():
            logits = model(batch["reference"], batch["comparison"])
            metric.update(changed_probability(logits), changed_target(batch["mask"]))
    return float(metric.compute())


def test_short_real_training_learns(tmp_path: Path) -> None:
    """(a) LEVIR-CD and egy_ncc crops, 18 CPU steps: the loss falls and the model beats its
    untrained self on the held-back validation pairs."""
    levir = require_real_data("levir_samples")
    egy = require_real_data("egy_ncc")
    recipe = tiny_recipe(
        tmp_path / "run", f"folder:{levir}", f"data.train.1={{spec: 'folder:{egy}'}}",
        "model.pretrained=imagenet", "optim.freeze_bn=true", "data.crop_size=96",
        "data.batch_size=4", "trainer.max_epochs=6", "trainer.checkpoint_every_n_steps=100",
        "seed=1")
    data = ChangeDataModule(recipe.data, seed=recipe.seed)
    pl.seed_everything(recipe.seed, verbose=False)
    untrained = ChangeSegTask(model=recipe.model.model_config(), pretrained="imagenet").model
    before = val_f1(untrained, data)

    best = train(recipe)

    losses = epoch_losses(tmp_path / "run")
    assert len(losses) == 6 and losses[-1] < losses[0]
    config, state = load_checkpoint(best)
    untrained.load_state_dict(state)
    after = val_f1(untrained, data)
    assert after > before + 0.1, (before, after)
    training = config.metadata["training"]
    assert training["selected_on"] == "validation val/f1"
    assert training["val_metrics"]["val/f1"] == pytest.approx(after, abs=1e-4)
    held_out = {n for s in training["data"]["sources"] for n in s["val_names"]}
    assert len(held_out) == 5 and training["data"]["val_seed"] == 0
    assert sorted(config.metadata["val_names"]) == sorted(held_out)  # for evaluate --names model-val
    trained_on = {n for s in training["data"]["sources"] for n in s["train_names"]}
    assert trained_on and trained_on.isdisjoint(held_out)  # for evaluate's training-overlap check
    assert config.model["fpn_channels"] == 16 and config.mean == [0.485, 0.456, 0.406]
    assert (tmp_path / "run" / "last" / "model.safetensors").is_file()
    assert any((tmp_path / "run" / "logs" / "tensorboard").rglob("events.out.tfevents.*"))


class CrashAt(Callback):
    """Raise inside training once `global_step` reaches `step` (a killed run)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: dict,
                             batch_idx: int) -> None:
        if trainer.global_step >= self.step:
            raise RuntimeError("simulated crash")


def test_resume_matches_an_uninterrupted_run(tmp_path: Path) -> None:
    """(b) A run killed mid-epoch and resumed from its last checkpoint ends with the same
    weights, optimiser and schedule as a run that was never interrupted."""
    data = write_pairs(tmp_path / "data", count=10)
    settings = ["data.batch_size=2", "trainer.max_epochs=2", "trainer.checkpoint_every_n_steps=2"]
    whole = train(tiny_recipe(tmp_path / "whole", f"folder:{data}", *settings)).parent

    broken = tmp_path / "broken"
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(tiny_recipe(broken, f"folder:{data}", *settings), callbacks=[CrashAt(3)])
    saved = torch.load(broken / "checkpoints" / "last.ckpt", weights_only=True)
    assert saved["global_step"] == 2  # mid-epoch: 4 batches per epoch
    assert not [p for p in (broken / "checkpoints").iterdir() if p.suffix != ".ckpt"]
    with pytest.raises(Exception, match="--resume"):
        train(tiny_recipe(broken, f"folder:{data}", *settings))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train(tiny_recipe(broken, f"folder:{data}", *settings), resume=True)
    assert not [w for w in caught if "exists and is not empty" in str(w.message)]  # its own folder

    _, expected = load_checkpoint(whole / "last")
    _, resumed = load_checkpoint(broken / "last")
    for name, tensor in expected.items():
        torch.testing.assert_close(resumed[name], tensor, rtol=1e-5, atol=1e-6, msg=name)
    a = torch.load(whole / "checkpoints" / "last.ckpt", weights_only=True)
    b = torch.load(broken / "checkpoints" / "last.ckpt", weights_only=True)
    assert a["global_step"] == b["global_step"] == 8
    assert a["lr_schedulers"] == b["lr_schedulers"]
    for sa, sb in zip(a["optimizer_states"][0]["state"].values(), b["optimizer_states"][0]["state"].values()):
        torch.testing.assert_close(sb["exp_avg"], sa["exp_avg"], rtol=1e-5, atol=1e-7)
    summary = json.loads((broken / "summary.json").read_text())
    assert summary["exported"]["last"]["global_step"] == 8


def test_two_process_ddp_on_cpu(tmp_path: Path) -> None:
    """(c) Lightning DDP with two CPU processes (gloo): both ranks end with the same weights,
    each trained on its own share of every epoch, and rank 0 alone exports the model."""
    data = write_pairs(tmp_path / "data", count=12)
    path = os.pathsep.join([str(HERE.parents[1]), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": path}
    env.pop("OMP_NUM_THREADS", None)
    done = subprocess.run([sys.executable, str(HERE / "ddp_worker.py"), str(tmp_path), str(data)],
                          cwd=HERE.parents[1], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    assert [r["world_size"] for r in ranks] == [2, 2] and ranks[0]["backend"] == "gloo"
    for name, tensor in ranks[0]["params"].items():
        torch.testing.assert_close(ranks[1]["params"][name], tensor, rtol=0, atol=1e-6, msg=name)
    for epoch in (0, 1):
        seen = [{n for batch in r["names"] if batch[0] == epoch for n in batch[1:]} for r in ranks]
        assert seen[0] and seen[1] and seen[0].isdisjoint(seen[1])
    best = tmp_path / "run" / "best"
    assert read_config(best).metadata["training"]["world_size"] == 2
    _, exported = load_checkpoint(tmp_path / "run" / "last")
    for name, tensor in ranks[0]["params"].items():
        torch.testing.assert_close(exported[name], tensor)


@pytest.mark.slow
@pytest.mark.parametrize("name", [
    "deeppcb", "tsunami-fewshot", "synthetic-pretrain", "aerial", "pcb", "default"])
def test_shipped_recipe_runs_on_real_data(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every recipe in configs/ trains a few steps on the real data and exports a model.

    `init_from` is dropped: a chain link's start is an earlier run's folder (runs/...), which a
    fresh clone does not have, and the narrowed test network could not load it anyway.
    """
    from changeseg.training.recipe import load_recipe

    monkeypatch.setenv("CHANGESEG_DATA", str(require_real_data()))
    recipe = load_recipe(HERE.parents[1] / "configs" / f"{name}.yaml", [
        f"output.dir={tmp_path / 'run'}", "model.init_from=null", "model.fpn_channels=16",
        "data.batch_size=2",
        "data.val_batch_size=1", "data.num_workers=0", "data.weight_samples=16",
        "trainer.max_steps=2", "trainer.limit_val_batches=2", "trainer.accelerator=cpu",
        "trainer.devices=1", "trainer.progress_bar=false"])
    best = train(recipe)
    config = read_config(best)
    assert config.metadata["training"]["recipe_name"] == name
    assert config.metadata["training"]["global_step"] <= 2


def test_typed_labels_refuse_a_swap_symmetric_network(tmp_path: Path) -> None:
    from changeseg.errors import ConfigError

    recipe = tiny_recipe(tmp_path / "run", "synthetic", "data.labels=typed", "model.num_classes=4",
                         "model.share_ad=true")
    with pytest.raises(ConfigError, match="cannot|appear from disappear"):
        train(recipe)
    assert not (tmp_path / "run").exists()  # refused before any work


def test_last_is_the_final_state_when_the_steps_are_not_a_multiple_of_the_checkpoint_period(
        tmp_path: Path) -> None:
    """`last/` and last.ckpt hold the weights after the final step, not those of the last periodic save."""
    data = write_pairs(tmp_path / "data", count=10)
    run = train(tiny_recipe(tmp_path / "run", f"folder:{data}", "trainer.checkpoint_every_n_steps=3",
                            "trainer.keep_checkpoints=4")).parent
    periodic = sorted((run / "checkpoints").glob("step*.ckpt"))
    assert [p.stem for p in periodic] == ["step0000003", "step0000006"]
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 8
    assert json.loads((run / "summary.json").read_text())["exported"]["last"]["global_step"] == 8
    _, last_state = load_checkpoint(run / "last")
    _, step6 = load_checkpoint(export_checkpoint(run / "checkpoints" / "step0000006.ckpt", run / "best",
                                                 tmp_path / "step6"))
    assert any(not torch.equal(step6[n], last_state[n]) for n in last_state)


def test_max_time_ends_the_run_early_and_still_exports(tmp_path: Path) -> None:
    """A wall-time limit stops a run that has far more steps to go; best/ and last/ are written."""
    data = write_pairs(tmp_path / "data", count=10)
    recipe = tiny_recipe(tmp_path / "run", f"folder:{data}", "trainer.max_epochs=10000",
                         "trainer.max_time=00:00:00:02", "trainer.checkpoint_every_n_steps=1000")
    best = train(recipe)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert 0 < summary["exported"]["last"]["global_step"] < 10000 * 4
    assert summary["duration_s"] < 60
    assert (best / "model.safetensors").is_file()
    assert (tmp_path / "run" / "last" / "model.safetensors").is_file()


def test_stop_after_epochs_runs_the_first_part_of_the_longer_schedule(tmp_path: Path) -> None:
    """`stop_after_epochs` ends the run early with the long schedule's learning rates: its
    weights are the longer run's at the same step, not those of a run that is that short, and
    `--resume` without the stop completes the longer run."""
    data = write_pairs(tmp_path / "data", count=10)
    spec = f"folder:{data}"
    full = train(tiny_recipe(tmp_path / "full", spec, "trainer.max_epochs=4",
                             "trainer.checkpoint_every_n_steps=8", "trainer.keep_checkpoints=4")).parent
    part = train(tiny_recipe(tmp_path / "part", spec, "trainer.max_epochs=4",
                             "trainer.stop_after_epochs=2")).parent
    short = train(tiny_recipe(tmp_path / "short", spec, "trainer.max_epochs=2")).parent
    steps = {name: json.loads((run / "summary.json").read_text())["exported"]["last"]["global_step"]
             for name, run in (("full", full), ("part", part), ("short", short))}
    assert steps == {"full": 16, "part": 8, "short": 8}
    _, part_state = load_checkpoint(part / "last")
    _, short_state = load_checkpoint(short / "last")
    _, full_at_8 = load_checkpoint(export_checkpoint(full / "checkpoints" / "step0000008.ckpt",
                                                     full / "best", tmp_path / "full8"))
    assert all(torch.allclose(part_state[n], full_at_8[n], atol=1e-6) for n in part_state)
    assert any(not torch.allclose(part_state[n], short_state[n], atol=1e-6) for n in part_state)
    # resumed without the stop, the run finishes the schedule: the same weights as one full run
    train(tiny_recipe(tmp_path / "part", spec, "trainer.max_epochs=4"), resume=True)
    _, resumed = load_checkpoint(part / "last")
    _, full_state = load_checkpoint(full / "last")
    assert all(torch.allclose(resumed[n], full_state[n], atol=1e-6) for n in full_state)


def test_bf16_trains_in_fp32_on_a_cpu_without_native_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    """Emulated bf16 is many times slower than fp32: such a CPU trains a bf16 recipe in fp32."""
    monkeypatch.setattr("changeseg.training.trainer.cpu_supports_bf16", lambda: False)
    precision, notice = training_precision("bf16-mixed", "cpu")
    assert precision == "32-true" and notice and "no native bf16" in notice
    assert training_precision("32-true", "cpu") == ("32-true", None)
    assert training_precision("bf16-mixed", "gpu") == ("bf16-mixed", None)
    if not torch.cuda.is_available():  # "auto" is the CPU here
        assert training_precision("bf16-mixed", "auto")[0] == "32-true"
    monkeypatch.setattr("changeseg.training.trainer.cpu_supports_bf16", lambda: True)
    assert training_precision("bf16-mixed", "cpu") == ("bf16-mixed", None)
    assert training_precision("bf16-mixed", "auto") == ("bf16-mixed", None)


@pytest.mark.parametrize("native_bf16", [False, True])
def test_a_run_records_the_precision_it_trained_in(native_bf16: bool, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   capfd: pytest.CaptureFixture[str],
                                                   recwarn: pytest.WarningsRecorder) -> None:
    """The exported model says which precision it was trained in and on which CPU (and a bf16 run
    prints no warning about the model summary's size estimate)."""
    monkeypatch.setattr("changeseg.training.trainer.cpu_supports_bf16", lambda: native_bf16)
    data = write_pairs(tmp_path / "data", count=4)
    recipe = tiny_recipe(tmp_path / "run", f"folder:{data}", "trainer.max_epochs=1",
                         "trainer.precision=bf16-mixed", "trainer.accelerator=cpu")
    best = train(recipe)
    training = read_config(best).metadata["training"]
    assert training["precision"] == ("bf16-mixed" if native_bf16 else "32-true")
    assert training["machine"]["cpu_bf16"] is native_bf16 and training["machine"]["cpu"]
    assert ("no native bf16" in capfd.readouterr().err) is not native_bf16
    assert not [w for w in recwarn if "model summary" in str(w.message)]


def test_periodic_checkpoints_export_as_model_folders(tmp_path: Path) -> None:
    """Kept periodic checkpoints become loadable model folders with their own weights and step."""
    data = write_pairs(tmp_path / "data", count=10)
    run = train(tiny_recipe(tmp_path / "run", f"folder:{data}", "trainer.keep_checkpoints=4")).parent
    kept = sorted((run / "checkpoints").glob("step*.ckpt"))
    assert [p.stem for p in kept] == ["step0000002", "step0000004", "step0000006", "step0000008"]
    first = export_checkpoint(kept[0], run / "best", tmp_path / "step2")
    final = export_checkpoint(kept[-1], run / "best", tmp_path / "step8")
    _, last_state = load_checkpoint(run / "last")
    _, final_state = load_checkpoint(final)
    _, first_state = load_checkpoint(first)
    for name, tensor in last_state.items():
        torch.testing.assert_close(final_state[name], tensor, msg=name)
    assert any(not torch.equal(first_state[n], last_state[n]) for n in last_state)
    training = read_config(first).metadata["training"]
    assert training["global_step"] == 2 and training["checkpoint"].endswith("step0000002.ckpt")
    assert "val_metrics" not in training and read_config(first).model == read_config(run / "best").model


def test_a_model_validated_on_enlarged_pairs_records_the_scale_it_runs_at(tmp_path: Path) -> None:
    """`data.val_scale` 2 exports `metadata.scales` [2]: detect, evaluate and the service then run it
    at twice the size by default (`changeseg.inference.multiscale.model_scales`); 1 records nothing."""
    data = write_pairs(tmp_path / "data", count=10)
    enlarged = train(tiny_recipe(tmp_path / "enlarged", f"folder:{data}", "data.val_scale=2"))
    assert read_config(enlarged).metadata["scales"] == [2.0]
    plain = train(tiny_recipe(tmp_path / "plain", f"folder:{data}"))
    assert "scales" not in read_config(plain).metadata


def test_a_run_prints_none_of_lightnings_chatter(tmp_path: Path, recwarn: pytest.WarningsRecorder) -> None:
    """Lightning's advertisement, TPU line, `weights_only` notice and its own pytree deprecation
    stay out of a run's output; its device line (a fact about the run) stays."""
    logged: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: logged.append(record.getMessage())  # type: ignore[method-assign]
    loggers = [logging.getLogger(name) for name in (
        "lightning.pytorch.utilities.rank_zero", "lightning.pytorch.trainer.connectors.checkpoint_connector")]
    for logger in loggers:
        logger.addHandler(handler)
    try:
        data = write_pairs(tmp_path / "data", count=4)
        train(tiny_recipe(tmp_path / "run", f"folder:{data}", "trainer.max_epochs=2"))
    finally:
        for logger in loggers:
            logger.removeHandler(handler)
    printed = "\n".join(logged)
    assert "GPU available:" in printed
    for chatter in ("💡 Tip:", "TPU available:", "`weights_only` was not set"):
        assert chatter not in printed
    assert not [w for w in recwarn if "LeafSpec" in str(w.message)]
