"""Checkpoint folders: `model.safetensors` + `config.json` (the Hugging Face convention).

`config.json` carries everything needed to rebuild and use the model with no training
config: the architecture, input normalisation, class names, the decision threshold, the
format version and free-form training metadata.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from changeseg import __version__
from changeseg.errors import CheckpointError
from changeseg.imagenet import IMAGENET_MEAN, IMAGENET_STD
from changeseg.io.images import atomic_write, write_json
from changeseg.labels import BINARY_CLASSES

if TYPE_CHECKING:
    from torch import Tensor

# torch and safetensors.torch are imported inside the functions that need them, so reading a
# checkpoint's config (e.g. by the torch-free ONNX runtime) never imports torch.

FORMAT_NAME = "changeseg-checkpoint"
FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"


def packaged_models() -> dict[str, Path]:
    """Trained models shipped inside the package (``changeseg/weights/NAME/``), by name."""
    root = Path(str(resources.files("changeseg") / "weights"))
    if not root.is_dir():
        return {}
    return {p.name: p for p in sorted(root.iterdir()) if (p / CONFIG_FILE).is_file()}


def model_folder(name_or_path: str | os.PathLike) -> Path | None:
    """The folder a model argument names: itself if it is a folder, else the packaged model of
    that name; None when it is neither (a preset name, a typo, a missing folder)."""
    path = Path(name_or_path)
    if path.is_dir():
        return path
    return packaged_models().get(str(name_or_path))


@dataclass
class CheckpointConfig:
    """The contents of config.json besides the format fields."""

    model: dict[str, Any]
    mean: list[float] = field(default_factory=lambda: list(IMAGENET_MEAN))
    std: list[float] = field(default_factory=lambda: list(IMAGENET_STD))
    class_names: list[str] = field(default_factory=lambda: list(BINARY_CLASSES))
    threshold: float = 0.5
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_json(self, storage_dtype: str) -> dict[str, Any]:
        """The JSON document written as config.json."""
        return {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "changeseg_version": __version__,
            "model": self.model,
            "normalization": {"mean": list(self.mean), "std": list(self.std)},
            "class_names": list(self.class_names),
            "threshold": self.threshold,
            "storage_dtype": storage_dtype,
            "metadata": self.metadata,
        }


def save_checkpoint(folder: str | os.PathLike, state_dict: dict[str, Tensor],
                    config: CheckpointConfig, storage_dtype: str = "float32") -> Path:
    """Write a checkpoint folder atomically file by file; returns the folder.

    `storage_dtype="float16"` halves the size on disk; weights are cast back to float32 on load.
    """
    import torch
    from safetensors.torch import save_file

    if storage_dtype not in ("float32", "float16"):
        raise CheckpointError(f"storage_dtype must be float32 or float16, got {storage_dtype!r}")
    target = Path(folder)
    dtype = torch.float16 if storage_dtype == "float16" else torch.float32
    tensors = {
        name: (t.detach().to("cpu", dtype) if t.is_floating_point() else t.detach().cpu())
        .contiguous()
        for name, t in state_dict.items()
    }
    atomic_write(target / WEIGHTS_FILE, lambda tmp: save_file(tensors, str(tmp),
                                                             metadata={"format": "pt"}))
    write_json(target / CONFIG_FILE, config.to_json(storage_dtype))
    return target


def load_checkpoint(folder: str | os.PathLike) -> tuple[CheckpointConfig, dict[str, Tensor]]:
    """Read a checkpoint folder; raises CheckpointError naming what is missing or wrong."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    root = Path(folder)
    if not root.is_dir():
        raise CheckpointError(f"checkpoint folder not found: {root}")
    config = read_config(root)
    weights = root / WEIGHTS_FILE
    if not weights.is_file():
        raise CheckpointError(f"checkpoint {root} is missing {WEIGHTS_FILE}")
    try:
        tensors = load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {root}: {WEIGHTS_FILE} is not a valid safetensors "
                              f"file ({exc})") from None
    state = {k: (t.float() if t.is_floating_point() else t) for k, t in tensors.items()}
    return config, state


def read_config(folder: str | os.PathLike) -> CheckpointConfig:
    """Read and validate only config.json of a checkpoint folder."""
    root = Path(folder)
    path = root / CONFIG_FILE
    if not path.is_file():
        raise CheckpointError(f"checkpoint {root} is missing {CONFIG_FILE}")
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"checkpoint {root}: {CONFIG_FILE} is not valid JSON ({exc})") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT_NAME:
        raise CheckpointError(f"checkpoint {root}: {CONFIG_FILE} is not a changeseg checkpoint "
                              f"config (no \"format\": \"{FORMAT_NAME}\")")
    version = document.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(f"checkpoint {root} has format version {version!r}; this changeseg "
                              f"({__version__}) reads version {FORMAT_VERSION}")
    try:
        norm = document["normalization"]
        return CheckpointConfig(
            model=dict(document["model"]),
            mean=[float(v) for v in norm["mean"]],
            std=[float(v) for v in norm["std"]],
            class_names=[str(c) for c in document["class_names"]],
            threshold=float(document.get("threshold", 0.5)),
            metadata=dict(document.get("metadata", {})),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {root}: {CONFIG_FILE} lacks or garbles {exc}") from None


def check_state_dict(expected: dict[str, Tensor], loaded: dict[str, Tensor], source: str) -> None:
    """Raise CheckpointError listing missing, unexpected or wrongly shaped tensors."""
    problems = []
    missing = [k for k in expected if k not in loaded]
    unexpected = [k for k in loaded if k not in expected]
    shapes = [f"{k} {tuple(loaded[k].shape)} != {tuple(v.shape)}"
              for k, v in expected.items() if k in loaded and loaded[k].shape != v.shape]
    if missing:
        problems.append(f"{len(missing)} missing tensor(s) (e.g. {missing[0]})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected tensor(s) (e.g. {unexpected[0]})")
    if shapes:
        problems.append(f"{len(shapes)} wrongly shaped tensor(s) (e.g. {shapes[0]})")
    if problems:
        raise CheckpointError(f"checkpoint {source} does not match its config: "
                              + "; ".join(problems))
