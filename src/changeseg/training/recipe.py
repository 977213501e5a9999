"""Training recipes: YAML files mapped onto dataclasses, with command-line overrides.

A recipe has six sections (every key optional; see `configs/*.yaml` and docs/training.md)::

    name: deeppcb
    seed: 42
    model:   {preset: c3po-mobilenetv2-fcn, pretrained: imagenet, fpn_channels: 128, ...}
    data:    {train: [{spec: "deeppcb:${CHANGESEG_DATA}/deeppcb"}], val_fraction: 0.1, ...}
    loss:    {name: ce, class_weights: auto}
    optim:   {optimizer: adam, lr: 1.0e-4, warmup_steps: 500, schedule: cosine}
    trainer: {max_epochs: 50, accelerator: auto, devices: auto, strategy: auto}
    output:  {dir: runs/deeppcb}

Unknown keys anywhere are a ConfigError naming them with their dotted path. Strings may
use `${VAR}` or `${VAR:-default}`; `${CHANGESEG_DATA}` defaults to `../shared/data`
(relative paths are taken from the current directory). Overrides are `key.sub=value` with
the value parsed as YAML (`optim.lr=3e-4`, `data.train.0.options.split=train`,
`model.pretrained=null`).
"""

from __future__ import annotations

import copy
import dataclasses
import os
import re
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

from changeseg.errors import ConfigError
from changeseg.imagenet import IMAGENET_MEAN, IMAGENET_STD
from changeseg.labels import BINARY_CLASSES, TYPED_CLASSES
from changeseg.training.losses import LossConfig

DEFAULT_DATA_ROOT = "../shared/data"
_ENV_PATTERN = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_ENV_DEFAULTS = {"CHANGESEG_DATA": DEFAULT_DATA_ROOT}
MONITORS = ("val/f1", "val/iou", "val/precision", "val/recall", "val/f1_per_image", "val/loss",
            "train/loss_epoch")
_FLOAT_PATTERN = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


@dataclass
class ModelSection:
    """The network: a preset and/or `ModelConfig` fields, plus how to initialise it.

    `pretrained`: None, "imagenet" or a path to backbone weights. `init_from`: a trained
    change-model folder (a `save_checkpoint` folder) whose weights start the training; the
    architecture then comes from that folder and `preset`/`options` must agree with it or
    be left out.
    """

    preset: str | None = None
    pretrained: str | None = None
    init_from: str | None = None
    options: dict[str, Any] = field(default_factory=dict)

    def model_config(self) -> dict[str, Any]:
        """The `ModelConfig` options: the preset's, updated by the explicit ones."""
        from changeseg.models import ModelConfig, preset_config

        values = preset_config(self.preset) if self.preset else {}
        values.update(self.options)
        return ModelConfig.from_dict(values).to_dict()


@dataclass
class DatasetEntry:
    """One training or validation source.

    `spec` is "FORMAT:PATH" (e.g. "folder:${CHANGESEG_DATA}/levir_samples") or "synthetic"
    / "synthetic:PHOTO_FOLDER". `options` go to the reader (e.g. `split: train`) or to the
    synthetic generator. `samples_per_epoch` serves that many random crops per epoch from
    the images held in memory (for a few large images); otherwise each pair is used once
    per epoch. `weight` repeats a small source in the mix (an integer ≥ 1). `val_fraction`
    (training sources only) replaces `data.val_fraction` for this source: 0 when its
    validation comes from a `data.val` entry instead, e.g. other scenes of the same set.
    """

    spec: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    samples_per_epoch: int | None = None
    weight: int = 1
    val_fraction: float | None = None


@dataclass
class AugmentSection:
    """Joint augmentation for training (the same geometry on both images and the mask).

    Probabilities are per sample. `rotate` is a maximum angle in degrees (any angle, with
    the corners marked ignore); `scale` a (min, max) zoom range; `color_jitter` the
    strength of brightness/contrast/saturation changes, applied to each image independently
    with probability `p_color`; `tone_curve` the strength of a season-like per-channel gain
    and gamma applied to one image of the pair with probability `p_tone`
    (`changeseg.data.transforms.ToneCurve`); `swap` exchanges reference and comparison with
    probability `swap` (with typed labels appear and disappear are exchanged too; binary
    labels stay as they are).
    """

    hflip: float = 0.5
    vflip: float = 0.5
    rot90: float = 0.5
    rotate: float = 0.0
    p_rotate: float = 0.0
    scale: list[float] = field(default_factory=lambda: [1.0, 1.0])
    p_scale: float = 0.0
    color_jitter: float = 0.0
    p_color: float = 0.0
    tone_curve: float = 0.0
    p_tone: float = 0.0
    swap: float = 0.0


