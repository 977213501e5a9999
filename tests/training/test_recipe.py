"""Recipes: YAML loading, unknown keys, type coercion, overrides, env substitution, configs/."""

from __future__ import annotations

from pathlib import Path

import pytest

from changeseg.errors import ConfigError
from changeseg.training.recipe import (
    apply_overrides,
    dump_recipe,
    expand_env,
    finetune_base,
    load_recipe,
    parse_override,
    recipe_from_dict,
)

PROJECT = Path(__file__).resolve().parents[2]
MINIMAL = {"data": {"train": [{"spec": "folder:/data/pairs"}]}}


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_yaml_recipe_with_defaults_and_coercion(tmp_path: Path) -> None:
    recipe = load_recipe(write(tmp_path / "r.yaml", """
name: demo
model: {preset: c3po-mobilenetv2-fcn, fpn_channels: 64, pretrained: null}
data:
  train:
    - spec: folder:/data/pairs
      options: {split: train}
  batch_size: 4
optim: {lr: 1e-4, warmup_steps: 10}
loss: {name: ce+dice, class_weights: [0.2, 0.8]}
"""))
    assert recipe.name == "demo"
    assert recipe.optim.lr == pytest.approx(1e-4)  # PyYAML reads 1e-4 as a string
    assert recipe.data.train[0].options == {"split": "train"}
    config = recipe.model.model_config()
    assert config["fpn_channels"] == 64 and config["backbone"] == "mobilenet_v2"
    assert recipe.loss.class_weights == [0.2, 0.8]
    assert recipe.trainer.accelerator == "auto" and recipe.data.val_fraction == 0.1
    assert recipe.run_dir() == Path("runs/demo")
    assert recipe.class_names() == ["unchanged", "changed"]


@pytest.mark.parametrize("text, names", [
    ("data: {train: [{spec: x:y}], batchsize: 3}", "data.batchsize"),
    ("optim: {lr: 0.1, lr_decay: 2}", "optim.lr_decay"),
    ("trainer: {gpus: 2}", "trainer.gpus"),
    ("model: {backbone: resnet18, widht: 3}", "model.widht"),
    ("data: {train: [{spec: x:y, option: {}}]}", "data.train.0.option"),
    ("colour: red", "colour"),
])
def test_unknown_keys_are_named(tmp_path: Path, text: str, names: str) -> None:
    with pytest.raises(ConfigError, match=names.replace(".", r"\.")):
        load_recipe(write(tmp_path / "r.yaml", text + "\n"), [] if "train" in text else
                    ["data.train=[{spec: 'folder:/x'}]"])


