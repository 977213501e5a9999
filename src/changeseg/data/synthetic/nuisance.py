"""Whole-image nuisance of synthetic pairs: shadows, illumination and colour, season-like
shifts, blur, noise and JPEG (changes that must not count as change)."""

from __future__ import annotations

import math
from typing import Any

import cv2
import numpy as np

from changeseg.data.synthetic.config import SynthConfig
from changeseg.data.synthetic.ops import to_uint8


def season(image: np.ndarray, rng: np.random.Generator,
            max_hue: float) -> tuple[np.ndarray, dict[str, float]]:
    """A season-like colour shift: green pixels turn more yellow/brown or more green (hue
    rotation weighted by how green a pixel is) and their saturation changes, while the whole
    image warms or cools slightly. uint8 RGB in and out."""
    hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV_FULL).astype(np.float32)
    hue_deg = hsv[:, :, 0] * (360.0 / 256.0)
    greenness = np.clip(1.0 - np.abs(hue_deg - 110.0) / 50.0, 0.0, 1.0)
    greenness *= np.clip(hsv[:, :, 1] / 60.0, 0.0, 1.0)  # grey pixels keep their colour
    rotation = float(rng.uniform(-max_hue, max_hue))
    saturation = float(rng.uniform(0.75, 1.25))
    warmth = float(rng.uniform(-0.05, 0.05))
    hsv[:, :, 0] = np.mod(hue_deg + rotation * greenness, 360.0) * (256.0 / 360.0)
    hsv[:, :, 1] = np.clip(hsv[:, :, 1] * (1.0 + (saturation - 1.0) * greenness), 0, 255)
    rgb = cv2.cvtColor(np.clip(hsv + 0.5, 0, 255).astype(np.uint8), cv2.COLOR_HSV2RGB_FULL)
    gains = np.array([1.0 + warmth, 1.0, 1.0 - warmth], np.float32)
    out = to_uint8(rgb.astype(np.float32) * gains)
    return out, {"hue": rotation, "saturation": saturation, "warmth": warmth}


def smooth_field(rng: np.random.Generator, size: int, corners: int) -> np.ndarray:
    """A soft random polygon covering part of a size×size image (float32 in [0, 1])."""
    low = max(16, size // 4)
    centre = rng.uniform(0.0, 1.0, 2) * low
    radius = rng.uniform(0.2, 0.6) * low
    angles = np.sort(rng.uniform(0.0, 2 * math.pi, corners))
    radii = radius * rng.uniform(0.5, 1.3, corners)
    points = np.stack([centre[0] + np.cos(angles) * radii, centre[1] + np.sin(angles) * radii],
                      axis=1)
    canvas = np.zeros((low, low), np.float32)
    cv2.fillPoly(canvas, [np.round(points).astype(np.int32)], 1.0)
    canvas = cv2.GaussianBlur(canvas, (0, 0), rng.uniform(0.02, 0.08) * low + 0.5)
    return cv2.resize(canvas, (size, size), interpolation=cv2.INTER_LINEAR)


def photometric(image: np.ndarray, rng: np.random.Generator,
                 cfg: SynthConfig) -> tuple[np.ndarray, dict[str, Any]]:
    """Whole-image nuisance: shadows, illumination/colour, blur, noise, JPEG. uint8 in and out."""
    size_y, size_x = image.shape[:2]
    params: dict[str, Any] = {}
    gain_map: np.ndarray | None = None  # per-pixel gain (shadows, illumination gradient)
    colour = np.ones(3, np.float32)
    bias = 0.0
    if rng.random() < cfg.p_shadow:
        shade = np.zeros((size_y, size_x), np.float32)
        count = int(rng.integers(1, 3))
        for _ in range(count):
            field_ = smooth_field(rng, max(size_y, size_x), int(rng.integers(3, 7)))
            np.maximum(shade, field_[:size_y, :size_x], out=shade)
        strength = float(rng.uniform(*cfg.shadow_strength))
        gain_map = 1.0 - strength * shade
        params["shadow"] = {"count": count, "strength": strength}
    if rng.random() < cfg.p_illumination:
        gamma = float(math.exp(rng.uniform(-1.0, 1.0) * math.log1p(cfg.gamma)))
        gain = float(rng.uniform(1 - cfg.brightness, 1 + cfg.brightness))
        colour = rng.uniform(1 - cfg.colour, 1 + cfg.colour, 3).astype(np.float32) * gain
        bias = float(rng.uniform(-cfg.bias, cfg.bias))
        direction = rng.uniform(0.0, 2 * math.pi)
        amplitude = float(rng.uniform(0.0, cfg.gradient))
        ys = np.linspace(-1.0, 1.0, size_y, dtype=np.float32)[:, None]
        xs = np.linspace(-1.0, 1.0, size_x, dtype=np.float32)[None, :]
        ramp = 1.0 + amplitude * (math.cos(direction) * xs + math.sin(direction) * ys)
        gain_map = ramp if gain_map is None else gain_map * ramp
        lut = np.clip(np.rint(255.0 * (np.arange(256) / 255.0) ** gamma), 0, 255).astype(np.uint8)
        image = cv2.LUT(image, lut)
        params["illumination"] = {"gamma": gamma, "gain": gain,
                                  "colour": (colour / gain).tolist(), "bias": bias,
                                  "gradient": amplitude}
    out = image.astype(np.float32)
    if gain_map is not None:
        out *= gain_map[:, :, None]
    if not np.all(colour == 1.0) or bias:
        out *= colour
        out += np.float32(bias)
    if rng.random() < cfg.p_blur:
        sigma = float(rng.uniform(*cfg.blur_sigma))
        out = cv2.GaussianBlur(out, (0, 0), sigma)
        params["blur"] = sigma
    if rng.random() < cfg.p_noise:
        sigma = float(rng.uniform(*cfg.noise_sigma))
        # zero-mean, unit-variance triangular noise (sum of two uniforms): ~3x cheaper than normal
        noise = rng.random(out.shape, dtype=np.float32)
        noise += rng.random(out.shape, dtype=np.float32)
        noise -= 1.0
        noise *= np.float32(math.sqrt(6.0) * sigma)
        out += noise
        params["noise"] = sigma
    result = to_uint8(out)
    if cfg.p_season > 0 and rng.random() < cfg.p_season:  # no draw when off: older sets stay
        result, params["season"] = season(result, rng, cfg.season_hue)
    if rng.random() < cfg.p_jpeg:
        quality = int(rng.integers(cfg.jpeg_quality[0], cfg.jpeg_quality[1] + 1))
        ok, buffer = cv2.imencode(".jpg", result[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
        if ok:
            result = np.ascontiguousarray(cv2.imdecode(buffer, cv2.IMREAD_COLOR)[:, :, ::-1])
            params["jpeg"] = quality
    return result, params
