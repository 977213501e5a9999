"""The settings of the synthetic pair generator (`SynthConfig`): every knob but size and seed."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from changeseg.errors import ConfigError


@dataclass(frozen=True)
class SynthConfig:
    """Every knob of the generator except image size and seed (which identify a set).

    Ranges are ``(low, high)`` and sampled uniformly; probabilities are per pair and per image.
    """

    # changes
    min_changes: int = 1
    max_changes: int = 3
    p_no_change: float = 0.1  # share of pairs with nuisance only (an all-zero mask)
    change_weights: tuple[float, float, float] = (1.0, 1.0, 1.0)  # appear, disappear, exchange
    object_size: tuple[float, float] = (0.12, 0.4)  # object side as a fraction of the image side
    feather: tuple[float, float] = (0.6, 2.0)  # sigma (px) of the object's soft edge
    min_object_contrast: float = 15.0  # mean grey-level difference an object should make
    # nuisance
    nuisance: bool = True  # False: no nuisance at all (clean pairs)
    reference_nuisance: bool = True  # photometric nuisance drawn independently for the reference
    p_misregistration: float = 0.7
    max_shift: float = 4.0  # px, each axis
    max_rotation: float = 2.0  # degrees
    max_scale: float = 0.03  # relative
    max_corner_shift: float = 2.0  # px: corners moved independently (a small homography)
    p_shadow: float = 0.4
    shadow_strength: tuple[float, float] = (0.2, 0.5)
    p_illumination: float = 0.8
    brightness: float = 0.25  # gain in [1 - b, 1 + b]
    bias: float = 20.0  # grey levels
    gamma: float = 0.25  # gamma in [1 / (1 + g), 1 + g]
    colour: float = 0.08  # per-channel gain in [1 - c, 1 + c]
    gradient: float = 0.15  # amplitude of a linear illumination gradient
    p_blur: float = 0.3
    blur_sigma: tuple[float, float] = (0.4, 1.5)
    p_noise: float = 0.5
    noise_sigma: tuple[float, float] = (1.0, 6.0)
    p_jpeg: float = 0.4
    jpeg_quality: tuple[int, int] = (30, 90)
    p_season: float = 0.25  # season-like shift: vegetation greener or browner, sky and light warmer
    season_hue: float = 12.0  # max hue rotation of green pixels, degrees
    # copy-paste (used when the generator has an object bank)
    p_real_object: float = 0.85  # share of objects that are real cut-outs (the rest: blobs)
    p_inpaint: float = 0.5  # scenes that hold known objects: remove one of them (appear/disappear)
    colour_match: tuple[float, float] = (0.0, 0.7)  # pull a cut-out's colour towards the scene
    p_cast_shadow: float = 0.4
    shadow_darkness: tuple[float, float] = (0.25, 0.55)
    ground_placement: bool = True  # stand objects on the scene's ground where it is known
    horizon: float = 0.35  # assumed horizon (fraction of the height) for ground perspective

    def __post_init__(self) -> None:
        for item in fields(self):
            value = getattr(self, item.name)
            if isinstance(value, list):  # from JSON
                object.__setattr__(self, item.name, tuple(value))
        if not 0 <= self.min_changes <= self.max_changes:
            raise ConfigError("synthetic config: need 0 <= min_changes <= max_changes")
        for name in ("p_no_change", "p_misregistration", "p_shadow", "p_illumination", "p_blur",
                     "p_noise", "p_jpeg", "p_real_object", "p_inpaint", "p_cast_shadow",
                     "horizon", "p_season"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"synthetic config: {name} must be in [0, 1]")
        weights = self.change_weights
        if len(weights) != 3 or min(weights) < 0 or sum(weights) <= 0:
            raise ConfigError("synthetic config: change_weights needs three non-negative weights "
                              "(appear, disappear, exchange) with a positive sum")
        for name in ("object_size", "feather", "shadow_strength", "blur_sigma", "noise_sigma",
                     "jpeg_quality", "colour_match", "shadow_darkness"):
            low, high = getattr(self, name)
            if low > high or low < 0:
                raise ConfigError(f"synthetic config: {name} must be a range (low, high), "
                                  f"0 <= low <= high")
        if self.object_size[0] < 0.02 or self.object_size[1] > 0.9:
            raise ConfigError("synthetic config: object_size must lie within [0.02, 0.9]")
        if self.colour_match[1] > 1 or self.shadow_darkness[1] > 1:
            raise ConfigError("synthetic config: colour_match and shadow_darkness must lie "
                              "within [0, 1]")
        if self.jpeg_quality[0] < 1 or self.jpeg_quality[1] > 100:
            raise ConfigError("synthetic config: jpeg_quality must lie within [1, 100]")

    def to_dict(self) -> dict[str, Any]:
        """The settings as plain JSON-serialisable values."""
        return {key: list(value) if isinstance(value, tuple) else value
                for key, value in asdict(self).items()}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> SynthConfig:
        """Rebuild a config from `to_dict` output; unknown keys are a ConfigError."""
        known = {item.name for item in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"synthetic config: unknown settings {', '.join(unknown)}")
        return cls(**values)