def test_bad_values_and_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="optim.lr: expected a number"):
        recipe_from_dict({**MINIMAL, "optim": {"lr": "fast"}})
    with pytest.raises(ConfigError, match="trainer.max_epochs: expected an integer"):
        recipe_from_dict({**MINIMAL, "trainer": {"max_epochs": 2.5}})
    with pytest.raises(ConfigError, match="at least one training source"):
        recipe_from_dict({})
    with pytest.raises(ConfigError, match="unknown preset"):
        recipe_from_dict({**MINIMAL, "model": {"preset": "nope"}})
    with pytest.raises(ConfigError, match="not found"):
        load_recipe(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_recipe(write(tmp_path / "bad.yaml", "data: [unclosed\n"))
    with pytest.raises(ConfigError, match="val/miou"):
        recipe_from_dict({**MINIMAL, "trainer": {"monitor": "val/miou"}})
    with pytest.raises(ConfigError, match="max_time must read DD:HH:MM:SS"):
        recipe_from_dict({**MINIMAL, "trainer": {"max_time": "8 minutes"}})
    limited = recipe_from_dict({**MINIMAL, "trainer": {"max_time": "00:00:08:00"}})
    assert limited.trainer.max_time == "00:00:08:00"
    assert load_recipe(None, ["data.train=[{spec: 'folder:/x'}]", "trainer.max_time=00:01:30:00"]
                       ).trainer.max_time == "00:01:30:00"  # read as text, not a base-60 number
    with pytest.raises(ConfigError, match="stop_after_epochs must lie in 1..trainer.max_epochs"):
        recipe_from_dict({**MINIMAL, "trainer": {"max_epochs": 4, "stop_after_epochs": 5}})
    assert recipe_from_dict({**MINIMAL, "trainer": {"max_epochs": 4, "stop_after_epochs": 2}}
                            ).trainer.stop_after_epochs == 2
    with pytest.raises(ConfigError, match="class names"):
        recipe_from_dict({**MINIMAL, "model": {"num_classes": 4}})


def test_overrides() -> None:
    assert parse_override("optim.lr=3e-4") == (["optim", "lr"], 3e-4)
    assert parse_override("model.pretrained=null") == (["model", "pretrained"], None)
    assert parse_override("trainer.devices=[0, 1]") == (["trainer", "devices"], [0, 1])
    values = apply_overrides({"data": {"train": [{"spec": "a:b"}]}}, [
        "data.train.0.options.split=train", "data.train.1={spec: 'c:d'}", "trainer.max_epochs=3",
        "name=x=y"])
    assert values["data"]["train"][0]["options"] == {"split": "train"}
    assert values["data"]["train"][1] == {"spec": "c:d"}
    assert values["trainer"]["max_epochs"] == 3 and values["name"] == "x=y"
    for bad in ("novalue", "=3", "a..b=1", "data.train.7.spec=x"):
        with pytest.raises(ConfigError):
            apply_overrides({"data": {"train": [{"spec": "a:b"}]}}, [bad])
    recipe = load_recipe(None, ["data.train=[{spec: 'folder:/p'}]", "optim.lr=0.01",
                                "trainer.devices=2", "trainer.strategy=ddp"])
    assert recipe.optim.lr == 0.01 and recipe.trainer.devices == 2 and recipe.trainer.strategy == "ddp"
    with pytest.raises(ConfigError, match="optim.lrr"):
        load_recipe(None, ["data.train=[{spec: 'folder:/p'}]", "optim.lrr=0.01"])


def test_env_substitution(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CHANGESEG_DATA", raising=False)
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    assert expand_env("${CHANGESEG_DATA}/levir") == "../shared/data/levir"
    assert expand_env({"a": ["${NOT_SET_ANYWHERE:-/d}/x"]}) == {"a": ["/d/x"]}
    with pytest.raises(ConfigError, match="NOT_SET_ANYWHERE"):
        expand_env("${NOT_SET_ANYWHERE}")
    monkeypatch.setenv("CHANGESEG_DATA", "/mnt/cd")
    recipe = recipe_from_dict({"data": {"train": [{"spec": "pcd:${CHANGESEG_DATA}/tsunami"}]}})
    assert recipe.data.train[0].spec == "pcd:/mnt/cd/tsunami"


def test_dump_and_reload_round_trip(tmp_path: Path) -> None:
    recipe = load_recipe(None, ["data.train=[{spec: 'folder:/p', weight: 2}]", "model.fpn_channels=32",
                                "model.preset=c3po-mobilenetv2-fcn", "optim.freeze=[backbone]"])
    again = load_recipe(dump_recipe(recipe, tmp_path / "recipe.yaml"))
    assert again == recipe


@pytest.mark.parametrize("name", ["deeppcb", "tsunami-fewshot", "synthetic-pretrain", "aerial"])
def test_shipped_configs_load(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHANGESEG_DATA", "/data")
    recipe = load_recipe(PROJECT / "configs" / f"{name}.yaml")
    assert recipe.name == name
    assert recipe.data.val_seed == 0 and recipe.data.val_fraction > 0
    assert recipe.optim.optimizer == "adam" and recipe.optim.schedule == "cosine"
    for entry in recipe.data.train:
        assert entry.spec == "synthetic" or ":/data/" in entry.spec


def test_finetune_base_from_a_model_folder(tmp_path: Path) -> None:
    from changeseg.io.checkpoints import CheckpointConfig, save_checkpoint
    from changeseg.models import build_model

    model = build_model(backbone="mobilenet_v2", fpn_channels=16)
    folder = save_checkpoint(tmp_path / "m", model.state_dict(), CheckpointConfig(
        model=model.config.to_dict(), mean=[0.5] * 3, std=[0.25] * 3, threshold=0.4))
    recipe = load_recipe(None, ["optim.lr=1e-5"], base=finetune_base(str(folder), ["pcd:/d/t"]))
    assert recipe.model.init_from == str(folder)
    assert recipe.data.mean == [0.5] * 3 and recipe.output.threshold == 0.4
    assert recipe.data.train[0].samples_per_epoch == 64 and recipe.optim.lr == 1e-5
    # the whole network trains, the backbone's BatchNorm statistics kept (from a trained model)
    assert recipe.optim.freeze == [] and recipe.optim.freeze_bn
    assert recipe_from_dict(finetune_base(str(folder), ["pcd:/d/t"])).optim.lr == 3e-5
    assert not load_recipe(None, ["optim.freeze_bn=false"],
                           base=finetune_base(str(folder), ["pcd:/d/t"])).optim.freeze_bn
    preset = recipe_from_dict(finetune_base("c3po-mobilenetv2-fcn", ["pcd:/d/t"]))
    assert preset.model.pretrained == "imagenet" and preset.optim.lr == 1e-4
    assert not preset.optim.freeze_bn  # ImageNet's statistics follow the batches
    with pytest.raises(ConfigError, match="preset"):
        finetune_base(str(tmp_path / "nothing"), ["pcd:/d/t"])


def test_finetune_base_keeps_a_typed_models_classes(tmp_path):
    from changeseg.inference.predictor import ChangeDetector
    from changeseg.io.checkpoints import CheckpointConfig
    from changeseg.models import build_model

    model = build_model(fpn_channels=16, num_classes=4, pretrained=None)
    typed = ["unchanged", "appear", "disappear", "exchange"]
    ChangeDetector.from_model(model, CheckpointConfig(model=model.config.to_dict(), class_names=typed,
                                                      threshold=0.9), precision="fp32"
                              ).save_pretrained(tmp_path / "typed")
    recipe = load_recipe(None, [], base=finetune_base(str(tmp_path / "typed"), ["folder:pairs"]))
    assert recipe.model.model_config()["num_classes"] == 4
    assert recipe.class_names() == typed and recipe.output.threshold == 0.9


def test_per_source_val_fraction() -> None:
    recipe = recipe_from_dict({"data": {
        "train": [{"spec": "sbi2015:/d/sbi2015", "options": {"scenes": ["Board"]}, "val_fraction": 0},
                  {"spec": "folder:/d/levir"}],
        "val": [{"spec": "sbi2015:/d/sbi2015", "options": {"scenes": ["HighwayI"]}}]}})
    first, second = recipe.data.train
    assert first.val_fraction == 0.0 and second.val_fraction is None
    assert recipe.data.val[0].options == {"scenes": ["HighwayI"]}
    assert recipe_from_dict(recipe.to_dict()).data == recipe.data
    with pytest.raises(ConfigError, match=r"val_fraction must be in \[0, 1\), got 1.0"):
        recipe_from_dict({"data": {"train": [{"spec": "folder:/p", "val_fraction": 1}]}})
    with pytest.raises(ConfigError, match="only applies to data.train"):
        recipe_from_dict({**MINIMAL, "data": {**MINIMAL["data"],
                                              "val": [{"spec": "folder:/v", "val_fraction": 0.5}]}})


@pytest.mark.parametrize("path", sorted((PROJECT / "configs").glob("*.yaml")), ids=lambda p: p.stem)
def test_every_committed_recipe_loads_with_valid_synthetic_settings(
        path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each link of a training chain stays a runnable recipe: it loads, and the generator settings
    of its synthetic streams are ones SynthConfig accepts (a typo would fail only at training)."""
    from dataclasses import replace

    from changeseg.data.synthetic.config import SynthConfig

    monkeypatch.setenv("CHANGESEG_DATA", "/data")
    recipe = load_recipe(path)
    assert recipe.data.train, f"{path.name} trains on nothing"
    not_settings = {"size", "seed", "photos", "objects"}
    for entry in recipe.data.train:
        if entry.spec.split(":", 1)[0] == "synthetic":
            settings = {k: v for k, v in entry.options.items() if k not in not_settings}
            config = replace(SynthConfig(), **settings)  # unknown keys raise TypeError
            for key, value in settings.items():
                expected = tuple(value) if isinstance(value, list) else value
                assert getattr(config, key) == expected
