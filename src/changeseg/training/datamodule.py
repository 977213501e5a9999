"""The Lightning data module: sources, the validation split, augmentation and loaders.

Training sources are datasets opened with `open_dataset("FORMAT:PATH", **options)` or
synthetic pairs (`synthetic` / `synthetic:PHOTO_FOLDER`). From each dataset source a
validation part is carved by name with a fixed seed (`carve_split`); synthetic sources keep
pair numbers `0 .. val_synthetic-1` for validation and train on later ones. Validation never
touches a test split: explicit validation sources come from `data.val`.

Reproducible order, also across resume and worker counts: the training loader's batch
sampler draws a fresh permutation from (seed, epoch) and hands each dataset item the key
(epoch, index), and every random choice for that item (crop position, augmentation) comes
from a generator seeded by (seed, epoch, index). The loader is *stateful* in Lightning's
sense: a checkpoint records the epoch and how many batches of it were done, and a resumed
run skips exactly those batches. Ranks of a distributed run take interleaved shares of the
same permutation.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, Sampler

from changeseg.data.datasets import is_synthetic, open_dataset
from changeseg.data.objects import ObjectBank
from changeseg.data.pairs import (
    PairDataset,
    PairSample,
    PairSubset,
    RandomCropDataset,
    TileDataset,
    carve_split,
)
from changeseg.data.synthetic.generator import SyntheticPairGenerator
from changeseg.data.transforms import (
    ColorJitter,
    Compose,
    HorizontalFlip,
    RandomCrop,
    RandomRotate90,
    RandomRotation,
    RandomScale,
    ScaledPairs,
    ToneCurve,
    TransformedDataset,
    VerticalFlip,
)
from changeseg.errors import ConfigError
from changeseg.io.images import to_model_channels
from changeseg.labels import APPEAR, DISAPPEAR, IGNORE_INDEX, UNTYPED_CHANGE, class_names
from changeseg.training.losses import class_pixel_counts
from changeseg.training.recipe import AugmentSection, DataSection, DatasetEntry

SYNTHETIC_WEIGHT_SAMPLES = 64
DEFAULT_SYNTHETIC_LENGTH = 1000


# ------------------------------------------------------------------ small transforms


class MatchChannels:
    """Adapt both images to the model's channel count (grey → RGB, RGBA → RGB, ...)."""

    def __init__(self, channels: int) -> None:
        self.channels = channels

    def __call__(self, sample: dict[str, Any], rng: np.random.Generator | None = None) -> dict[str, Any]:
        """Return the sample with both images converted (a no-op when they already match)."""
        if sample["reference"].shape[2] == self.channels:
            return sample
        out = dict(sample)
        for key in ("reference", "comparison"):
            out[key] = to_model_channels(sample[key], self.channels)
        return out