@dataclass
class DataSection:
    """Where the pairs come from and how they are served.

    The validation split is carved from each training source with `val_fraction` (or the
    source's own) and `val_seed` (recorded in the exported model); `val` adds explicit validation sources
    (never a test split). `crop_size` is the training crop (None: whole images, which then
    must all have one size); `val_tile` serves validation images as tiles of that size
    (None: whole images); `val_scale` resizes validation images by that factor first, for a
    model meant to run at `--scales val_scale` (trained with `augment.scale` around it, or with
    `train_scale`); `train_scale` resizes every pair read for training (not generated synthetic
    pairs) by that factor before it is cropped and augmented, e.g. 2 for frames smaller than the
    crop (`changeseg finetune --scale`).
    `labels` is "binary" or "typed" (synthetic typed masks).
    """

    train: list[DatasetEntry] = field(default_factory=list)
    val: list[DatasetEntry] = field(default_factory=list)
    val_fraction: float = 0.1
    val_seed: int = 0
    val_synthetic: int = 64
    crop_size: int | None = 256
    val_tile: int | None = None
    val_tile_overlap: int = 0
    val_scale: float = 1.0
    train_scale: float = 1.0
    batch_size: int = 8
    val_batch_size: int = 1
    num_workers: int = 2
    mean: list[float] = field(default_factory=lambda: list(IMAGENET_MEAN))
    std: list[float] = field(default_factory=lambda: list(IMAGENET_STD))
    class_names: list[str] | None = None
    labels: str = "binary"
    augment: AugmentSection = field(default_factory=AugmentSection)
    weight_samples: int = 2000


@dataclass
class OptimSection:
    """Optimiser and learning-rate schedule (the paper's: Adam, 1e-4, warm-up, cosine).

    `schedule`: "cosine" (linear warm-up, then cosine decay to `min_lr_ratio`·lr),
    "linear", "poly" or "constant". `freeze` lists parameter-name prefixes kept fixed
    (e.g. "model.backbone"), BatchNorm statistics and dropout included unless
    `freeze_statistics` is false (then their BatchNorm layers follow the training batches, as
    every run before 2026-12-05 did); `freeze_bn` keeps the backbone's BatchNorm statistics fixed
    (the official code does, which suits small batches and pretrained backbones).
    """

    optimizer: str = "adam"
    lr: float = 1e-4
    weight_decay: float = 0.0
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    momentum: float = 0.9
    schedule: str = "cosine"
    warmup_steps: int = 0
    min_lr_ratio: float = 0.0
    poly_power: float = 0.9
    freeze: list[str] = field(default_factory=list)
    freeze_statistics: bool = True
    freeze_bn: bool = False


@dataclass
class TrainerSection:
    """Lightning Trainer settings: hardware, length, validation and checkpoint cadence.

    `accelerator`/`devices`/`num_nodes`/`strategy` go to Lightning as they are ("auto",
    "cpu", "gpu"; an int or a list; "ddp" for multi-GPU or multi-node). Checkpoints are
    written every `checkpoint_every_n_steps` steps (and at the end) under
    `<run>/checkpoints/`, the newest `keep_checkpoints` kept plus `last.ckpt` and the
    best on the validation metric `monitor`. `max_time` (``"DD:HH:MM:SS"``, e.g.
    ``"00:00:08:00"``) ends training gracefully at that wall time, as if the steps had run out:
    `best/` and `last/` are exported as usual (for a lent accelerator's fixed time; the
    learning-rate schedule still spans `max_epochs` / `max_steps`). `stop_after_epochs` ends
    training after that many epochs in the same way, the schedule still spanning
    `max_epochs`: the first part of a longer recipe, step for step (e.g. a seed study of a
    recipe whose best epochs all come early); resumed without it, the run finishes the schedule
    with the weights one uninterrupted run would have.
    """

    max_epochs: int = 50
    max_steps: int = -1
    max_time: str | None = None
    stop_after_epochs: int | None = None
    accelerator: str = "auto"
    devices: Any = "auto"
    num_nodes: int = 1
    strategy: str = "auto"
    precision: str = "32-true"
    val_every_n_epochs: int = 1
    val_check_interval: Any = None
    limit_val_batches: Any = None
    checkpoint_every_n_steps: int = 500
    keep_checkpoints: int = 1
    monitor: str = "val/f1"
    monitor_mode: str = "max"
    log_every_n_steps: int = 10
    gradient_clip_val: float | None = None
    accumulate_grad_batches: int = 1
    deterministic: bool = False
    benchmark: bool | None = None
    progress_bar: bool = True
    sync_batchnorm: bool = False


