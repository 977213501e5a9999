"""The synthetic pair generator: change pairs made from ordinary photos (the patent's
"ordinary image data").

A pair is built in three steps, each drawing from its own seeded random stream:

1. **Scene.** A random crop of a background photo is the unchanged scene. Objects - regions
   cut from another photo with a random smooth shape (a thresholded noise blob or a rounded
   random polygon, with feathered edges) - are pasted into it:
   *appear* puts an object in the comparison only, *disappear* in the reference only, and
   *exchange* puts one object in the reference and a different one at the same place in the
   comparison.
2. **Nuisance.** Changes that must not count as change are applied to the whole image:
   a small misregistration of the comparison (shift, rotation, scale about the centre) and,
   independently on each image, soft shadows, global illumination and colour shifts, blur,
   noise and JPEG artefacts.
3. **Labels.** ``mask`` is binary (0 no change, 1 change); ``typed_mask`` holds
   0 no change, 1 appear, 2 disappear, 3 exchange.

**Label frame.** Both images share one pixel grid and so do the labels. The comparison,
objects included, is warped as a whole (the camera moved), and each object is labelled where
it is *visible*: an appeared object where it is in the (warped) comparison, a disappeared
object where it is in the reference, an exchange as the union of the old object's footprint
in the reference and the new object's footprint in the comparison. This is exactly the set of
pixels at which the two images show different things for a reason other than nuisance. A
pixel counts as covered when the object's soft alpha is at least 0.5.

The same seed, index and settings give the same pair bit for bit (on the same library
versions), whatever else has been generated before, in any process.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any

import cv2
import numpy as np

from changeseg.data.copy_paste import (
    match_colour,
    perspective_scale,
    remove_object,
    resize_cutout,
    shadow_of,
)
from changeseg.data.objects import Cutout, ObjectBank, SceneLayout
from changeseg.data.synthetic.config import SynthConfig
from changeseg.data.synthetic.nuisance import photometric
from changeseg.data.synthetic.ops import (
    PlacedObject,
    apply_crop,
    blend,
    claim,
    crop_window,
    paste,
    random_crop,
    random_shape,
    to_uint8,
)
from changeseg.data.synthetic.photos import PhotoBank, PhotoSource
from changeseg.errors import ConfigError, InputError
from changeseg.labels import APPEAR, CHANGE_TYPES, DISAPPEAR, EXCHANGE

NAME_PATTERN = "synth_{index:06d}"

# a folder or a list of folders of real object cut-outs (see changeseg.data.objects)
ObjectSource = str | os.PathLike | Sequence[str | os.PathLike] | ObjectBank


@dataclass
class SyntheticPair:
    """One generated pair with everything known about how it was made.

    `changes` lists each placed change (type, code, box ``[x0, y0, x1, y1]`` in reference
    pixels, i.e. before misregistration, and the source photos); `nuisance` holds the nuisance
    parameters drawn for each image, including ``warp``: the 2×3 affine matrix mapping
    reference pixel coordinates to comparison pixel coordinates. `clean_reference` and
    `clean_comparison` are the pair before any nuisance.
    """

    reference: np.ndarray
    comparison: np.ndarray
    mask: np.ndarray
    typed_mask: np.ndarray
    name: str
    changes: list[dict[str, Any]] = field(default_factory=list)
    nuisance: dict[str, Any] = field(default_factory=dict)
    clean_reference: np.ndarray | None = None
    clean_comparison: np.ndarray | None = None

    def as_sample(self) -> dict[str, Any]:
        """The project's sample dict: reference, comparison, mask, typed_mask, name."""
        return {"reference": self.reference, "comparison": self.comparison, "mask": self.mask,
                "typed_mask": self.typed_mask, "name": self.name}


