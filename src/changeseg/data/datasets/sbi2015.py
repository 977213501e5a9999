"""Reader for fixed-camera surveillance scenes (SBI2015 as relabelled by FgSegNet): real change pairs.

::

    root/Board/input/in000000.jpg        frames of one scene (fixed camera)
    root/Board/groundtruth/gt000000.png  per-frame mask: 0 background, 255 foreground
                                         (moving) object, 170 unknown
    root/CAVIAR1/...

Frames and masks are matched by their number (``in000123`` ↔ ``gt000123``). Two frames of
one scene form a real change pair: with the camera fixed, what differs between them is the
foreground objects that left, arrived or moved. The pair's label (`pair_label`) is change
(1) where either frame's mask is foreground (255), ignore (255, `IGNORE_INDEX`) where either
is unknown (170) and neither is foreground, and no change (0) elsewhere; other mask values
count as background.

Where *both* frames are foreground, "either frame's foreground" also calls change an object
that did not move: a person standing still in both frames has the same pixels in both.
`both_foreground="differs"` (`static_aware_label`) labels such pixels by the frames
themselves: no change where they are the same (up to noise), change where they clearly
differ, ignore in between. It is for training (no contradictory "identical pixels, change"
labels); the default `"change"` keeps the plain rule.
"""

from __future__ import annotations

import os
import re
import zlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from changeseg.data.pairs import (
    PairDataset,
    PairSample,
    list_images,
    make_sample,
    natural_key,
)
from changeseg.errors import InputError
from changeseg.io.images import header_size, read_image, read_mask
from changeseg.labels import BINARY_CLASSES, IGNORE_INDEX

FOREGROUND = 255
"""Mask value of a foreground (moving or left) object."""

UNKNOWN = 170
"""Mask value of pixels whose label is unknown (object boundaries, unclear areas)."""

INPUT_DIR = "input"
MASK_DIR = "groundtruth"
_FRAME = re.compile(r"in(\d+)")
_MASK = re.compile(r"gt(\d+)")
_LAYOUT = (f"<scene>/{INPUT_DIR}/inNNNNNN.jpg frames and <scene>/{MASK_DIR}/gtNNNNNN.png masks")


@dataclass(frozen=True)
class _Frame:
    stem: str
    image: Path
    mask: Path


def list_scenes(root: str | os.PathLike) -> list[str]:
    """Names of the scene folders under `root` (those holding ``input/`` and ``groundtruth/``).

    Natural order. Raises InputError when `root` is not a folder or holds no scene.
    """
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"sbi2015: {root} is not a folder; expected {_LAYOUT}")
    scenes = sorted(
        (p.name for p in root.iterdir()
         if not p.name.startswith(".") and (p / INPUT_DIR).is_dir() and (p / MASK_DIR).is_dir()),
        key=natural_key,
    )
    if not scenes:
        raise InputError(f"sbi2015: no scene folders in {root}; expected {_LAYOUT}")
    return scenes


def pair_label(mask_a: np.ndarray, mask_b: np.ndarray) -> np.ndarray:
    """The change label of two frames' masks: 1 where either is foreground (255), 255 (ignore)
    where either is unknown (170) and neither is foreground, 0 elsewhere."""
    if mask_a.shape != mask_b.shape:
        raise InputError(f"sbi2015: masks of shape {mask_a.shape} and {mask_b.shape} differ")
    label = np.zeros(mask_a.shape, dtype=np.uint8)
    label[(mask_a == UNKNOWN) | (mask_b == UNKNOWN)] = IGNORE_INDEX
    label[(mask_a == FOREGROUND) | (mask_b == FOREGROUND)] = 1
    return label


BOTH_FOREGROUND = ("change", "ignore", "differs")
SAME_BELOW = 10
"""`static_aware_label`: frames closer than this (0-255, largest channel, after a 5×5 blur) are the same."""
DIFFERENT_FROM = 25
"""`static_aware_label`: frames this far apart or more clearly differ."""


def check_both_foreground(rule: str) -> str:
    """`rule` if it is one of `BOTH_FOREGROUND`, else an InputError naming them."""
    if rule not in BOTH_FOREGROUND:
        raise InputError(f"sbi2015: both_foreground must be one of {', '.join(BOTH_FOREGROUND)}, "
                         f"got {rule!r}")
    return rule