@dataclass
class OutputSection:
    """Where the run folder goes and what is exported at the end."""

    dir: str | None = None
    export_last: bool = True
    storage_dtype: str = "float32"
    threshold: float = 0.5
    # How non-8-bit inputs are scaled for this model (a changeseg.io.scaling spec), recorded in
    # its config.json; set it when the training images are renderings of raw data (OSCD PNGs).
    input_scaling: str | None = None


@dataclass
class Recipe:
    """A whole training recipe (see the module docstring for the YAML layout)."""

    name: str = "run"
    description: str = ""
    seed: int = 42
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimSection = field(default_factory=OptimSection)
    trainer: TrainerSection = field(default_factory=TrainerSection)
    output: OutputSection = field(default_factory=OutputSection)

    def to_dict(self) -> dict[str, Any]:
        """The recipe as plain YAML/JSON-ready values, in the YAML layout."""
        values = dataclasses.asdict(self)
        model = values.pop("model")
        flat_model = {k: v for k, v in model.items() if k != "options" and v is not None}
        flat_model.update(model["options"])
        values["model"] = flat_model
        return values

    def run_dir(self) -> Path:
        """The run folder: `output.dir`, or `runs/<name>`."""
        return Path(self.output.dir) if self.output.dir else Path("runs") / self.name

    def class_names(self) -> list[str]:
        """Class names for the exported model (from the data section or the label kind)."""
        if self.data.class_names:
            return list(self.data.class_names)
        return list(TYPED_CLASSES if self.data.labels == "typed" else BINARY_CLASSES)


# ------------------------------------------------------------------ dict -> dataclasses


def recipe_from_dict(values: dict[str, Any]) -> Recipe:
    """Build a validated Recipe from nested dicts (as read from YAML).

    Raises ConfigError naming every unknown key and any value of the wrong type.
    """
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise ConfigError(f"a recipe must be a mapping of sections, got {type(values).__name__}")
    values = expand_env(copy.deepcopy(values))
    model_values = values.pop("model", None) or {}
    if not isinstance(model_values, dict):
        raise ConfigError("model: expected a mapping")
    recipe = _build(Recipe, values, "")
    recipe.model = _model_section(model_values)
    _validate(recipe)
    return recipe


def _model_section(values: dict[str, Any]) -> ModelSection:
    from changeseg.models import ModelConfig

    values = dict(values)
    section = ModelSection(preset=values.pop("preset", None), pretrained=values.pop("pretrained", None),
                           init_from=values.pop("init_from", None))
    if isinstance(values.get("options"), dict):  # the to_dict() / dataclass layout also works
        values.update(values.pop("options"))
    known = {f.name for f in dataclasses.fields(ModelConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"unknown recipe key(s): {', '.join('model.' + k for k in unknown)}; "
                          f"model keys are preset, pretrained, init_from and "
                          f"{', '.join(sorted(known))}")
    section.options = values
    for name in ("preset", "pretrained", "init_from"):
        value = getattr(section, name)
        if value is not None and not isinstance(value, str):
            raise ConfigError(f"model.{name}: expected a string or null, got {value!r}")
    section.model_config()  # validates the preset name and option values
    return section


def _build(cls: type, values: Any, path: str) -> Any:
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise ConfigError(f"{path or 'recipe'}: expected a mapping, got {values!r}")
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        names = ", ".join(f"{path}.{k}" if path else str(k) for k in unknown)
        raise ConfigError(f"unknown recipe key(s): {names}; known here: {', '.join(sorted(known))}")
    kwargs = {}
    for key, value in values.items():
        kwargs[key] = _coerce(hints[key], value, f"{path}.{key}" if path else key)
    return cls(**kwargs)


def _coerce(hint: Any, value: Any, path: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for option in (a for a in args if a is not type(None)):
            try:
                return _coerce(option, value, path)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if len(errors) == 1 else
                          f"{path}: {value!r} fits none of the accepted types")
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, path)
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{path}: expected a list, got {value!r}")
        return [_coerce(args[0] if args else Any, item, f"{path}.{i}") for i, item in enumerate(value)]
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a mapping, got {value!r}")
        return dict(value)
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{path}: expected true or false, got {value!r}")
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ConfigError(f"{path}: expected an integer, got {value!r}")
        try:
            number = float(value)
        except ValueError:
            raise ConfigError(f"{path}: expected an integer, got {value!r}") from None
        if number != int(number):
            raise ConfigError(f"{path}: expected an integer, got {value!r}")
        return int(number)
    if hint is float:
        if isinstance(value, bool):
            raise ConfigError(f"{path}: expected a number, got {value!r}")
        try:
            return float(value)  # PyYAML reads "1e-4" as a string
        except (TypeError, ValueError):
            raise ConfigError(f"{path}: expected a number, got {value!r}") from None
    if hint is str:
        if isinstance(value, (dict, list)) or value is None:
            raise ConfigError(f"{path}: expected a string, got {value!r}")
        return str(value)
    return value