class SwapPair:
    """Exchange reference and comparison with probability `p`.

    With `typed` labels (no change, appear, disappear, exchange) the swap also turns each
    appear pixel into disappear and back; exchange, untyped change and ignore stay.
    """

    def __init__(self, p: float, typed: bool = False) -> None:
        self.p = p
        self.typed = typed

    def __call__(self, sample: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
        """Return the sample, its two images swapped with probability `p`."""
        if rng.random() >= self.p:
            return sample
        out = dict(sample)
        out["reference"], out["comparison"] = sample["comparison"], sample["reference"]
        if self.typed:
            mask = np.asarray(sample["mask"])
            out["mask"] = np.where(mask == APPEAR, DISAPPEAR,
                                   np.where(mask == DISAPPEAR, APPEAR, mask)).astype(mask.dtype)
        return out


class UntypedChangeLabels(PairDataset):
    """A binary-labelled set served to a multi-class model: change pixels become `UNTYPED_CHANGE`.

    The loss then teaches change against no change on these pixels without a type (see
    `changeseg.training.losses`); unchanged (0) and ignored (255) pixels stay as they are.
    """

    def __init__(self, dataset: PairDataset) -> None:
        self.dataset = dataset
        self.names = list(dataset.names)
        self.class_names = list(dataset.class_names)
        self.root = getattr(dataset, "root", Path("."))

    def load(self, index: int) -> PairSample:
        """The wrapped pair with change (1) relabelled as untyped change."""
        sample = dict(self.dataset[index])
        mask = np.asarray(sample["mask"])
        sample["mask"] = np.where(mask == 1, UNTYPED_CHANGE, mask).astype(np.uint8)
        return sample  # type: ignore[return-value]


class _Chain:
    """Apply a channel adapter, then an optional random transform (picklable for workers)."""

    def __init__(self, first: Callable[..., Any], then: Callable[..., Any] | None) -> None:
        self.first, self.then = first, then

    def __call__(self, sample: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
        sample = self.first(sample, rng)
        return self.then(sample, rng) if self.then is not None else sample


def build_augmentation(augment: AugmentSection, crop_size: int | None, labels: str = "binary") -> Compose:
    """The joint training augmentation described by `augment`, ending in a `crop_size` crop."""
    steps: list[Any] = []
    low, high = (list(augment.scale) + [1.0, 1.0])[:2]
    if augment.p_scale > 0 and (low != 1.0 or high != 1.0):
        steps.append(RandomScale(low, high, p=augment.p_scale))
    if augment.p_rotate > 0 and augment.rotate > 0:
        steps.append(RandomRotation(augment.rotate, p=augment.p_rotate))
    if crop_size:
        steps.append(RandomCrop(crop_size))
    if augment.hflip > 0:
        steps.append(HorizontalFlip(augment.hflip))
    if augment.vflip > 0:
        steps.append(VerticalFlip(augment.vflip))
    if augment.rot90 > 0:
        steps.append(RandomRotate90(augment.rot90))
    if augment.p_color > 0 and augment.color_jitter > 0:
        strength = augment.color_jitter
        steps.append(ColorJitter(brightness=strength, contrast=strength, saturation=strength,
                                 hue=min(strength / 10.0, 0.05), apply_to="both", independent=True,
                                 p=augment.p_color))
    if augment.p_tone > 0 and augment.tone_curve > 0:
        steps.append(ToneCurve(augment.tone_curve, p=augment.p_tone))
    if augment.swap > 0:
        steps.append(SwapPair(augment.swap, typed=labels == "typed"))
    return Compose(steps)


# ------------------------------------------------------------------ synthetic sources


def _synthetic_photos(spec: str) -> str | None:
    _, _, photos = spec.partition(":")
    return photos or None


class SyntheticEpochs(Dataset):
    """`length` synthetic pairs per epoch; epoch e uses pair numbers `offset + e·length + i`.

    With `typed` the 4-class typed mask (no change, appear, disappear, exchange) is the mask.
    """

    def __init__(self, generator: SyntheticPairGenerator, length: int, offset: int,
                 typed: bool = False) -> None:
        self.generator, self.length, self.offset, self.typed = generator, int(length), int(offset), typed
        self.epoch = 0
        self.class_names = class_names(typed)

    def set_epoch(self, epoch: int) -> None:
        """Serve the pairs of epoch `epoch`."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = self.generator.sample(self.offset + self.epoch * self.length + int(index))
        return _pick_mask(sample, self.typed)


class SyntheticFixed(Dataset):
    """Synthetic pairs `start .. start+length-1` (the validation share of a synthetic source)."""

    def __init__(self, generator: SyntheticPairGenerator, length: int, start: int = 0,
                 typed: bool = False) -> None:
        self.generator, self.length, self.start, self.typed = generator, int(length), int(start), typed
        self.names = [generator.name(start + i) for i in range(self.length)]
        self.class_names = class_names(typed)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, Any]:
        return _pick_mask(self.generator.sample(self.start + int(index)), self.typed)


def _pick_mask(sample: dict[str, Any], typed: bool) -> dict[str, Any]:
    out = {k: sample[k] for k in ("reference", "comparison", "mask", "name")}
    if typed:
        out["mask"] = sample["typed_mask"]
    return out


# ------------------------------------------------------------------ keyed concatenation


class EpochKeyedConcat(Dataset):
    """Concatenate datasets; item keys are (epoch, index) so each worker knows the epoch.

    Before reading, the epoch is passed to the part's `set_epoch` (if it has one), so its
    random draws are those of that epoch whatever process reads it. A plain int index reads
    epoch 0.
    """

    def __init__(self, parts: Sequence[Dataset]) -> None:
        self.parts = list(parts)
        self.ends = list(np.cumsum([len(p) for p in self.parts]))  # type: ignore[arg-type]

    def __len__(self) -> int:
        return int(self.ends[-1]) if self.ends else 0

    def __getitem__(self, key: int | tuple[int, int]) -> Any:
        epoch, index = (0, key) if isinstance(key, int) else key
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        part = bisect.bisect_right(self.ends, index)
        local = index - (int(self.ends[part - 1]) if part else 0)
        dataset = self.parts[part]
        if hasattr(dataset, "set_epoch"):
            dataset.set_epoch(epoch)
        return dataset[local]


# ------------------------------------------------------------------ samplers and loader


class EpochOrder(Sampler[int]):
    """The indices one rank reads in an epoch: a permutation seeded by (seed, epoch).

    Ranks take interleaved shares (`rank`, `rank + world_size`, ...) of the same
    permutation; without `drop_last` the permutation is padded by wrapping so every rank
    gets the same number of items (as `DistributedSampler` does).
    """

    def __init__(self, length: int, seed: int, shuffle: bool = True, rank: int = 0,
                 world_size: int = 1, drop_last: bool = False) -> None:
        if length <= 0:
            raise ConfigError("the training data is empty")
        self.length, self.seed, self.shuffle = int(length), int(seed), shuffle
        self.rank, self.world_size, self.drop_last = int(rank), int(world_size), drop_last
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Use the permutation of epoch `epoch` from the next iteration on."""
        self.epoch = int(epoch)

    def indices(self) -> list[int]:
        """This rank's indices for the current epoch."""
        if self.shuffle:
            order = np.random.default_rng([self.seed, self.epoch]).permutation(self.length).tolist()
        else:
            order = list(range(self.length))
        per_rank = (self.length // self.world_size if self.drop_last
                    else math.ceil(self.length / self.world_size))
        total = per_rank * self.world_size
        if total > len(order):
            order = (order * math.ceil(total / len(order)))[:total]
        order = order[:total]
        return order[self.rank:total:self.world_size]

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices())

    def __len__(self) -> int:
        if self.drop_last:
            return self.length // self.world_size
        return math.ceil(self.length / self.world_size)


class ResumableBatchSampler(Sampler[list[tuple[int, int]]]):
    """Group an `EpochOrder` into batches of (epoch, index) keys; can skip done batches."""

    def __init__(self, order: EpochOrder, batch_size: int, drop_last: bool) -> None:
        self.sampler = order  # Lightning calls `sampler.set_epoch` through this attribute
        self.batch_size, self.drop_last = int(batch_size), drop_last
        self.skip = 0

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        indices, epoch = self.sampler.indices(), self.sampler.epoch
        skip, self.skip = self.skip, 0
        for number, start in enumerate(range(0, len(indices), self.batch_size)):
            batch = indices[start:start + self.batch_size]
            if len(batch) < self.batch_size and self.drop_last:
                return
            if number >= skip:
                yield [(epoch, i) for i in batch]

    def __len__(self) -> int:
        count = len(self.sampler)
        return count // self.batch_size if self.drop_last else math.ceil(count / self.batch_size)


class ResumableLoader(DataLoader):
    """A DataLoader whose position within an epoch is saved in Lightning checkpoints.

    `progress` returns how many batches of the current epoch are done (set by the data
    module from the trainer's loop counters).
    """

    progress: Callable[[], int] | None = None

    def state_dict(self) -> dict[str, int]:
        """The epoch and the number of its batches already trained on."""
        sampler: ResumableBatchSampler = self.batch_sampler  # type: ignore[assignment]
        done = int(self.progress()) if self.progress is not None else 0
        return {"epoch": sampler.sampler.epoch, "batches_done": done}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Continue that epoch after its done batches on the next iteration."""
        sampler: ResumableBatchSampler = self.batch_sampler  # type: ignore[assignment]
        sampler.sampler.set_epoch(int(state.get("epoch", 0)))
        done = int(state.get("batches_done", 0))
        sampler.skip = done if 0 < done < len(sampler) else 0


class RankShare(Sampler[int]):
    """Every `world_size`-th index from `rank` on, in order (validation on several ranks).

    The list is padded by wrapping around so all ranks get the same number of items (and
    at least one each), as `DistributedSampler` does: a few items may count twice when the
    set does not divide evenly.
    """

    def __init__(self, length: int, rank: int = 0, world_size: int = 1) -> None:
        self.length, self.rank, self.world_size = int(length), int(rank), int(world_size)
        self.padded = math.ceil(self.length / self.world_size) * self.world_size

    def __iter__(self) -> Iterator[int]:
        return iter([i % self.length for i in range(self.rank, self.padded, self.world_size)])

    def __len__(self) -> int:
        return self.padded // self.world_size


def collate_pairs(samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Stack tensor samples into a batch, padding to the largest size in the batch.

    Padding is 0 in the images and 255 (ignore) in the masks, so mixed image sizes can
    share a validation batch. Keeps `name` (a list) and drops other keys.
    """
    height = max(int(s["mask"].shape[0]) for s in samples)
    width = max(int(s["mask"].shape[1]) for s in samples)

    def pad(tensor: torch.Tensor, value: float) -> torch.Tensor:
        h, w = tensor.shape[-2:]
        if h == height and w == width:
            return tensor
        return F.pad(tensor, (0, width - w, 0, height - h), value=value)

    return {
        "reference": torch.stack([pad(s["reference"], 0.0) for s in samples]),
        "comparison": torch.stack([pad(s["comparison"], 0.0) for s in samples]),
        "mask": torch.stack([pad(s["mask"], IGNORE_INDEX) for s in samples]),
        "name": [str(s.get("name", "")) for s in samples],
    }


# ------------------------------------------------------------------ the data module


@dataclass
class SourceInfo:
    """What became of one source: its spec, sizes, and the names it trains on and holds out.

    `train_names` is None for synthetic sources (their training pairs are generated afresh
    every epoch, not read).
    """

    spec: str
    options: dict[str, Any]
    train: int
    val: int
    val_names: list[str] = field(default_factory=list)
    train_names: list[str] | None = field(default_factory=list)


class ChangeDataModule(pl.LightningDataModule):
    """Training and validation data for a change model, described by a `DataSection`.

    Args:
        config: the recipe's data section.
        seed: the run seed (orders batches and seeds augmentation).
        in_channels: the model's input channels (images are adapted to it).
        num_classes: the model's class count (masks are checked against it).
    """

    def __init__(self, config: DataSection, seed: int = 0, in_channels: int = 3,
                 num_classes: int = 2) -> None:
        super().__init__()
        self.config = config
        self.seed = int(seed)
        self.in_channels = int(in_channels)
        self.num_classes = int(num_classes)
        if len(config.mean) not in (1, self.in_channels):
            raise ConfigError(f"data.mean has {len(config.mean)} values for a model with "
                              f"{self.in_channels} input channels")
        self.train_parts: list[Dataset] = []
        self.val_parts: list[Dataset] = []
        self.raw_train: list[Dataset] = []
        self.sources: list[SourceInfo] = []
        self.train_set: EpochKeyedConcat | None = None
        self.val_set: EpochKeyedConcat | None = None
        self._built = False

    # ---------------------------------------------------------------- building

    def setup(self, stage: str | None = None) -> None:
        """Open every source and carve the validation split (once; later calls are no-ops)."""
        if self._built:
            return
        cfg = self.config
        augmentation = build_augmentation(cfg.augment, cfg.crop_size, cfg.labels)
        train_transform = _Chain(MatchChannels(self.in_channels), augmentation)
        val_resize = RandomScale(cfg.val_scale, cfg.val_scale, p=1.0) if cfg.val_scale != 1.0 else None
        val_transform = _Chain(MatchChannels(self.in_channels), val_resize)
        for number, entry in enumerate(cfg.train):
            train_part, val_part, info = self._open_train_source(number, entry)
            # crops and synthetic pairs already serve `weight` times more items; a plain
            # dataset is repeated (each copy with its own augmentation seed)
            repeats = 1 if isinstance(train_part, (RandomCropDataset, SyntheticEpochs)) else entry.weight
            self.raw_train.append(train_part)
            for repeat in range(repeats):
                self.train_parts.append(TransformedDataset(
                    train_part, train_transform, seed=self._source_seed(number, repeat),
                    mean=cfg.mean, std=cfg.std))
            if val_part is not None and len(val_part) > 0:  # type: ignore[arg-type]
                self.val_parts.append(self._serve_val(val_part, val_transform))
            self.sources.append(info)
        for entry in cfg.val:
            dataset = self._open_val_source(entry)
            self.val_parts.append(self._serve_val(dataset, val_transform))
            self.sources.append(SourceInfo(entry.spec, dict(entry.options), 0, len(dataset),  # type: ignore[arg-type]
                                           list(getattr(dataset, "names", []))))
        self.train_set = EpochKeyedConcat(self.train_parts)
        self.val_set = EpochKeyedConcat(self.val_parts) if self.val_parts else None
        self._built = True

    def _source_seed(self, number: int, repeat: int) -> int:
        return int(np.random.default_rng([self.seed, number, repeat]).integers(2**31))

    def _open_train_source(self, number: int, entry: DatasetEntry
                           ) -> tuple[Dataset, Dataset | None, SourceInfo]:
        cfg = self.config
        fraction = cfg.val_fraction if entry.val_fraction is None else entry.val_fraction
        if is_synthetic(entry.spec):
            generator = self._generator(entry)
            typed = cfg.labels == "typed"
            if typed and self.num_classes < 4:
                raise ConfigError(f"{entry.spec}: typed synthetic labels have 4 classes but the "
                                  f"model has {self.num_classes} (set model.num_classes=4)")
            n_val = cfg.val_synthetic if fraction > 0 else 0
            length = (entry.samples_per_epoch or DEFAULT_SYNTHETIC_LENGTH) * entry.weight
            train = SyntheticEpochs(generator, length, offset=n_val, typed=typed)
            val = SyntheticFixed(generator, n_val, start=0, typed=typed) if n_val else None
            info = SourceInfo(entry.spec, dict(entry.options), length, n_val,
                              list(val.names) if val is not None else [], train_names=None)
            return train, val, info
        dataset = self._open(entry)
        train_names, val_names = carve_split(dataset.names, fraction, cfg.val_seed)
        train_subset: Dataset = PairSubset(dataset, train_names)
        if cfg.train_scale != 1.0:  # before cropping: a small frame enlarged fills the crop
            train_subset = ScaledPairs(train_subset, cfg.train_scale)
        val_subset = PairSubset(dataset, val_names) if val_names else None
        train: Dataset = train_subset
        if entry.samples_per_epoch:
            crop = cfg.crop_size
            if not crop:
                raise ConfigError(f"{entry.spec}: samples_per_epoch needs data.crop_size")
            train = RandomCropDataset(train_subset, crop, entry.samples_per_epoch * entry.weight,
                                      seed=self._source_seed(number, 1000), weight_by_area=True)
        served = len(train) * (1 if entry.samples_per_epoch else entry.weight)  # type: ignore[arg-type]
        info = SourceInfo(entry.spec, dict(entry.options), served, len(val_names), list(val_names),
                          list(train_names))
        return train, val_subset, info

    def _open(self, entry: DatasetEntry) -> PairDataset:
        dataset = open_dataset(entry.spec, **entry.options)
        classes = len(getattr(dataset, "class_names", [])) or 2
        if classes > self.num_classes:
            raise ConfigError(f"{entry.spec} has {classes} classes but the model has "
                              f"{self.num_classes} (set model.num_classes)")
        if classes == 2 and self.num_classes > 2:  # e.g. fine-tuning a typed model on binary pairs
            return UntypedChangeLabels(dataset)
        return dataset

    def _open_val_source(self, entry: DatasetEntry) -> Dataset:
        if is_synthetic(entry.spec):
            generator = self._generator(entry)
            return SyntheticFixed(generator, entry.samples_per_epoch or self.config.val_synthetic,
                                  start=0, typed=self.config.labels == "typed")
        return self._open(entry)

    def _generator(self, entry: DatasetEntry) -> SyntheticPairGenerator:
        options = dict(entry.options)
        options.setdefault("size", self.config.crop_size or 256)
        options.setdefault("seed", self.seed)
        # photos: the spec's folder, or `options.photos` (a folder or a list of folders)
        photos = options.pop("photos", None) or _synthetic_photos(entry.spec)
        objects = options.pop("objects", None)
        if objects is not None:
            # change sets used as object sources keep out the pairs this recipe validates on
            cfg = self.config
            holdout = (cfg.val_fraction, cfg.val_seed) if cfg.val_fraction > 0 else None
            options["objects"] = ObjectBank([objects] if isinstance(objects, str) else objects,
                                            holdout=holdout)
        return SyntheticPairGenerator(photos, **options)

    def _serve_val(self, dataset: Dataset, transform: Callable[..., Any]) -> Dataset:
        cfg = self.config
        if cfg.val_tile:
            dataset = TileDataset(dataset, cfg.val_tile, cfg.val_tile_overlap)
        return TransformedDataset(dataset, transform, seed=0, mean=cfg.mean, std=cfg.std)

    # ---------------------------------------------------------------- class weights

    def class_pixel_counts(self) -> np.ndarray:
        """Pixels per class over the training masks (before augmentation).

        Looks at up to `data.weight_samples` evenly spaced pairs of each dataset source and
        `SYNTHETIC_WEIGHT_SAMPLES` pairs of each synthetic source.
        """
        self.setup("fit")
        counts = np.zeros(self.num_classes, dtype=np.int64)
        for part in self.raw_train:
            base = part.dataset if isinstance(part, RandomCropDataset) else part
            limit = (SYNTHETIC_WEIGHT_SAMPLES if isinstance(base, SyntheticEpochs)
                     else self.config.weight_samples)
            n = len(base)  # type: ignore[arg-type]
            picks = np.unique(np.linspace(0, n - 1, num=min(n, max(limit, 1))).round().astype(int))
            if isinstance(part, RandomCropDataset):
                masks = (part.pair(int(i))["mask"] for i in picks)
            else:
                masks = (base[int(i)]["mask"] for i in picks)
            counts += class_pixel_counts(masks, self.num_classes)
        return counts

    # ---------------------------------------------------------------- loaders

    def _rank(self) -> tuple[int, int]:
        trainer = self.trainer
        if trainer is None:
            return 0, 1
        return int(trainer.global_rank), int(trainer.world_size)

    def _loader_generator(self, rank: int, role: int) -> torch.Generator:
        # A loader's own generator seeds its workers, so creating an iterator never draws
        # from the global torch RNG that dropout uses (which resume restores exactly).
        generator = torch.Generator()
        generator.manual_seed(self._source_seed(10_000 + role, rank))
        return generator

    def _batch_sampler(self, rank: int, world: int) -> ResumableBatchSampler:
        assert self.train_set is not None
        length = len(self.train_set)
        drop_last = length >= self.config.batch_size * world
        order = EpochOrder(length, self.seed, shuffle=True, rank=rank, world_size=world)
        return ResumableBatchSampler(order, self.config.batch_size, drop_last=drop_last)

    def train_batches_per_epoch(self, world_size: int = 1) -> int:
        """How many training batches each process gets per epoch with `world_size` processes."""
        self.setup("fit")
        return len(self._batch_sampler(0, world_size))

    def train_dataloader(self) -> ResumableLoader:
        """Shuffled, seeded, resumable batches of augmented training crops."""
        self.setup("fit")
        assert self.train_set is not None
        cfg = self.config
        rank, world = self._rank()
        batches = self._batch_sampler(rank, world)
        order = batches.sampler
        trainer = self.trainer
        if trainer is not None:
            order.set_epoch(trainer.current_epoch)
        loader = ResumableLoader(self.train_set, batch_sampler=batches, num_workers=cfg.num_workers,
                                 collate_fn=collate_pairs, persistent_workers=False,
                                 pin_memory=torch.cuda.is_available(),
                                 generator=self._loader_generator(rank, 0))
        if trainer is not None:
            loader.progress = _BatchesDone(trainer)
        return loader

    def val_dataloader(self) -> DataLoader | list[Any]:
        """Validation images (or tiles) in a fixed order, split across ranks."""
        self.setup("validate")
        if self.val_set is None:
            return []
        rank, world = self._rank()
        return DataLoader(self.val_set, batch_size=self.config.val_batch_size,
                          sampler=RankShare(len(self.val_set), rank, world),
                          num_workers=self.config.num_workers, collate_fn=collate_pairs,
                          pin_memory=torch.cuda.is_available(),
                          generator=self._loader_generator(rank, 1))

    def split_info(self) -> dict[str, Any]:
        """The recorded split: seed, fraction, and per source the names trained on and held out.

        Synthetic sources record no `train_names` (None): their pairs are generated.
        """
        self.setup("fit")
        return {
            "val_seed": self.config.val_seed,
            "val_fraction": self.config.val_fraction,
            "sources": [{"spec": s.spec, "options": s.options, "train": s.train, "val": s.val,
                         "val_names": s.val_names, "train_names": s.train_names}
                        for s in self.sources],
        }


class _BatchesDone:
    """How many batches of the current epoch the trainer has finished (for checkpoints)."""

    def __init__(self, trainer: pl.Trainer) -> None:
        self.trainer = trainer

    def __call__(self) -> int:
        try:
            return int(self.trainer.fit_loop.epoch_loop.batch_progress.current.processed)
        except AttributeError:
            return 0