class SyntheticPairGenerator:
    """Make labelled change pairs from ordinary photos, reproducibly.

    Args:
        photos: a folder of photos, a list of arrays or image paths, or None for the colour
            photos bundled with scikit-image.
        size: side of the square output images.
        seed: base seed; pair `index` is drawn from ``SeedSequence([seed, index])`` so any
            pair can be made alone, in any order or process.
        config: a SynthConfig; keyword `overrides` replace single fields of it
            (e.g. ``nuisance=False``).
        objects: real object cut-outs to paste (copy-paste change): a folder, a list of
            folders or an ObjectBank (`changeseg.data.objects`). Without it objects are
            random smooth shapes cut from other photos (blobs).
        max_photo_side: shrink photos so their shorter side is at most this (default 3×size).
        cache_size: how many photos read from files stay in memory.

    Raises InputError for a missing or empty photo folder or an empty list.
    """

    def __init__(self, photos: PhotoSource = None, size: int = 256, seed: int = 0,
                 config: SynthConfig | None = None, *, objects: ObjectSource | None = None,
                 max_photo_side: int | None = None, cache_size: int = 32,
                 **overrides: Any) -> None:
        if int(size) != size or size < 32:
            raise ConfigError(f"synthetic pairs: size must be an integer >= 32, got {size}")
        if int(seed) != seed or seed < 0:
            raise ConfigError(f"synthetic pairs: seed must be a non-negative integer, got {seed}")
        config = config or SynthConfig()
        if overrides:
            known = {item.name for item in fields(SynthConfig)}
            unknown = sorted(set(overrides) - known)
            if unknown:
                raise ConfigError(f"synthetic pairs: unknown settings {', '.join(unknown)}")
            config = replace(config, **overrides)
        self.size = int(size)
        self.seed = int(seed)
        self.config = config
        self.photos = PhotoBank(photos, max_photo_side or 3 * self.size, cache_size)
        self.objects = (objects if isinstance(objects, ObjectBank) or objects is None
                        else ObjectBank(objects))
        # margin around the output so a misregistered comparison never shows the canvas edge
        half = self.size / 2
        reach = (config.max_shift + config.max_corner_shift
                 + half * (config.max_scale + math.radians(config.max_rotation)))
        self.margin = int(math.ceil(reach * 1.5)) + 2
        self.canvas = self.size + 2 * self.margin

    def __repr__(self) -> str:
        objects = f", objects={len(self.objects)}" if self.objects is not None else ""
        return (f"SyntheticPairGenerator(size={self.size}, seed={self.seed}, "
                f"photos={self.photos.description}{objects})")

    def settings(self) -> dict[str, Any]:
        """Everything needed to regenerate the same pairs (for meta.json)."""
        settings = {"size": self.size, "seed": self.seed, "photos": self.photos.description,
                    "max_photo_side": self.photos.max_side, "config": self.config.to_dict()}
        if self.objects is not None:
            settings["objects"] = self.objects.describe()
        return settings

    def name(self, index: int) -> str:
        """The name of pair `index`."""
        return NAME_PATTERN.format(index=index)

    def sample(self, index: int) -> dict[str, Any]:
        """Pair `index` in the project's sample format.

        ``{"reference", "comparison": uint8 H×W×3, "mask": uint8 H×W (0/1),
        "typed_mask": uint8 H×W (0..3), "name": str}``
        """
        return self.generate(index).as_sample()

    def __call__(self, index: int) -> dict[str, Any]:
        """Same as `sample`."""
        return self.sample(index)

    def generate(self, index: int) -> SyntheticPair:
        """Pair `index` with its provenance (placed changes, nuisance parameters, clean pair)."""
        if int(index) != index or index < 0:
            raise InputError(f"synthetic pairs: index must be a non-negative integer, got {index}")
        scene_seq, reference_seq, comparison_seq = np.random.SeedSequence(
            [self.seed, int(index)]).spawn(3)
        scene_rng = np.random.default_rng(scene_seq)
        cfg = self.config
        size, margin, canvas = self.size, self.margin, self.canvas

        # 1. scene on a canvas with a margin; alphas per change type (channel = code - 1)
        background_id = int(scene_rng.integers(len(self.photos)))
        photo = self.photos.get(background_id)
        crop = crop_window(photo, canvas, canvas, scene_rng, zoom=(0.75, 1.0), stretch=0.15)
        background = apply_crop(photo, crop, canvas, canvas)
        layout = None
        if self.objects is not None:  # copy-paste mode: ground and the scene's own objects
            known = self.photos.layout(background_id)
            if known is not None:
                layout = SceneLayout(
                    ground=apply_crop(known.ground.astype(np.uint8), crop, canvas, canvas,
                                       nearest=True) > 0,
                    objects=apply_crop(known.objects.astype(np.float32), crop, canvas, canvas,
                                        nearest=True).astype(np.int32))
        reference = background.astype(np.float32)
        comparison = reference.copy()
        reference_alpha = np.zeros((canvas, canvas, 3), np.float32)
        comparison_alpha = np.zeros((canvas, canvas, 3), np.float32)
        changes = self._place_changes(scene_rng, background_id, reference, comparison,
                                      reference_alpha, comparison_alpha, layout)
        inner = (slice(margin, margin + size), slice(margin, margin + size))
        clean_reference = to_uint8(reference[inner])
        clean_comparison = to_uint8(comparison[inner])
        reference_alpha = reference_alpha[inner]

        # 2. nuisance: geometry of the comparison (everything in it moves), then photometry
        reference_rng = np.random.default_rng(reference_seq)
        comparison_rng = np.random.default_rng(comparison_seq)
        nuisance: dict[str, Any] = {}
        if cfg.nuisance and comparison_rng.random() < cfg.p_misregistration:
            canvas_to_output, output_warp = self._draw_warp(comparison_rng)
            corners = self._draw_corner_shift(comparison_rng)
            if corners is None:
                comparison_image = cv2.warpAffine(to_uint8(comparison), canvas_to_output,
                                                  (size, size), flags=cv2.INTER_LINEAR,
                                                  borderMode=cv2.BORDER_REFLECT_101)
                comparison_alpha = cv2.warpAffine(comparison_alpha, canvas_to_output, (size, size),
                                                  flags=cv2.INTER_LINEAR,
                                                  borderMode=cv2.BORDER_CONSTANT, borderValue=0)
                homography = np.vstack([output_warp, [0.0, 0.0, 1.0]])
            else:  # similarity, then the small homography of the corner shift
                full = corners @ np.vstack([canvas_to_output, [0.0, 0.0, 1.0]])
                comparison_image = cv2.warpPerspective(to_uint8(comparison), full, (size, size),
                                                       flags=cv2.INTER_LINEAR,
                                                       borderMode=cv2.BORDER_REFLECT_101)
                comparison_alpha = cv2.warpPerspective(comparison_alpha, full, (size, size),
                                                       flags=cv2.INTER_LINEAR,
                                                       borderMode=cv2.BORDER_CONSTANT,
                                                       borderValue=0)
                homography = corners @ np.vstack([output_warp, [0.0, 0.0, 1.0]])
            nuisance["warp"] = output_warp.tolist()
            nuisance["homography"] = homography.tolist()
        else:
            comparison_image = clean_comparison
            comparison_alpha = comparison_alpha[inner]
            nuisance["warp"] = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]
            nuisance["homography"] = np.eye(3).tolist()
        reference_image = clean_reference
        if cfg.nuisance:
            comparison_image, nuisance["comparison"] = photometric(comparison_image,
                                                                    comparison_rng, cfg)
            if cfg.reference_nuisance:
                reference_image, nuisance["reference"] = photometric(reference_image,
                                                                      reference_rng, cfg)

        # 3. labels: each object where it is visible (see the module docstring)
        typed = np.zeros((size, size), np.uint8)
        for code in (APPEAR, DISAPPEAR, EXCHANGE):
            covered = (reference_alpha[:, :, code - 1] >= 0.5) | (
                comparison_alpha[:, :, code - 1] >= 0.5)
            typed[covered] = code
        for change in changes:
            _clip_box(change, margin, size)
        return SyntheticPair(
            reference=np.ascontiguousarray(reference_image),
            comparison=np.ascontiguousarray(comparison_image),
            mask=(typed > 0).astype(np.uint8), typed_mask=typed, name=self.name(index),
            changes=changes, nuisance=nuisance,
            clean_reference=clean_reference, clean_comparison=clean_comparison)

    # -- scene ----------------------------------------------------------------------------

    def _place_changes(self, rng: np.random.Generator, background_id: int, reference: np.ndarray,
                       comparison: np.ndarray, reference_alpha: np.ndarray,
                       comparison_alpha: np.ndarray,
                       layout: SceneLayout | None = None) -> list[dict[str, Any]]:
        """Paste objects into the canvases in place; returns a record of each change."""
        cfg = self.config
        if rng.random() < cfg.p_no_change:
            return []
        count = int(rng.integers(cfg.min_changes, cfg.max_changes + 1))
        weights = np.asarray(cfg.change_weights, np.float64)
        occupied = np.zeros(reference.shape[:2], np.uint8)
        changes: list[dict[str, Any]] = []
        if layout is not None and count > 0 and rng.random() < cfg.p_inpaint:
            native = self._remove_native(rng, layout, reference, comparison, reference_alpha,
                                         comparison_alpha, occupied)
            if native is not None:
                changes.append(native)
                count -= 1
        ground = layout.ground if layout is not None and cfg.ground_placement else None
        for _ in range(count):
            code = int(rng.choice(3, p=weights / weights.sum())) + 1
            if self.objects is not None and rng.random() < cfg.p_real_object:
                placed = self._place_cutouts(rng, code, reference, occupied, ground)
            else:
                placed = self._place_one(rng, code, background_id, reference, occupied)
            if placed is None:
                continue
            first, second = placed
            sources = [first.source]
            if code == APPEAR:
                paste(comparison, comparison_alpha, first, code)
            elif code == DISAPPEAR:
                paste(reference, reference_alpha, first, code)
            else:
                assert second is not None
                paste(reference, reference_alpha, first, code)
                paste(comparison, comparison_alpha, second, code)
                sources.append(second.source)
            boxes = [(obj.x0, obj.y0, obj.x0 + obj.alpha.shape[1], obj.y0 + obj.alpha.shape[0])
                     for obj in (first, second) if obj is not None]
            box = [min(b[0] for b in boxes), min(b[1] for b in boxes),
                   max(b[2] for b in boxes), max(b[3] for b in boxes)]
            changes.append({"type": CHANGE_TYPES[code - 1], "code": code, "box": box,
                            "sources": sources,
                            "objects": [obj.category for obj in (first, second) if obj is not None]})
        return changes

    def _remove_native(self, rng: np.random.Generator, layout: SceneLayout,
                       reference: np.ndarray, comparison: np.ndarray,
                       reference_alpha: np.ndarray, comparison_alpha: np.ndarray,
                       occupied: np.ndarray) -> dict[str, Any] | None:
        """Remove one of the scene's own objects by inpainting: it disappears from the
        comparison or (as an appearance) is absent from the reference. None when the scene
        holds no object of a usable size inside the output."""
        size, margin = self.size, self.margin
        inner = np.zeros_like(occupied, dtype=bool)
        inner[margin:margin + size, margin:margin + size] = True
        ids, areas = np.unique(layout.objects[inner], return_counts=True)
        usable = [int(i) for i, a in zip(ids, areas, strict=True)
                  if i > 0 and 0.004 * size * size <= a <= 0.25 * size * size]
        if not usable:
            return None
        object_id = usable[int(rng.integers(len(usable)))]
        mask = layout.objects == object_id
        weights = np.asarray(self.config.change_weights[:2], np.float64)
        if weights.sum() <= 0:
            return None
        code = int(rng.choice(2, p=weights / weights.sum())) + 1  # appear or disappear
        radius = max(2, size // 96)
        removed = remove_object(reference, mask, radius)
        soft = cv2.GaussianBlur(mask.astype(np.float32), (0, 0), 0.7)
        if code == DISAPPEAR:
            comparison[:] = removed
            np.maximum(reference_alpha[:, :, DISAPPEAR - 1], soft,
                       out=reference_alpha[:, :, DISAPPEAR - 1])
        else:
            reference[:] = removed
            np.maximum(comparison_alpha[:, :, APPEAR - 1], soft,
                       out=comparison_alpha[:, :, APPEAR - 1])
        gap = max(3, size // 64) + radius
        occupied |= cv2.dilate(mask.astype(np.uint8), np.ones((2 * gap + 1, 2 * gap + 1), np.uint8))
        ys, xs = np.nonzero(mask)
        return {"type": CHANGE_TYPES[code - 1], "code": code,
                "box": [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1],
                "sources": ["scene (inpainted)"], "objects": ["scene object"]}

    def _place_cutouts(self, rng: np.random.Generator, code: int, scene: np.ndarray,
                       occupied: np.ndarray, ground: np.ndarray | None
                       ) -> tuple[PlacedObject, PlacedObject | None] | None:
        """Place one change made of real cut-outs (an exchange: two of a similar shape).

        Objects stand on the scene's ground where it is known (size by perspective), else
        anywhere; None after 8 tries without a free place.
        """
        cfg = self.config
        bank = self.objects
        assert bank is not None
        size, margin = self.size, self.margin
        ground_points = None
        if ground is not None:
            inner = ground[margin:margin + size, margin:margin + size]
            if inner.mean() > 0.02:
                ground_points = np.nonzero(inner)
        for _ in range(8):
            side = rng.uniform(*cfg.object_size) * size
            if ground_points is not None:
                k = int(rng.integers(len(ground_points[0])))
                foot_y = margin + float(ground_points[0][k])
                foot_x = margin + float(ground_points[1][k])
                side *= 0.3 + 1.2 * perspective_scale(foot_y - margin, size, cfg.horizon)
            else:
                foot_y = margin + rng.uniform(0.25, 1.0) * size
                foot_x = margin + rng.uniform(0.1, 0.9) * size
            cutout = self._pick_cutout(rng, scene, foot_y, foot_x, side)
            first = self._cutout_object(rng, cutout, side, foot_y, foot_x, scene)
            second = None
            if code == EXCHANGE:
                other = self._pick_cutout(rng, scene, foot_y, foot_x, side, like=cutout)
                second = self._cutout_object(rng, other, side * math.exp(rng.uniform(-0.15, 0.15)),
                                             foot_y, foot_x, scene)
            if claim(occupied, (first, second), max(3, size // 64)):
                return first, second
        return None

    def _pick_cutout(self, rng: np.random.Generator, scene: np.ndarray, foot_y: float,
                     foot_x: float, side: float, like: Cutout | None = None) -> Cutout:
        """A random cut-out; with `like`, the one of 6 candidates closest to its shape (an
        exchange swaps an object for another of a similar size), else the first of up to 3
        whose colour differs enough from the scene where it will stand."""
        bank = self.objects
        assert bank is not None
        if like is not None:
            candidates = [bank.get(int(rng.integers(len(bank)))) for _ in range(6)]
            candidates = [c for c in candidates if c.name != like.name] or candidates
            return min(candidates, key=lambda c: abs(math.log(c.aspect / like.aspect)))
        best: tuple[float, Cutout] | None = None
        y = int(np.clip(foot_y - side / 2, 0, scene.shape[0] - 1))
        x = int(np.clip(foot_x, 0, scene.shape[1] - 1))
        half = max(2, int(side / 4))
        under = scene[max(0, y - half):y + half, max(0, x - half):x + half].reshape(-1, 3).mean(0)
        for _ in range(3):
            cutout = bank.get(int(rng.integers(len(bank))))
            weight = cutout.alpha[:, :, None]
            mean = (cutout.rgb * weight).sum((0, 1)) / max(float(weight.sum()), 1.0)
            contrast = float(np.abs(mean - under).mean())
            if best is None or contrast > best[0]:
                best = (contrast, cutout)
            if contrast >= self.config.min_object_contrast:
                break
        assert best is not None
        return best[1]

    def _cutout_object(self, rng: np.random.Generator, cutout: Cutout, side: float,
                       foot_y: float, foot_x: float, scene: np.ndarray) -> PlacedObject:
        """Scale a cut-out so its longer side is `side`, stand it at (foot_y, foot_x), match
        its colour to the scene, feather its edge and (sometimes) give it a cast shadow."""
        cfg = self.config
        aspect = cutout.aspect
        side = max(10.0, side)
        height = max(8, int(round(side if aspect >= 1 else side * aspect)))
        width = max(8, int(round(side / aspect if aspect >= 1 else side)))
        patch, alpha = resize_cutout(cutout.rgb, cutout.alpha, height, width)
        cast = rng.random() < cfg.p_cast_shadow
        pad = int(math.ceil(3 * cfg.feather[1])) + 1
        pad_x = pad + (int(0.4 * width) if cast else 0)
        box_h, box_w = height + 2 * pad, width + 2 * pad_x
        box_h, box_w = min(box_h, self.canvas), min(box_w, self.canvas)
        y0 = int(np.clip(round(foot_y - height - pad), 0, self.canvas - box_h))
        x0 = int(np.clip(round(foot_x - box_w / 2), 0, self.canvas - box_w))
        full_alpha = np.zeros((box_h, box_w), np.float32)
        full_patch = cv2.copyMakeBorder(patch, pad, pad, pad_x, pad_x, cv2.BORDER_REPLICATE)
        full_alpha[pad:pad + height, pad_x:pad_x + width] = alpha[:box_h - pad, :box_w - pad_x]
        full_patch = full_patch[:box_h, :box_w]
        sigma = float(rng.uniform(0.3, max(0.31, cfg.feather[0])))
        full_alpha = cv2.GaussianBlur(full_alpha, (0, 0), sigma)
        under = scene[y0:y0 + box_h, x0:x0 + box_w]
        full_patch = match_colour(full_patch, full_alpha, under, float(rng.uniform(*cfg.colour_match)))
        shadow = None
        if cast:
            offset = (float(rng.uniform(-0.35, 0.35)) * width, float(rng.uniform(0.0, 0.05)) * height)
            shadow = shadow_of(full_alpha, offset, squash=float(rng.uniform(0.6, 0.9)),
                               blur=float(rng.uniform(1.0, 3.0)) + 0.01 * side)
            shadow *= np.float32(rng.uniform(*cfg.shadow_darkness))
        return PlacedObject(patch=full_patch, alpha=full_alpha, y0=y0, x0=x0, source=cutout.name,
                       shadow=shadow, category=cutout.category)

    def _place_one(self, rng: np.random.Generator, code: int, background_id: int,
                   scene: np.ndarray,
                   occupied: np.ndarray) -> tuple[PlacedObject, PlacedObject | None] | None:
        """Find a free place and make the object(s) of one change, or None after 8 tries."""
        cfg = self.config
        size, margin = self.size, self.margin
        for _ in range(8):
            side = rng.uniform(*cfg.object_size) * size
            aspect = math.exp(rng.uniform(-0.4, 0.4))
            height = max(8, int(round(side * math.sqrt(aspect))))
            width = max(8, int(round(side / math.sqrt(aspect))))
            centre_y = margin + rng.uniform(0.1, 0.9) * size
            centre_x = margin + rng.uniform(0.1, 0.9) * size
            first = self._make_object(rng, height, width, centre_y, centre_x, background_id, scene)
            second = None
            if code == EXCHANGE:
                factor = math.exp(rng.uniform(-0.2, 0.2))
                second = self._make_object(rng, max(8, int(round(height * factor))),
                                           max(8, int(round(width * factor))), centre_y, centre_x,
                                           background_id, scene, avoid=first)
            if claim(occupied, (first, second), max(3, size // 64)):
                return first, second
        return None

    def _make_object(self, rng: np.random.Generator, height: int, width: int, centre_y: float,
                     centre_x: float, background_id: int, scene: np.ndarray,
                     avoid: PlacedObject | None = None) -> PlacedObject:
        """Cut an object of about height×width from a photo other than the background.

        Tries a few cut-outs and keeps the first whose mean difference to what it covers
        (the scene, or `avoid` for the second object of an exchange) reaches the config's
        `min_object_contrast`, else the one with the largest difference.
        """
        cfg = self.config
        pad = int(math.ceil(3 * cfg.feather[1])) + 1
        box_h, box_w = height + 2 * pad, width + 2 * pad
        y0 = int(np.clip(round(centre_y - box_h / 2), 0, self.canvas - box_h))
        x0 = int(np.clip(round(centre_x - box_w / 2), 0, self.canvas - box_w))
        shape = random_shape(rng, height, width)
        binary = np.zeros((box_h, box_w), np.float32)
        binary[pad:pad + height, pad:pad + width] = shape
        alpha = cv2.GaussianBlur(binary, (0, 0), float(rng.uniform(*cfg.feather)))
        inside = alpha >= 0.5
        if avoid is not None:  # the new object of an exchange must differ from the old one
            under = scene[y0:y0 + box_h, x0:x0 + box_w].copy()
            blend(under, avoid.patch, avoid.alpha, avoid.y0 - y0, avoid.x0 - x0)
        else:
            under = scene[y0:y0 + box_h, x0:x0 + box_w]
        best: tuple[float, np.ndarray, str] | None = None
        choices = [i for i in range(len(self.photos)) if i != background_id] or [background_id]
        for _ in range(4):
            source_id = choices[int(rng.integers(len(choices)))]
            patch = random_crop(self.photos.get(source_id), box_h, box_w, rng,
                                 zoom=(0.5, 2.0), stretch=0.0).astype(np.float32)
            contrast = float(np.abs(patch[inside] - under[inside]).mean()) if inside.any() else 0.0
            if best is None or contrast > best[0]:
                best = (contrast, patch, self.photos.names[source_id])
            if contrast >= cfg.min_object_contrast:
                break
        assert best is not None
        return PlacedObject(patch=best[1], alpha=alpha, y0=y0, x0=x0, source=best[2])

    def _draw_corner_shift(self, rng: np.random.Generator) -> np.ndarray | None:
        """A homography (output pixels -> output pixels) moving each image corner by up to
        `max_corner_shift` pixels, or None when that is 0 (parallax-free viewpoint jitter)."""
        limit = self.config.max_corner_shift
        if limit <= 0:
            return None
        side = float(self.size - 1)
        source = np.array([[0, 0], [side, 0], [side, side], [0, side]], np.float32)
        target = source + rng.uniform(-limit, limit, (4, 2)).astype(np.float32)
        return cv2.getPerspectiveTransform(source, target).astype(np.float64)

    def _draw_warp(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """A small similarity transform about the image centre.

        Returns the matrix for cv2.warpAffine from the comparison canvas to the output, and the
        same transform in output pixel coordinates (reference pixel -> comparison pixel).
        """
        cfg = self.config
        angle = float(rng.uniform(-cfg.max_rotation, cfg.max_rotation))
        scale = float(1.0 + rng.uniform(-cfg.max_scale, cfg.max_scale))
        shift_x, shift_y = (float(v) for v in rng.uniform(-cfg.max_shift, cfg.max_shift, size=2))
        centre = (self.canvas - 1) / 2.0
        matrix = cv2.getRotationMatrix2D((centre, centre), angle, scale)
        matrix[:, 2] += (shift_x, shift_y)
        canvas_to_output = matrix.copy()
        canvas_to_output[:, 2] -= self.margin
        output = matrix.copy()
        offset = np.array([self.margin, self.margin], np.float64)
        output[:, 2] = matrix[:, :2] @ offset + matrix[:, 2] - self.margin
        return canvas_to_output, output


def _clip_box(change: dict[str, Any], margin: int, size: int) -> None:
    x0, y0, x1, y1 = change["box"]
    change["box"] = [int(np.clip(x0 - margin, 0, size)), int(np.clip(y0 - margin, 0, size)),
                     int(np.clip(x1 - margin, 0, size)), int(np.clip(y1 - margin, 0, size))]