def _validate(recipe: Recipe) -> None:
    data, optim, trainer = recipe.data, recipe.optim, recipe.trainer
    if not data.train:
        raise ConfigError("data.train: at least one training source is needed "
                          "(e.g. - spec: folder:PATH)")
    for i, entry in enumerate([*data.train, *data.val]):
        if not entry.spec:
            raise ConfigError(f"data source {i}: spec is empty (expected FORMAT:PATH or synthetic)")
        if entry.weight < 1:
            raise ConfigError(f"data source {entry.spec}: weight must be >= 1")
        if entry.samples_per_epoch is not None and entry.samples_per_epoch < 1:
            raise ConfigError(f"data source {entry.spec}: samples_per_epoch must be >= 1")
        if entry.val_fraction is not None and not 0.0 <= entry.val_fraction < 1.0:
            raise ConfigError(f"data source {entry.spec}: val_fraction must be in [0, 1), "
                              f"got {entry.val_fraction}")
    for entry in data.val:
        if entry.val_fraction is not None:
            raise ConfigError(f"data.val source {entry.spec}: val_fraction only applies to "
                              "data.train sources (a data.val source is validated on whole)")
    if not 0.0 <= data.val_fraction < 1.0:
        raise ConfigError(f"data.val_fraction must be in [0, 1), got {data.val_fraction}")
    for name in ("val_scale", "train_scale"):
        if not getattr(data, name) > 0:
            raise ConfigError(f"data.{name} must be > 0, got {getattr(data, name)}")
    if data.batch_size < 1 or data.val_batch_size < 1:
        raise ConfigError("data.batch_size and data.val_batch_size must be >= 1")
    if data.labels not in ("binary", "typed"):
        raise ConfigError(f"data.labels must be 'binary' or 'typed', got {data.labels!r}")
    if len(data.mean) != len(data.std):
        raise ConfigError("data.mean and data.std must have the same length")
    if data.augment.p_tone > 0 and not 0.0 < data.augment.tone_curve < 1.0:
        raise ConfigError(f"data.augment.tone_curve must lie in (0, 1) when p_tone > 0, "
                          f"got {data.augment.tone_curve}")
    if optim.optimizer.lower() not in ("adam", "adamw", "sgd"):
        raise ConfigError(f"optim.optimizer must be adam, adamw or sgd, got {optim.optimizer!r}")
    if optim.schedule.lower() not in ("cosine", "linear", "poly", "constant"):
        raise ConfigError(f"optim.schedule must be cosine, linear, poly or constant, "
                          f"got {optim.schedule!r}")
    if optim.lr <= 0:
        raise ConfigError("optim.lr must be positive")
    if recipe.output.input_scaling is not None:
        from changeseg.errors import InputError
        from changeseg.io.scaling import parse_scaling

        try:
            parse_scaling(recipe.output.input_scaling)
        except InputError as exc:
            raise ConfigError(f"output.input_scaling: {exc}") from None
    if trainer.monitor_mode not in ("min", "max"):
        raise ConfigError("trainer.monitor_mode must be 'min' or 'max'")
    if trainer.max_time is not None and not re.fullmatch(r"\d{2}:\d{2}:\d{2}:\d{2}", str(trainer.max_time)):
        raise ConfigError(f"trainer.max_time must read DD:HH:MM:SS (e.g. 00:00:08:00), "
                          f"got {trainer.max_time!r}")
    if trainer.stop_after_epochs is not None and not 1 <= trainer.stop_after_epochs <= trainer.max_epochs:
        raise ConfigError(f"trainer.stop_after_epochs must lie in 1..trainer.max_epochs "
                          f"({trainer.max_epochs}), got {trainer.stop_after_epochs}")
    monitors = [*MONITORS, *(["val/miou"] if recipe.model.model_config()["num_classes"] > 2 else [])]
    if trainer.monitor not in monitors:
        raise ConfigError(f"trainer.monitor {trainer.monitor!r} is not logged; choose one of "
                          f"{', '.join(monitors)}")
    if trainer.checkpoint_every_n_steps < 1:
        raise ConfigError("trainer.checkpoint_every_n_steps must be >= 1")
    recipe.loss.terms()
    num_classes = recipe.model.model_config()["num_classes"]
    if len(recipe.class_names()) != num_classes:
        raise ConfigError(f"{len(recipe.class_names())} class names for a model with "
                          f"{num_classes} classes (set data.class_names or model.num_classes)")