def static_aware_label(label: np.ndarray, mask_a: np.ndarray, mask_b: np.ndarray, frame_a: np.ndarray,
                       frame_b: np.ndarray, rule: str = "differs") -> np.ndarray:
    """`pair_label`'s label with the pixels that are foreground in both frames relabelled by `rule`:
    "change" (kept), "ignore", or "differs" (0 where the blurred frames differ by less than
    `SAME_BELOW`, 1 from `DIFFERENT_FROM`, ignore in between)."""
    check_both_foreground(rule)
    both = (mask_a == FOREGROUND) & (mask_b == FOREGROUND)
    if rule == "change" or not both.any():
        return label
    out = label.copy()
    if rule == "ignore":
        out[both] = IGNORE_INDEX
        return out
    a = cv2.GaussianBlur(np.atleast_3d(frame_a).astype(np.float32), (5, 5), 0)
    b = cv2.GaussianBlur(np.atleast_3d(frame_b).astype(np.float32), (5, 5), 0)
    scale = 255.0 / 65535.0 if frame_a.dtype == np.uint16 else 1.0
    difference = np.abs(np.atleast_3d(a) - np.atleast_3d(b)).max(axis=2) * scale
    out[both] = IGNORE_INDEX
    out[both & (difference < SAME_BELOW)] = 0
    out[both & (difference >= DIFFERENT_FROM)] = 1
    return out


def draw_pairs(frames: int, count: int, min_gap: int, rng: np.random.Generator) -> list[tuple[int, int]]:
    """Choose up to `count` ordered pairs (i, j) of frame positions ``0..frames-1``, sorted.

    Pairs have ``i != j`` and ``|i - j| >= min_gap``; both orders occur. The gap is drawn
    about log-uniformly (as many pairs with gaps 1–10 as with 10–100), so near frames (small
    motion) and far frames (different objects) mix. It is a weighted sample without
    replacement (Efraimidis–Spirakis keys), so a smaller `count` with the same generator
    seed picks a subset of a larger one.
    """
    positions = np.arange(frames)
    first, second = (a.ravel() for a in np.meshgrid(positions, positions, indexing="ij"))
    gap = np.abs(first - second)
    valid = gap >= max(min_gap, 1)
    first, second, gap = first[valid], second[valid], gap[valid]
    if not gap.size:
        return []
    # P(gap = g) ∝ 1/g, shared by the 2·(frames − g) ordered pairs with that gap
    weight = 1.0 / (gap * (frames - gap))
    keys = np.log(1.0 - rng.random(gap.size)) / weight
    chosen = np.argsort(-keys, kind="stable")[:count]
    return sorted((int(first[k]), int(second[k])) for k in chosen)


