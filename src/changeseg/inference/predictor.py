"""`ChangeDetector`: load a change model by name or folder and predict on image pairs."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from changeseg.errors import CheckpointError, ConfigError, InputError, WeightsNotFoundError
from changeseg.hardware import cpu_supports_bf16
from changeseg.inference.align import AlignOptions
from changeseg.inference.multiscale import with_views
from changeseg.inference.pipeline import detect_pair
from changeseg.inference.result import (  # noqa: F401  (match_size, result_from_probabilities: re-exported)
    ChangeResult,
    match_size,
    result_from_probabilities,
)
from changeseg.inference.tiling import DEFAULT_TILE_SIZE, TilingOptions
from changeseg.io.checkpoints import (
    WEIGHTS_FILE,
    CheckpointConfig,
    check_state_dict,
    load_checkpoint,
    packaged_models,
    save_checkpoint,
)
from changeseg.io.images import (
    ImageLike,
    read_image,
    to_float,
    to_model_channels,
)
from changeseg.models.ensemble import EnsembleModel, build_network
from changeseg.models.model import ChangeSegModel, ModelConfig
from changeseg.models.presets import PRESETS, preset_config

PRECISIONS = ("auto", "fp32", "bf16")
DEFAULT_MODEL = "default"
# Used while no trained `default` is packaged: an untrained network, flagged as such everywhere.
FALLBACK_PRESET = "c3po-mobilenetv2-fcn"


class ChangeDetector:
    """A change-detection model ready to predict: weights, normalisation, classes, device."""

    backend_name = "torch"

    def __init__(self, model: ChangeSegModel | EnsembleModel, config: CheckpointConfig, device: str = "cpu",
                 precision: str = "auto", name: str = "", trained: bool = True) -> None:
        if precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        self.device = resolve_device(device)
        self.config = config
        self.name = name
        self.trained = trained
        self.model = model.to(self.device).eval()
        self.precision = self._resolve_precision(precision)
        if self.precision == "bf16":
            self.model = self.model.to(memory_format=torch.channels_last)

    def _resolve_precision(self, precision: str) -> str:
        if precision != "auto":
            return precision
        if self.device.type == "cpu":
            return "bf16" if cpu_supports_bf16() else "fp32"
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike = DEFAULT_MODEL, device: str = "cpu",
                        precision: str = "auto", backend: str = "torch") -> Any:
        """Load a checkpoint folder, a packaged trained model by name, or a preset (untrained).

        Resolution order: an existing folder; a model shipped in the package; a preset name
        (built with an ImageNet backbone where available and an untrained head, flagged
        `trained=False`); "default" falls back to the default preset while no trained default
        is packaged.

        `backend` other than "torch" ("onnx", "openvino" or "auto") returns that backend's
        detector instead (`changeseg.inference.loading.load_backend`): same `predict`,
        `predict_proba`, `prepare` and `class_names`; a packaged model or checkpoint is exported
        to ONNX once into the user cache. `precision` may then also be "int8".
        """
        if backend != "torch":
            from changeseg.inference.loading import BackendSpec, load_backend

            return load_backend(BackendSpec(str(name_or_path), backend, device, precision))
        key = str(name_or_path)
        path = Path(key)
        exported = path.is_dir() and (path / "model.onnx").is_file() and not (path / WEIGHTS_FILE).is_file()
        if exported or path.is_file() and path.suffix.lower() == ".onnx":
            raise CheckpointError(f"{path} is an exported ONNX model, which PyTorch does not run; use "
                                  "--backend onnx or --backend openvino (in Python: backend=\"onnx\")")
        if path.is_dir():
            return cls._from_folder(path, device, precision, name=str(path))
        packaged = packaged_models()
        if key in packaged:
            return cls._from_folder(packaged[key], device, precision, name=key)
        if key in PRESETS or key == DEFAULT_MODEL:
            preset = FALLBACK_PRESET if key == DEFAULT_MODEL else key
            return cls._untrained(preset, device, precision, name=key)
        if path.suffix or os.sep in key:
            raise CheckpointError(f"model folder not found: {key}")
        known = ", ".join([*packaged, *PRESETS] or ["(none)"])
        raise CheckpointError(f"unknown model {key!r}: not a folder, a packaged model or a preset "
                              f"(known: {known})")

    @classmethod
    def _from_folder(cls, folder: Path, device: str, precision: str, name: str) -> ChangeDetector:
        config, state = load_checkpoint(folder)
        try:
            model = build_network(ModelConfig.from_dict(config.model))
        except (ConfigError, TypeError) as exc:
            raise CheckpointError(f"checkpoint {folder}: bad model config ({exc})") from None
        check_state_dict(model.state_dict(), state, str(folder))
        model.load_state_dict(state)
        trained = bool(config.metadata.get("trained", True))
        return cls(model, config, device, precision, name=name, trained=trained)

    @classmethod
    def _untrained(cls, preset: str, device: str, precision: str, name: str) -> ChangeDetector:
        options = preset_config(preset)
        try:
            model = ChangeSegModel(ModelConfig.from_dict(options), pretrained="imagenet")
            init = "ImageNet backbone, random fusion and head"
        except WeightsNotFoundError:
            model = ChangeSegModel(ModelConfig.from_dict(options))
            init = "random weights"
        config = CheckpointConfig(model=model.config.to_dict(),
                                  metadata={"trained": False, "preset": preset, "init": init})
        return cls(model, config, device, precision, name=name, trained=False)

    @classmethod
    def from_model(cls, model: ChangeSegModel | EnsembleModel, config: CheckpointConfig | None = None,
                   device: str = "cpu", precision: str = "auto", name: str = "") -> ChangeDetector:
        """Wrap an in-memory network (e.g. straight from training)."""
        config = config or CheckpointConfig(model=model.config.to_dict())
        return cls(model, config, device, precision, name=name,
                   trained=bool(config.metadata.get("trained", True)))

    def save_pretrained(self, folder: str | os.PathLike, storage_dtype: str = "float32") -> Path:
        """Write this model as a checkpoint folder that `from_pretrained` rebuilds alone."""
        state = {k: v.float() if v.is_floating_point() else v
                 for k, v in self.model.state_dict().items()}
        return save_checkpoint(folder, state, self.config, storage_dtype)

    @property
    def class_names(self) -> list[str]:
        """Names of the model's output classes (index 0 is "no change")."""
        return self.config.class_names

    def prepare(self, image: ImageLike, name: str) -> np.ndarray:
        """Read an image and adapt it to the model's channel count (H×W×C, original dtype)."""
        return to_model_channels(read_image(image, name), self.model.config.in_channels)

    def _to_tensor(self, image: np.ndarray) -> torch.Tensor:
        """Normalised N×C×H×W tensor from an H×W×C image or an N×H×W×C batch."""
        array = to_float(image)
        batch = array if array.ndim == 4 else array[None]
        channels = batch.shape[3]
        mean = np.asarray(self.config.mean[:channels], np.float32)
        std = np.asarray(self.config.std[:channels], np.float32)
        if mean.size != channels or std.size != channels:
            raise InputError(f"the model's normalisation has {len(self.config.mean)} channels, "
                             f"the image has {channels}")
        batch = (batch - mean) / std
        tensor = torch.from_numpy(np.ascontiguousarray(batch.transpose(0, 3, 1, 2)))
        return tensor.to(self.device)

    def _forward_proba(self, ref: torch.Tensor, cmp: torch.Tensor) -> np.ndarray:
        with torch.inference_mode():
            if self.precision == "bf16":
                ref = ref.contiguous(memory_format=torch.channels_last)
                cmp = cmp.contiguous(memory_format=torch.channels_last)
                with torch.autocast(self.device.type, dtype=torch.bfloat16):
                    logits = self.model(ref, cmp)
            else:
                logits = self.model(ref, cmp)
            return torch.softmax(logits.float(), dim=1).cpu().numpy()

    def branch_maps(self, reference: np.ndarray, comparison: np.ndarray
                    ) -> tuple[list[dict[str, np.ndarray]], list[int]]:
        """Each MTF branch's activation map per used pyramid level, finest level first, and the
        levels' strides (the patent's Fig. 12; `changeseg.inference.branches` writes them).

        A map is the mean absolute activation over the branch's channels, h×w float32 on the
        level's grid (of the input padded to a multiple of 32). One fp32 pass, no autocast.
        """
        with torch.inference_mode():
            _, levels = self.model(self._to_tensor(reference), self._to_tensor(comparison),
                                   return_branches=True)
        maps = [{branch: activation[0].float().abs().mean(dim=0).cpu().numpy()
                 for branch, activation in level.items()} for level in levels]
        return maps, list(self.model.branch_reductions)

    def predict_proba(self, reference: np.ndarray, comparison: np.ndarray) -> np.ndarray:
        """Class probabilities (num_classes×H×W float32) for two prepared, same-size images."""
        return self._forward_proba(self._to_tensor(reference), self._to_tensor(comparison))[0]

    def predict_proba_batch(self, references: np.ndarray, comparisons: np.ndarray) -> np.ndarray:
        """Class probabilities (N×num_classes×H×W) for N prepared pairs of one size (N×H×W×C each).

        Used by tiling to send several tiles through the network at once.
        """
        return self._forward_proba(self._to_tensor(references), self._to_tensor(comparisons))

    def predict(self, reference: ImageLike, comparison: ImageLike, threshold: float | None = None,
                min_area: int | None = None, resize: bool = False, tile_size: int = DEFAULT_TILE_SIZE,
                tile_overlap: int | None = None, tile_batch: int = 1,
                align: bool | str | AlignOptions = False, tta: bool | str = False,
                scales: Sequence[float] | None = None, scale: str | None = None,
                split_depth: float | None = None, split_cover: float | None = None,
                domain: str | None = None) -> ChangeResult:
        """Detect changes between two images (paths, PIL images or arrays).

        `threshold` (default: the model's own) applies to the probability of any change; regions
        smaller than `min_area` pixels are dropped (default: the model's own,
        `config.metadata["min_area"]`, 0 for most models). Images of different sizes are an InputError
        unless `resize=True`, which resizes the comparison to the reference, or `align` (True, "sift",
        "orb" or `AlignOptions`), which registers the comparison onto the reference and marks the
        reference pixels it does not cover as unknown (`result.unknown`, never changed;
        `result.alignment` reports the fit). Images larger than `tile_size` pixels (0 = never) are
        predicted as overlapping tiles of that size (`tile_overlap` pixels, default a quarter tile up
        to 128; `tile_batch` tiles per forward pass) blended into one map. `tta=True` averages over a
        mirrored and a swapped view (`changeseg.inference.tta`; three forward passes, two for a
        swap-symmetric network such as `pcb`'s),
        `tta="dihedral"` over the eight rotations and mirror images (for boards and aerial scenes;
        eight passes). `scales` averages over the pair resized by each factor, e.g. (1, 2)
        (`changeseg.inference.multiscale`; one forward pass per scale, sharper outlines of small
        objects; default: the model's own, `config.metadata["scales"]`, else (1,)). `scale` maps raw
        pixel values to the model's 0–1 input ("auto", "dtype", "reflectance[:N]",
        "percentile[:LO,HI]"; default "auto": 8-bit as is, other integer images the model's recorded
        scaling; see `changeseg.io.scaling`). `split_depth` > 0 splits a region that holds several
        blobs (touching defects) along the necks between them, keeping a split only where the pieces'
        boxes cover at most `split_cover` times the whole's box (`changeseg.region_split`); both
        default to the model's own (`config.metadata["split_depth"]`, `["split_cover"]`), else no
        splitting (0; cover 1.0). `domain` (e.g. "fixed-camera") applies the model's calibration for
        that kind of pair to the probabilities (`changeseg.inference.domains`;
        `config.metadata["domains"]` lists them).
        """
        tiling = TilingOptions(tile_size, tile_overlap, tile_batch)
        backend = with_views(self, tta, scales, domain)
        return detect_pair(backend, reference, comparison, threshold, min_area, resize, tiling, align,
                           scale=scale, split_depth=split_depth, split_cover=split_cover)


def resolve_device(device: str) -> torch.device:
    """A torch device from "cpu", "cuda", "cuda:N" or "auto", checked to exist."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError:
        raise InputError(f"unknown device {device!r}; use cpu, cuda, cuda:N or auto") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {device!r} requested but no CUDA GPU is available")
    if resolved.type not in ("cpu", "cuda"):
        raise InputError(f"unsupported device {device!r}; use cpu, cuda, cuda:N or auto")
    return resolved