# ------------------------------------------------------------------ env vars and overrides


def expand_env(value: Any) -> Any:
    """Replace `${VAR}` / `${VAR:-default}` in every string of a nested structure.

    `${CHANGESEG_DATA}` falls back to `../shared/data`; any other unset variable without a
    default is a ConfigError.
    """
    if isinstance(value, dict):
        return {k: expand_env(v) for k, v in value.items()}
    if isinstance(value, list):
        return [expand_env(v) for v in value]
    if not isinstance(value, str):
        return value

    def replace(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in os.environ and os.environ[name] != "":
            return os.environ[name]
        if default is not None:
            return default
        if name in _ENV_DEFAULTS:
            return _ENV_DEFAULTS[name]
        raise ConfigError(f"environment variable {name} is not set (used as ${{{name}}} in the recipe)")

    return _ENV_PATTERN.sub(replace, value)


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split `key.sub=value` into the key path and the YAML-parsed value."""
    import yaml

    if "=" not in text:
        raise ConfigError(f"override {text!r} is not of the form key.sub=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {text!r} has an empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {text!r}: value is not valid YAML ({exc})") from None
    if isinstance(value, str) and _FLOAT_PATTERN.fullmatch(value.strip()):
        value = float(value)  # YAML 1.1 leaves "3e-4" a string
    return key.split("."), value


def apply_overrides(values: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply `key.sub=value` overrides to a nested dict (lists are indexed by number).

    A key that does not exist yet is created (then checked when the recipe is built, so a
    misspelt key is reported as unknown). Returns a new dict.
    """
    result = copy.deepcopy(values) if values else {}
    for text in overrides:
        path, value = parse_override(text)
        node: Any = result
        for depth, part in enumerate(path[:-1]):
            node = _child(node, part, path[:depth + 1], text)
        _assign(node, path[-1], value, text)
    return result


def _child(node: Any, part: str, path: list[str], text: str) -> Any:
    if isinstance(node, list):
        index = _index(node, part, text, allow_append=False)
        return node[index]
    if not isinstance(node, dict):
        raise ConfigError(f"override {text!r}: {'.'.join(path[:-1])} is not a mapping")
    if node.get(part) is None:
        node[part] = {}
    return node[part]


def _assign(node: Any, part: str, value: Any, text: str) -> None:
    if isinstance(node, list):
        index = _index(node, part, text, allow_append=True)
        if index == len(node):
            node.append(value)
        else:
            node[index] = value
    elif isinstance(node, dict):
        node[part] = value
    else:
        raise ConfigError(f"override {text!r}: cannot set {part!r} inside {node!r}")


def _index(node: list[Any], part: str, text: str, allow_append: bool) -> int:
    try:
        index = int(part)
    except ValueError:
        raise ConfigError(f"override {text!r}: {part!r} must be a list index") from None
    limit = len(node) + (1 if allow_append else 0)
    if not 0 <= index < limit:
        raise ConfigError(f"override {text!r}: list index {index} out of range ({len(node)} items)")
    return index


def read_yaml(path: str | os.PathLike) -> dict[str, Any]:
    """Read a YAML mapping from a file (ConfigError when missing or malformed)."""
    import yaml

    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"recipe not found: {file}")
    try:
        values = yaml.safe_load(file.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"recipe {file} is not valid YAML{where}: "
                          f"{getattr(exc, 'problem', None) or exc}") from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ConfigError(f"recipe {file}: expected a mapping of sections at the top level")
    return values


def load_recipe(path: str | os.PathLike | None = None, overrides: list[str] | None = None,
                base: dict[str, Any] | None = None) -> Recipe:
    """Read a YAML recipe (or start from `base`), apply overrides, validate.

    Raises ConfigError with one clear line for a missing file, bad YAML, unknown keys or
    wrong value types.
    """
    values: dict[str, Any] = copy.deepcopy(base) if base else {}
    if path is not None:
        values = _merge(values, read_yaml(path))
    values = apply_overrides(values, list(overrides or []))
    return recipe_from_dict(values)