class SBI2015Dataset(PairDataset):
    """Real change pairs from fixed-camera scenes: two frames of one scene, labelled by their masks.

    For each scene, `pairs_per_scene` ordered frame pairs (reference = frame A, comparison =
    frame B) are drawn with a generator seeded by `seed` and the scene's name, so a scene's
    pairs do not depend on which other scenes are read, and a smaller `pairs_per_scene` gives
    a subset of a larger one. Frames A and B are at least `min_gap` positions apart in the
    scene's list of usable frames (every third video frame in the FgSegNet copy), with near
    and far gaps mixed (see `draw_pairs`). Frames without a mask, with a mask of another size,
    or of another size than most of their scene's frames are skipped (``skipped`` says why).
    `scenes` restricts the scenes read (default: every scene, see `list_scenes`).
    `both_foreground` says how pixels that are foreground in both frames are labelled (see the
    module docstring and `static_aware_label`; default "change", the plain rule).

    Pair names are ``"<scene>/<frame A>-<frame B>"``, e.g. ``"Board/in000003-in000120"``.
    They carry the scene because pairs of one scene share the background, the camera, the
    lighting and often the very frames, so a validation split carved from random pairs
    would be validated on scenes it trained on: hold out whole scenes instead (by name
    prefix, or with a second reader given the held-out `scenes`).
    """

    def __init__(
        self,
        root: str | os.PathLike,
        scenes: Sequence[str] | None = None,
        pairs_per_scene: int = 64,
        min_gap: int = 1,
        seed: int = 0,
        both_foreground: str = "change",
    ):
        self.root = Path(root)
        self.both_foreground = check_both_foreground(both_foreground)
        self.class_names = list(BINARY_CLASSES)
        self.pairs_per_scene = int(pairs_per_scene)
        self.min_gap = int(min_gap)
        self.seed = int(seed)
        if self.pairs_per_scene < 1:
            raise InputError(f"sbi2015: pairs_per_scene must be >= 1, got {pairs_per_scene}")
        if self.min_gap < 1:
            raise InputError(f"sbi2015: min_gap must be >= 1, got {min_gap}")
        found = list_scenes(self.root)
        if isinstance(scenes, str):
            scenes = [s.strip() for s in scenes.split(",") if s.strip()]
        if scenes is not None:
            unknown = [s for s in scenes if s not in found]
            if unknown:
                raise InputError(f"sbi2015: no scene {', '.join(unknown)} in {self.root}; "
                                 f"scenes: {', '.join(found)}")
            if not scenes:
                raise InputError("sbi2015: scenes is empty; name at least one scene or pass None")
        self.scenes = [s for s in found if scenes is None or s in scenes]
        self.skipped: dict[str, str] = {}
        self.frames: dict[str, list[str]] = {}
        self.names: list[str] = []
        self._pairs: list[tuple[_Frame, _Frame]] = []
        for scene in self.scenes:
            frames = self._usable_frames(scene)
            self.frames[scene] = [f.stem for f in frames]
            rng = np.random.default_rng([self.seed, zlib.crc32(scene.encode("utf-8"))])
            pairs = draw_pairs(len(frames), self.pairs_per_scene, self.min_gap, rng)
            if not pairs:
                reason = f"{len(frames)} usable frames, none {self.min_gap} apart"
                if scenes is not None:
                    raise InputError(f"sbi2015: scene {scene} gives no pairs ({reason})")
                self.skipped[scene] = reason
            for i, j in pairs:
                self.names.append(f"{scene}/{frames[i].stem}-{frames[j].stem}")
                self._pairs.append((frames[i], frames[j]))
        if not self.names:
            raise InputError(f"sbi2015: no frame pairs under {self.root}; expected {_LAYOUT}")

    def _usable_frames(self, scene: str) -> list[_Frame]:
        """The scene's frames that have a mask of their size, all of the scene's common size."""
        images = _numbered(list_images(self.root / scene / INPUT_DIR), _FRAME)
        masks = _numbered(list_images(self.root / scene / MASK_DIR), _MASK)
        frames: list[tuple[_Frame, tuple[int, int]]] = []
        for number in sorted(images, key=int):
            image = images[number]
            key = f"{scene}/{image.stem}"
            if number not in masks:
                self.skipped[key] = "no mask"
                continue
            image_size, mask_size = header_size(image), header_size(masks[number])
            if image_size is None or mask_size is None:
                self.skipped[key] = "unreadable frame or mask"
            elif image_size != mask_size:
                self.skipped[key] = (f"mask {mask_size[0]}×{mask_size[1]} but frame "
                                     f"{image_size[0]}×{image_size[1]}")
            else:
                frames.append((_Frame(image.stem, image, masks[number]), image_size))
        if not frames:
            return []
        common = Counter(size for _, size in frames).most_common(1)[0][0]
        for frame, size in frames:
            if size != common:
                self.skipped[f"{scene}/{frame.stem}"] = (
                    f"{size[0]}×{size[1]}, not the scene's {common[0]}×{common[1]}")
        return [frame for frame, size in frames if size == common]

    def load(self, index: int) -> PairSample:
        """Read pair `index`: frames A and B as stored, the label as 0/1 with 255 = ignore."""
        name = self.names[index]
        a, b = self._pairs[index]
        mask_a, mask_b = read_mask(a.mask, f"{name} mask A"), read_mask(b.mask, f"{name} mask B")
        frame_a, frame_b = read_image(a.image, f"{name} frame A"), read_image(b.image, f"{name} frame B")
        label = static_aware_label(pair_label(mask_a, mask_b), mask_a, mask_b, frame_a, frame_b,
                                   self.both_foreground)
        return make_sample(frame_a, frame_b, label, name)


def _numbered(files: dict[str, Path], pattern: re.Pattern[str]) -> dict[str, Path]:
    """Map the frame number (as a string of digits, leading zeros dropped) to its file."""
    found = {}
    for stem, path in files.items():
        match = pattern.fullmatch(stem)
        if match:
            found[str(int(match.group(1)))] = path
    return found