def _merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    result = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = _merge(result[key], value)
        else:
            result[key] = value
    return result


def dump_recipe(recipe: Recipe, path: str | os.PathLike) -> Path:
    """Write the resolved recipe as YAML (atomically)."""
    import yaml

    from changeseg.io.images import atomic_write

    text = yaml.safe_dump(recipe.to_dict(), sort_keys=False, allow_unicode=True)
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


# ------------------------------------------------------------------ fine-tuning


FINETUNE_DEFAULTS: dict[str, Any] = {
    "name": "finetune",
    "seed": 42,
    "data": {
        "val_fraction": 0.2,
        "crop_size": 256,
        "batch_size": 4,
        "val_batch_size": 1,
        "num_workers": 2,
        "augment": {"hflip": 0.5, "vflip": 0.5, "rot90": 0.5, "rotate": 15.0, "p_rotate": 0.3,
                    "scale": [0.75, 1.25], "p_scale": 0.5, "color_jitter": 0.2, "p_color": 0.5},
    },
    "loss": {"name": "ce", "class_weights": "auto"},
    "optim": {"optimizer": "adam", "lr": 3.0e-5, "warmup_steps": 20, "schedule": "cosine",
              "freeze_bn": True},
    "trainer": {"max_epochs": 20, "checkpoint_every_n_steps": 50, "log_every_n_steps": 5},
}
"""A recipe for a handful of pairs: small learning rate, few epochs, strong augmentation,
64 random crops per source per epoch. The whole network trains, its backbone's BatchNorm
statistics kept as the starting model's (`freeze_bn`, since 2026-12-06: ahead on the street-view
leave-one-out at two seeds and level on fixed cameras; docs/training.md, "Fix the backbone's
BatchNorm statistics"; `optim.freeze_bn=false` lets them follow the batches, as before). From
a preset (an ImageNet backbone) they follow the batches."""

FINETUNE_CROPS_PER_EPOCH = 64

FINETUNE_FEW_PAIRS = 10
"""With fewer pairs than this, `changeseg finetune` holds none back: it trains on all of them and
chooses the threshold on them. A validation split of one or two pairs costs a third to a half of
the training pairs and picks a noisy threshold (docs/training.md, "A handful of pairs")."""


def finetune_base(start: str, data_specs: Sequence[str]) -> dict[str, Any]:
    """The recipe dict `changeseg finetune` starts from (before --config and overrides).

    `start` is a trained change-model folder (its architecture, normalisation and class
    names are kept) or a preset name (a fresh C-3PO network on an ImageNet backbone).
    """
    from changeseg.errors import CheckpointError
    from changeseg.io.checkpoints import read_config
    from changeseg.models import PRESETS

    values = copy.deepcopy(FINETUNE_DEFAULTS)
    path = Path(start)
    if path.is_dir():
        try:
            source = read_config(path)
        except CheckpointError as exc:
            raise ConfigError(f"--from {start}: {exc}") from None
        # the class count, stated so the recipe checks (class names, monitors) see the model's
        values["model"] = {"init_from": str(path), "num_classes": int(source.model["num_classes"])}
        values["data"]["mean"] = list(source.mean)
        values["data"]["std"] = list(source.std)
        values["data"]["class_names"] = list(source.class_names)
        values["output"] = {"threshold": source.threshold}
        if source.metadata.get("input_scaling"):  # the fine-tuned model scales its input alike
            values["output"]["input_scaling"] = str(source.metadata["input_scaling"])
        values["name"] = f"finetune-{path.resolve().name}"
    elif start in PRESETS:
        values["model"] = {"preset": start, "pretrained": "imagenet"}
        values["optim"]["lr"] = 1.0e-4
        # ImageNet's statistics are not a trained change model's: `aerial` learnt less with them
        # kept (docs/models.md, "link 10"), so from a preset they follow the batches
        values["optim"]["freeze_bn"] = False
        values["name"] = f"finetune-{start}"
    else:
        raise ConfigError(f"--from {start}: not a model folder nor a preset name "
                          f"(presets: {', '.join(PRESETS)})")
    values["data"]["train"] = [{"spec": spec, "samples_per_epoch": FINETUNE_CROPS_PER_EPOCH}
                               for spec in data_specs]
    return values
